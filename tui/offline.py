"""The last known state of the site, read from the agent's database when the agent is down.

The dashboard must still say something useful when the agent is not running: which
modems and SIMs were last seen where, what is waiting in the outbox, the last events and
messages. It reads them with the agent's own read queries (:mod:`agent.store.queries`),
on the file opened **read-only** (``mode=ro``: this process can never write to it, so it
cannot damage the store or hold its write lock). The same rows therefore read the same
here as in the running agent's answers: one reader, not two that drift.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from agent.errors import StoreError
from agent.status import MessageDetail, MessageSummary, SimRow, SiteSnapshot, UplinkStatus
from agent.store import queries

RECENT_EVENTS = 200
RECENT_MESSAGES = 200


def read_offline_snapshot(path: str | Path, *, now: float | None = None) -> SiteSnapshot:
    """The last known site state (stale by nature) from the database at ``path``."""
    now = time.time() if now is None else now
    with queries.reading(path):
        uplink = queries.recorded_uplink()
        activity, forwarded, latency = queries.activity(now)
        outbox = queries.outbox_status(now)
        return SiteSnapshot(
            taken_at=now,
            modems=tuple(
                # Nobody watches the modem now: "gone" until the agent says otherwise.
                dataclasses.replace(
                    modem, fault=f"agent down: last seen {_minute(modem.updated_at)}"
                )
                for modem in queries.known_modems()
            ),
            activity=activity,
            uplink=uplink or UplinkStatus(),
            outbox=outbox if uplink is None else outbox.with_uplink_error(uplink),
            numbers_online=queries.numbers_online(),
            forwarded_per_hour=forwarded,
            latency_per_hour=latency,
            events=tuple(queries.events(RECENT_EVENTS)),
        )


def read_offline_messages(
    path: str | Path, *, query: str = "", limit: int = RECENT_MESSAGES
) -> tuple[MessageSummary, ...]:
    """The latest messages (filtered by number or sender) from the database at ``path``."""
    with queries.reading(path):
        return tuple(queries.messages(limit, query or None))


def read_message_detail(path: str | Path, message_id: int) -> MessageDetail:
    """One message with its raw PDUs and delivery attempts, from the database."""
    with queries.reading(path):
        detail = queries.message_detail(message_id)
    if detail is None:
        raise StoreError(f"{path}: no message {message_id}")
    return detail


def read_offline_sims(path: str | Path, *, now: float | None = None) -> tuple[SimRow, ...]:
    """Every SIM ever seen, from the database at ``path``: no SIM is in a slot (nobody
    watches them), each is where it was last seen. The dashboard has no configuration
    here, so no balance is marked low and no keep-alive deadline is computed."""
    now = time.time() if now is None else now
    with queries.reading(path):
        return tuple(queries.sims(now))


def _minute(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))
