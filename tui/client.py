"""The dashboard's data layer: follow the agent over its control socket, or the database.

:class:`AgentLink` keeps a model of the site (a :class:`~agent.status.SiteSnapshot`) and
delivers it to the app as :class:`SiteChanged` messages. It runs in one exclusive Textual
worker (see ``SimedgeApp.follow_agent``) and never blocks the agent: the event stream is
read as fast as it comes, folded into the model, and handed to the screen at most every
``min_interval`` seconds, so a burst of 20 SMS/s costs four redraws a second over SSH.

When the agent cannot be reached the link says why (``problem``), shows the last known
state from the database opened read-only (:mod:`tui.offline`), and tries again with a
growing delay until the agent is back.

Event payloads are read with :func:`agent.status.from_json`. An event without a payload
("look again"), a payload the link cannot read, a ``takeoff`` change and an ``overflow``
all lead to a fresh ``snapshot``, asked at most once per ``min_interval``: the snapshot
is always right, events only save asking for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from textual.message import Message

from agent.control.client import ControlClient
from agent.errors import ControlError, StoreError
from agent.status import (
    BlockRuleStatus,
    LogEvent,
    MessageDetail,
    MessageSummary,
    ModemStatus,
    OutboxStatus,
    PublicUrlStatus,
    SimRow,
    SiteSnapshot,
    SlotActivity,
    UplinkStatus,
    from_json,
)
from tui import offline

log = logging.getLogger("simedge.tui")

RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)  # seconds between tries to reach the agent
REFRESH_EVERY = 60.0  # full snapshot: hourly charts, SIMs online, disk free
MAX_EVENTS = 500  # log lines kept in the model
SEEN_IDS = 5000  # message ids remembered, so an update of a message is not counted twice
# Events whose data replaces a part of the snapshot; any other kind asks a fresh snapshot.
FOLDED_KINDS = ("modem", "message", "uplink", "outbox", "log", "public_url")


class SiteChanged(Message):
    """The site's state changed: redraw what differs.

    ``live`` is False when the state was read from the database because the agent is
    down; ``problem`` then says why in words. ``new_messages`` are the messages that
    arrived since the last SiteChanged, newest last."""

    def __init__(
        self,
        snapshot: SiteSnapshot,
        *,
        live: bool,
        problem: str | None = None,
        new_messages: Sequence[MessageSummary] = (),
        messages_changed: bool = False,
    ) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.live = live
        self.problem = problem
        self.new_messages = tuple(new_messages)
        # Messages changed but the events did not carry them: lists should be asked again.
        self.messages_changed = messages_changed


def _parse(cls: type[Any], data: Any, what: str) -> Any:
    """The one place where a malformed answer of the agent becomes a ControlError."""
    try:
        return from_json(cls, data)
    except (ValueError, TypeError) as exc:
        raise ControlError(
            f"the agent's {what} is not understood: {exc} (raw: {data!r:.200})"
        ) from exc


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
        self._new_messages: list[MessageSummary] = []
        self._messages_changed = False
        self._stale = False  # a snapshot is needed at the next flush
        self._refreshing: asyncio.Task[None] | None = None
        self._seen_ids: dict[int, None] = {}
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
            async with contextlib.aclosing(self.client.events()) as events:
                async for event in events:
                    kind = event.get("event")
                    if kind == "subscribed":
                        await self.client.close()  # a request connection left from before
                        await self._take_snapshot()
                        self.live = True
                        refresher = asyncio.create_task(self._refresh_periodically())
                    else:
                        await self._fold(kind, event.get("data"))
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
        self.snapshot = _parse(SiteSnapshot, await self.client.request("snapshot"), "snapshot")
        self._schedule_flush(now=True)

    async def _fold(self, kind: str | None, data: Any) -> None:
        """Apply one event to the model; anything the link cannot apply asks a snapshot."""
        if kind == "message" and data is None:
            self._messages_changed = True
        if data is None or kind not in FOLDED_KINDS:
            # "takeoff", "overflow", a kind this dashboard does not know, or "look again"
            self._stale = True
            self._schedule_flush()
            return
        try:
            snapshot = self.snapshot
            if kind == "modem":
                modem: ModemStatus = _parse(ModemStatus, data, "modem event")
                others = tuple(m for m in snapshot.modems if m.slot != modem.slot)
                snapshot = dataclasses.replace(snapshot, modems=(*others, modem))
            elif kind == "message":
                snapshot = self._count_message(_parse(MessageSummary, data, "message event"))
            elif kind == "uplink":
                uplink = _parse(UplinkStatus, data, "uplink event")
                snapshot = dataclasses.replace(snapshot, uplink=uplink)
            elif kind == "public_url":
                public_url = _parse(PublicUrlStatus, data, "public URL event")
                snapshot = dataclasses.replace(snapshot, public_url=public_url)
            elif kind == "outbox":
                outbox = _parse(OutboxStatus, data, "outbox event")
                snapshot = dataclasses.replace(snapshot, outbox=outbox)
            else:
                event = _parse(LogEvent, data, "log event")
                events = (*snapshot.events[-(MAX_EVENTS - 1) :], event)
                snapshot = dataclasses.replace(snapshot, events=events)
        except ControlError as exc:
            log.warning("%s; taking a fresh snapshot", exc)
            self._stale = True
            self._schedule_flush()
            return
        self.snapshot = snapshot
        self._schedule_flush()

    def _count_message(self, message: MessageSummary) -> SiteSnapshot:
        self._new_messages.append(message)
        snapshot = self.snapshot
        if message.id in self._seen_ids or message.slot is None:
            return snapshot
        self._seen_ids[message.id] = None
        if len(self._seen_ids) > SEEN_IDS:
            del self._seen_ids[next(iter(self._seen_ids))]
        activity = snapshot.activity.get(message.slot, SlotActivity())
        hours = activity.sms_per_hour
        activity = dataclasses.replace(
            activity,
            sms_today=activity.sms_today + 1,
            last_sms_at=max(activity.last_sms_at or 0.0, message.received_at),
            sms_per_hour=(*hours[:-1], hours[-1] + 1) if hours else hours,
        )
        return dataclasses.replace(snapshot, activity={**snapshot.activity, message.slot: activity})

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
        new_messages, self._new_messages = self._new_messages, []
        changed, self._messages_changed = self._messages_changed, False
        self._post(
            SiteChanged(
                self.snapshot, live=True, new_messages=new_messages, messages_changed=changed
            )
        )

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

    async def request(self, op: str, **arguments: Any) -> Any:
        """An action for the agent; ControlError says why it did not happen."""
        if not self.live:
            raise ControlError(f"the agent is down: cannot {op.replace('_', ' ')} now")
        return await self.client.request(op, **arguments)

    async def messages(self, query: str = "", limit: int = 200) -> list[MessageSummary]:
        """Newest first, filtered by number or sender; from the database when offline."""
        if not self.live and self.db_path is not None:
            found = await self._offline_read(
                offline.read_offline_messages, self.db_path, query=query, limit=limit
            )
            return list(found)
        arguments: dict[str, Any] = {"limit": limit}
        if query:
            arguments["query"] = query
        answer = await self.request("messages", **arguments)
        return [_parse(MessageSummary, item, "message list") for item in answer or ()]

    async def message(self, message_id: int) -> MessageDetail:
        if not self.live and self.db_path is not None:
            return await self._offline_read(offline.read_message_detail, self.db_path, message_id)
        answer = await self.request("message", message_id=message_id)
        detail: MessageDetail = _parse(MessageDetail, answer, "message")
        return detail

    async def outbox(self) -> list[MessageSummary]:
        """Messages waiting: pending, backing off, dead."""
        answer = await self.request("outbox")
        return [_parse(MessageSummary, item, "outbox") for item in answer or ()]

    async def sims(self) -> list[SimRow]:
        """Every SIM ever seen (only the running agent knows which are in a slot now)."""
        answer = await self.request("sims")
        return [_parse(SimRow, item, "SIM list") for item in answer or ()]

    async def block_rules(self) -> list[BlockRuleStatus]:
        """The block rules in force (only the running agent knows the configured ones)."""
        answer = await self.request("block_rules")
        return [_parse(BlockRuleStatus, item, "block rule list") for item in answer or ()]

    async def _offline_read(self, function: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        try:
            return await asyncio.to_thread(function, *args, **kw)
        except StoreError as exc:
            raise ControlError(str(exc)) from exc
