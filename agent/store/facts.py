"""Facts the agent knows in memory, kept in the ``site_fact`` table for the readers that
cannot ask it: ``simedge status`` and the dashboard while the agent is down (both read
them with :mod:`agent.store.queries` on a read-only connection). Each is the JSON of an
:mod:`agent.status` shape.

- ``uplink`` (:data:`~agent.status.FACT_UPLINK`): the uplink's condition and its last
  error with its time. Kept by :class:`UplinkRecorder`, which also carries the last error
  of an earlier run into this one: a restart does not make "last error none" true.
- ``numbers_online`` (:data:`~agent.status.FACT_NUMBERS_ONLINE`): the numbers in the last
  list OnlineSim accepted and when, written by the numbers sync after each accepted list
  (:mod:`agent.uplink.numbers`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from agent.logs import get_logger
from agent.status import UplinkStatus, from_json
from agent.store.models import SiteFact

log = get_logger("store.facts")

#: A success alone (a backlog drain has hundreds a second) moves only the last-success
#: time: written at most this often. A change of condition, code or error goes at once.
SUCCESS_WRITE_INTERVAL = 60.0


def write_fact(name: str, value: dict[str, Any], at: datetime | None = None) -> None:
    """Set one fact (a writer job: run it through the store's single writer)."""
    moment = at or datetime.now(UTC)
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    SiteFact.insert(name=name, value=text, updated_at=moment).on_conflict(
        conflict_target=[SiteFact.name],
        update={SiteFact.value: text, SiteFact.updated_at: moment},
    ).execute()


def read_fact(name: str) -> dict[str, Any] | None:
    """One fact as JSON, or None when it was never written (or does not parse)."""
    row = SiteFact.get_or_none(SiteFact.name == name)
    if row is None:
        return None
    try:
        value = json.loads(row.value)
    except ValueError:
        log.warning("site fact %s does not parse; ignored: %r", name, row.value[:200])
        return None
    return value if isinstance(value, dict) else None


class UplinkRecorder:
    """Keeps the ``uplink`` fact equal to the uplink's state, with the last error of any
    run. Give :meth:`update` every new snapshot (``UplinkTracker.on_change``); ``write``
    stores one value (through the store's writer). One write at a time, none queued
    behind it: the write that follows takes the newest snapshot."""

    def __init__(
        self,
        write: Callable[[dict[str, Any]], Awaitable[None]],
        earlier: dict[str, Any] | None = None,
        *,
        interval: float = SUCCESS_WRITE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._interval = interval
        self._clock = clock
        self._earlier = UplinkStatus()
        if earlier is not None:
            try:
                self._earlier = from_json(UplinkStatus, earlier, where="site fact uplink")
            except ValueError as exc:
                log.warning("%s; the uplink's earlier state is ignored", exc)
        self._status: UplinkStatus | None = None
        self._written: UplinkStatus | None = None
        self._last_write = -float("inf")
        self._failed = False  # the last write failed: the next waits the interval
        self._closed = False
        self._pending: asyncio.TimerHandle | None = None
        self._writing: asyncio.Task[None] | None = None

    @property
    def earlier(self) -> UplinkStatus:
        """The uplink as the fact had it when this run started."""
        return self._earlier

    def status(self, live: UplinkStatus) -> UplinkStatus:
        """``live`` with the last error and success of an earlier run where it has none
        newer: what the dashboard and the fact show."""
        earlier = self._earlier
        merged = live
        if earlier.last_error_at is not None and (
            live.last_error_at is None or live.last_error_at < earlier.last_error_at
        ):
            merged = replace(
                merged, last_error=earlier.last_error, last_error_at=earlier.last_error_at
            )
        if earlier.last_success_at is not None and (
            live.last_success_at is None or live.last_success_at < earlier.last_success_at
        ):
            merged = replace(merged, last_success_at=earlier.last_success_at)
        return merged

    def update(self, live: UplinkStatus) -> None:
        """A new snapshot of the uplink: written at once when its condition, code or last
        error changed, else within :data:`SUCCESS_WRITE_INTERVAL`."""
        self._status = self.status(live)
        self._plan()

    def _plan(self) -> None:
        status, written = self._status, self._written
        if self._closed or status is None or status == written:
            return
        if self._writing is not None:
            return  # it plans again when it is done
        news = written is None or (
            (written.state, written.code, written.last_error_at)
            != (status.state, status.code, status.last_error_at)
        )
        wait = 0.0
        if self._failed or not news:
            wait = self._last_write + self._interval - self._clock()
        if self._pending is not None:
            if wait > 0:
                return  # the write already planned will take this snapshot
            self._pending.cancel()
        self._pending = asyncio.get_running_loop().call_later(max(0.0, wait), self._start)

    def _start(self) -> None:
        self._pending = None
        self._writing = asyncio.get_running_loop().create_task(self._write_once())

    async def _write_once(self) -> None:
        status = self._status
        if status is None:
            return
        self._last_write = self._clock()
        try:
            await self._write(status.to_json())
        except Exception as exc:  # the store says why (disk full...): try again later
            self._failed = True
            log.warning("the uplink's state was not saved: %s", exc)
        else:
            self._failed = False
            self._written = status
        finally:
            self._writing = None
            self._plan()

    async def written(self) -> None:
        """Return once the newest snapshot is in the database (a planned write is done
        now): for whoever reads the fact next, ``simedge status`` in a test."""
        while self._status is not None and self._status != self._written and not self._closed:
            if self._writing is None:
                if self._pending is not None:
                    self._pending.cancel()
                self._start()
            assert self._writing is not None
            await asyncio.gather(self._writing, return_exceptions=True)
            if self._failed:
                return

    async def flush(self) -> None:
        """Write what is not written yet, then no more (at shutdown)."""
        self._closed = True
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._writing is not None:
            await asyncio.gather(self._writing, return_exceptions=True)
        if self._status is not None and self._status != self._written:
            await self._write_once()
