"""The last known state of the site, read from the agent's database when the agent is down.

The dashboard must still say something useful when the agent is not running: which
modems and SIMs were last seen where, what is waiting in the outbox, the last events and
messages. It reads the SQLite file **read-only** (``mode=ro`` URI: this process can never
write to it, so it cannot damage the store or hold its write lock) with the standard
library only, through :mod:`agent.readonly`, which ``simedge status`` reads through too:
the dashboard does not import the agent's store layer.

Times in the database are naive UTC text (``2026-03-01 12:00:00.250000``).
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.errors import StoreError
from agent.readonly import (
    connect_read_only,
    db_time,
    epoch,
    read_numbers_online,
    read_outbox,
    read_uplink,
)
from agent.status import (
    AttemptRecord,
    LogEvent,
    MessageDetail,
    MessageSummary,
    ModemState,
    ModemStatus,
    NumberSource,
    PduRecord,
    SimState,
    SiteSnapshot,
    SlotActivity,
    UplinkStatus,
)

HOURS = 24
RECENT_EVENTS = 200
RECENT_MESSAGES = 200
LATENCY_ROWS = 50_000  # enough for a day of a busy site; bounds the read on a Pi


def read_offline_snapshot(path: str | Path, *, now: float | None = None) -> SiteSnapshot:
    """The last known site state (stale by nature) from the database at ``path``."""
    now = time.time() if now is None else now
    with _reading(path) as connection:
        return _snapshot(connection, now)


def read_offline_messages(
    path: str | Path, *, query: str = "", limit: int = RECENT_MESSAGES
) -> tuple[MessageSummary, ...]:
    """The latest messages (filtered by number or sender) from the database at ``path``."""
    with _reading(path) as connection:
        return read_messages(connection, query=query, limit=limit)


@contextmanager
def _reading(path: str | Path) -> Iterator[sqlite3.Connection]:
    connection = connect_read_only(path)
    try:
        yield connection
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot read the agent's database: {exc}") from exc
    finally:
        connection.close()


def read_message_detail(path: str | Path, message_id: int) -> MessageDetail:
    """One message with its raw PDUs and delivery attempts, from the database."""
    connection = connect_read_only(path)
    try:
        summaries = read_messages(connection, message_id=message_id, limit=1)
        if not summaries:
            raise StoreError(f"{path}: no message {message_id}")
        pdus = tuple(
            PduRecord(
                pdu_hex=row["pdu_hex"],
                read_at=epoch(row["read_at"]) or 0.0,
                storage=row["storage"],
                index=row["storage_index"],
                status=row["status"],
                error=row["error"],
            )
            for row in connection.execute(
                "SELECT * FROM received_pdu WHERE message_id = ? ORDER BY id", (message_id,)
            )
        )
        attempts = tuple(
            AttemptRecord(
                at=epoch(row["at"]) or 0.0,
                outcome=row["outcome"],
                http_status=row["http_status"],
                body=row["body"] or row["error"],
            )
            for row in connection.execute(
                "SELECT * FROM delivery_attempt WHERE message_id = ? ORDER BY id", (message_id,)
            )
        )
        return MessageDetail(message=summaries[0], pdus=pdus, attempts=attempts)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot read message {message_id}: {exc}") from exc
    finally:
        connection.close()


def read_messages(
    connection: sqlite3.Connection,
    *,
    query: str = "",
    limit: int = RECENT_MESSAGES,
    message_id: int | None = None,
) -> tuple[MessageSummary, ...]:
    """Newest messages first; ``query`` matches the sender or the SIM's number."""
    where, parameters = ["1"], []
    if query:
        where.append("(m.sender LIKE ? OR s.number LIKE ?)")
        parameters += [f"%{query}%", f"%{query}%"]
    if message_id is not None:
        where.append("m.id = ?")
        parameters.append(message_id)
    rows = connection.execute(
        "SELECT m.*, s.number AS own_number FROM message m LEFT JOIN sim s ON s.iccid = m.iccid "
        f"WHERE {' AND '.join(where)} ORDER BY m.id DESC LIMIT ?",
        (*parameters, limit),
    )
    return tuple(
        MessageSummary(
            id=row["id"],
            sender=row["sender"],
            text=row["text"],
            state=row["state"],
            received_at=epoch(row["received_at"]) or 0.0,
            slot=row["slot"],
            iccid=row["iccid"],
            number=row["own_number"],
            scts=row["scts"],
            attempts=row["attempts"],
            next_attempt_at=epoch(row["next_attempt_at"]),
            sent_at=epoch(row["sent_at"]),
            complete=bool(row["complete"]),
            missing_parts=row["missing_parts"],
            blocked_rule=row["blocked_rule"],
            last_error=row["last_error"],
            # A database an older agent left has no such column (schema version 5).
            problems=row["problems"] if "problems" in row.keys() else None,  # noqa: SIM118
        )
        for row in rows
    )


def _snapshot(connection: sqlite3.Connection, now: float) -> SiteSnapshot:
    uplink = read_uplink(connection)
    day_start = now - now % 86400
    window_start = now - HOURS * 3600
    modems = []
    for row in connection.execute(
        "SELECT m.*, s.iccid, s.imsi, s.number, s.number_source, s.operator FROM modem m "
        "LEFT JOIN sim s ON s.iccid = (SELECT iccid FROM sim WHERE last_slot = m.slot "
        "ORDER BY last_seen DESC LIMIT 1) ORDER BY m.slot"
    ):
        source = row["number_source"]
        modems.append(
            ModemStatus(
                slot=row["slot"],
                at_port=row["port"],
                # Nobody is watching the modem now: "gone" until the agent says otherwise.
                state=ModemState.GONE,
                fault="agent down: last seen " + str(row["last_seen"])[:16] + " UTC",
                manufacturer=row["manufacturer"],
                model=row["model"],
                imei=row["imei"],
                sim_state=SimState.UNKNOWN,
                iccid=row["iccid"],
                imsi=row["imsi"],
                number=row["number"],
                number_source=(
                    NumberSource(source)
                    if source in NumberSource._value2member_map_
                    else NumberSource.UNKNOWN
                ),
                operator=row["operator"],
                updated_at=epoch(row["last_seen"]) or 0.0,
            )
        )
    return SiteSnapshot(
        taken_at=now,
        modems=tuple(modems),
        activity=_activity(connection, day_start, window_start),
        uplink=uplink or UplinkStatus(),
        outbox=read_outbox(connection, now, uplink),
        numbers_online=read_numbers_online(connection),
        forwarded_per_hour=_per_hour(
            connection.execute(
                "SELECT sent_at FROM message WHERE state = 'sent' AND sent_at >= ?",
                (db_time(window_start),),
            ),
            window_start,
        ),
        latency_per_hour=_latency(connection, window_start),
        events=tuple(
            reversed(
                [
                    LogEvent(
                        at=epoch(row["at"]) or 0.0,
                        level=row["level"],
                        kind=row["kind"],
                        text=row["text"],
                        slot=row["slot"],
                        iccid=row["iccid"],
                    )
                    for row in connection.execute(
                        "SELECT * FROM event ORDER BY at DESC, id DESC LIMIT ?", (RECENT_EVENTS,)
                    )
                ]
            )
        ),
    )


def _hour_index(epoch: float, window_start: float) -> int:
    return min(HOURS - 1, max(0, int((epoch - window_start) // 3600)))


def _per_hour(rows: sqlite3.Cursor, window_start: float) -> tuple[int, ...]:
    counts = [0] * HOURS
    for (at,) in rows:
        counts[_hour_index(epoch(at) or window_start, window_start)] += 1
    return tuple(counts)


def _activity(
    connection: sqlite3.Connection, day_start: float, window_start: float
) -> dict[str, SlotActivity]:
    per_hour: dict[str, list[int]] = defaultdict(lambda: [0] * HOURS)
    today: dict[str, int] = defaultdict(int)
    last: dict[str, float] = {}
    for row in connection.execute(
        "SELECT slot, received_at FROM message WHERE slot IS NOT NULL AND received_at >= ?",
        (db_time(min(day_start, window_start)),),
    ):
        at = epoch(row["received_at"]) or 0.0
        if at >= window_start:
            per_hour[row["slot"]][_hour_index(at, window_start)] += 1
        if at >= day_start:
            today[row["slot"]] += 1
    for row in connection.execute(
        "SELECT slot, max(received_at) AS last FROM message WHERE slot IS NOT NULL GROUP BY slot"
    ):
        last[row["slot"]] = epoch(row["last"]) or 0.0
    return {
        slot: SlotActivity(
            sms_today=today.get(slot, 0),
            last_sms_at=last.get(slot),
            sms_per_hour=tuple(per_hour[slot]) if slot in per_hour else (0,) * HOURS,
        )
        for slot in set(last) | set(per_hour)
    }


def _latency(connection: sqlite3.Connection, window_start: float) -> tuple[float | None, ...]:
    delays: list[list[float]] = [[] for _ in range(HOURS)]
    for sent_at, received_at in connection.execute(
        "SELECT sent_at, received_at FROM message WHERE state = 'sent' AND sent_at >= ? "
        "ORDER BY sent_at DESC LIMIT ?",
        (db_time(window_start), LATENCY_ROWS),
    ):
        sent, received = epoch(sent_at) or 0.0, epoch(received_at) or 0.0
        delays[_hour_index(sent, window_start)].append(max(0.0, sent - received))
    return tuple(statistics.median(hour) if hour else None for hour in delays)
