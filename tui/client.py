"""The dashboard's data layer: follow the agent over its control socket, or the database.

:class:`AgentLink` keeps a model of the site (a :class:`~agent.status.SiteSnapshot`) and
delivers it to the app as :class:`SiteChanged` messages. It runs in one exclusive Textual
worker (see ``SimedgeApp.follow_agent``) and never blocks the agent: the event stream is
read as fast as it comes, folded into the model, and handed to the screen at most every
``min_interval`` seconds, so a burst of 20 SMS/s costs four redraws a second over SSH.

When the agent cannot be reached the link says why (``problem``), shows the last known
state from the database opened read-only (:mod:`tui.offline`), and tries again with a
growing delay until the agent is back.

Events are read through the control schema (:mod:`agent.control.protocol`), which says
what each carries: a modem's, the uplink's and the public URL's new status are folded
into the model; the data-less ones (``message``, ``outbox``, ``takeoff``, ``overflow``,
and an event the client cannot read, taken as an overflow) lead to a fresh snapshot,
asked at most once per ``min_interval``, and ``message`` also tells the Messages screen
to list again. The snapshot is always right; events only save asking for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from textual.message import Message

from agent.control.client import ControlClient
from agent.control.protocol import (
    Event,
    EventKind,
    ListBlockRules,
    ListMessages,
    ListOutbox,
    ListSims,
    Request,
    ShowMessage,
    TakeSnapshot,
)
from agent.errors import ControlError, StoreError
from agent.status import (
    BlockRuleStatus,
    MessageDetail,
    MessageSummary,
    ModemStatus,
    PublicUrlStatus,
    SimRow,
    SiteSnapshot,
    UplinkStatus,
)
from tui import offline

log = logging.getLogger("simedge.tui")
R = TypeVar("R")

RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)  # seconds between tries to reach the agent
REFRESH_EVERY = 60.0  # full snapshot: hourly charts, SIMs online, disk free


class SiteChanged(Message):
    """The site's state changed: redraw what differs.

    ``live`` is False when the state was read from the database because the agent is
    down; ``problem`` then says why in words. ``messages_changed``: messages came or
    changed state since the last SiteChanged (the agent says so without sending them),
    so a list of them should be asked again."""

    def __init__(
        self,
        snapshot: SiteSnapshot,
        *,
        live: bool,
        problem: str | None = None,
        messages_changed: bool = False,
    ) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.live = live
        self.problem = problem
        self.messages_changed = messages_changed


class AgentLink:
    """The link to one agent: its socket, its database, and the model built from both."""

    def __init__(
        self,
        socket_path: str | Path,
        db_path: str | Path | None,
        *,
        min_interval: float = 0.25,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        refresh_every: float = REFRESH_EVERY,
        timeout: float = 5.0,
    ) -> None:
        self.socket_path = Path(socket_path)
        self.db_path = Path(db_path) if db_path else None
        self.min_interval = min_interval
        self.retry_delays = tuple(retry_delays)
        self.refresh_every = refresh_every
        self.client = ControlClient(self.socket_path, timeout=timeout)
        self.live = False
        self.snapshot = SiteSnapshot(taken_at=0.0)
        self._messages_changed = False
        self._stale = False  # a snapshot is needed at the next flush
        self._refreshing: asyncio.Task[None] | None = None
        self._flush_handle: asyncio.TimerHandle | None = None
        self._post: Callable[[Message], object] = lambda message: None

    # The event loop of the link -------------------------------------------------------

    async def follow(self, post: Callable[[Message], object]) -> None:
        """Follow the agent forever (until the worker is cancelled)."""
        self._post = post
        try:
            await self._follow_forever()
        finally:
            self._stop()
            await self.client.close()

    async def _follow_forever(self) -> None:
        failures = 0
        while True:
            try:
                await self._follow_once()
                problem = "the agent closed the event stream"
            except ControlError as exc:
                problem = str(exc)
            if self.live:
                failures = 0
            self.live = False
            self._stop()
            await self.client.close()
            await self._show_offline(problem)
            delay = self.retry_delays[min(failures, len(self.retry_delays) - 1)]
            failures += 1
            log.info("agent unreachable (%s); trying again in %.1f s", problem, delay)
            await asyncio.sleep(delay)

    async def _follow_once(self) -> None:
        refresher: asyncio.Task[None] | None = None
        try:
            async with self.client.subscribe() as events:
                # Subscribed: from now on no event is missed, so the snapshot is current.
                await self.client.close()  # a request connection left from before
                await self._take_snapshot()
                self.live = True
                refresher = asyncio.create_task(self._refresh_periodically())
                async for event in events:
                    self._fold(event)
        finally:
            if refresher is not None:
                refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher

    async def _refresh_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_every)
            with contextlib.suppress(ControlError):  # the stream notices a lost agent
                await self._take_snapshot()

    async def _take_snapshot(self) -> None:
        self.snapshot = await self.client.call(TakeSnapshot())
        self._schedule_flush(now=True)

    def _fold(self, event: Event) -> None:
        """Apply one event to the model; a data-less one asks a snapshot."""
        snapshot = self.snapshot
        if event.kind is EventKind.MODEM:
            modem: ModemStatus = event.data
            others = tuple(m for m in snapshot.modems if m.slot != modem.slot)
            self.snapshot = dataclasses.replace(snapshot, modems=(*others, modem))
        elif event.kind is EventKind.UPLINK:
            uplink: UplinkStatus = event.data
            self.snapshot = dataclasses.replace(snapshot, uplink=uplink)
        elif event.kind is EventKind.PUBLIC_URL:
            public_url: PublicUrlStatus = event.data
            self.snapshot = dataclasses.replace(snapshot, public_url=public_url)
        else:  # message, outbox, takeoff, overflow: "look again"
            if event.kind is EventKind.MESSAGE:
                self._messages_changed = True
            self._look_again()
            return
        self._schedule_flush()

    def _look_again(self) -> None:
        self._stale = True
        self._schedule_flush()

    # Coalescing: at most one SiteChanged per min_interval ------------------------------

    def _schedule_flush(self, *, now: bool = False) -> None:
        if now:
            self._cancel_flush()
            self._flush()
        elif self._flush_handle is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(self.min_interval, self._flush)

    def _cancel_flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None

    def _stop(self) -> None:
        """Nothing scheduled survives a lost connection (or the end of the worker)."""
        self._cancel_flush()
        if self._refreshing is not None:
            self._refreshing.cancel()
            self._refreshing = None
        self._stale = False

    def _flush(self) -> None:
        self._flush_handle = None
        if self._stale:
            self._stale = False
            if self._refreshing is None or self._refreshing.done():
                self._refreshing = asyncio.get_running_loop().create_task(self._refresh())
            else:  # one snapshot at a time; look again after this one
                self._stale = True
                self._schedule_flush()
            return
        changed, self._messages_changed = self._messages_changed, False
        self._post(SiteChanged(self.snapshot, live=True, messages_changed=changed))

    async def _refresh(self) -> None:
        with contextlib.suppress(ControlError):  # the event stream notices a lost agent
            await self._take_snapshot()

    # The agent is down ------------------------------------------------------------------

    async def _show_offline(self, problem: str) -> None:
        if self.db_path is None:
            self._post(SiteChanged(self.snapshot, live=False, problem=problem))
            return
        try:
            snapshot = await asyncio.to_thread(offline.read_offline_snapshot, self.db_path)
        except StoreError as exc:
            self._post(SiteChanged(self.snapshot, live=False, problem=f"{problem}; {exc}"))
            return
        self.snapshot = snapshot
        self._post(SiteChanged(snapshot, live=False, problem=problem))

    # Requests of the screens -------------------------------------------------------------

    async def call(self, request: Request[R]) -> R:
        """An action for the agent, or a question only it answers; ControlError says why
        it did not happen."""
        if not self.live:
            raise ControlError(f"the agent is down: cannot {str(request.OP).replace('_', ' ')} now")
        return await self.client.call(request)

    async def messages(self, query: str = "", limit: int = 200) -> list[MessageSummary]:
        """Newest first, filtered by number or sender; from the database when offline."""
        if not self.live and self.db_path is not None:
            found = await self._offline_read(
                offline.read_offline_messages, self.db_path, query=query, limit=limit
            )
            return list(found)
        return list(await self.call(ListMessages(limit=limit, query=query or None)))

    async def message(self, message_id: int) -> MessageDetail:
        if not self.live and self.db_path is not None:
            return await self._offline_read(offline.read_message_detail, self.db_path, message_id)
        return await self.call(ShowMessage(message_id))

    async def outbox(self) -> list[MessageSummary]:
        """Messages waiting: pending, backing off, dead."""
        return list(await self.call(ListOutbox()))

    async def sims(self) -> list[SimRow]:
        """Every SIM ever seen (only the running agent knows which are in a slot now);
        from the database when offline."""
        if not self.live and self.db_path is not None:
            return list(await self._offline_read(offline.read_offline_sims, self.db_path))
        return list(await self.call(ListSims()))

    async def block_rules(self) -> list[BlockRuleStatus]:
        """The block rules in force (only the running agent knows the configured ones)."""
        return list(await self.call(ListBlockRules()))

    async def _offline_read(self, function: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        try:
            return await asyncio.to_thread(function, *args, **kw)
        except StoreError as exc:
            raise ControlError(str(exc)) from exc
