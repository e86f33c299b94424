"""The store side of the outbox: which messages are due, and what became of each attempt.

Order per SIM: a SIM's messages go up in receipt order (``Message.seq``). A message is due
only when no earlier message of the same SIM is still pending (waiting or backing off), so
a verification code never overtakes the one sent before it. Dead and blocked messages are
out of the line and hold nothing back.

Every attempt lands in ``delivery_attempt`` (time, outcome, HTTP status, raw body): the
dashboard shows a message's history, and a dead letter keeps the answer that killed it.

Writes are synchronous functions run by the writer; reads are small indexed queries the
event loop may run directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from peewee import fn

from agent.errors import StoreError
from agent.status import OutboxStatus
from agent.store.ingest import log_event, sql, with_offset
from agent.store.models import (
    ASSEMBLING,
    ATTEMPT_DEAD,
    ATTEMPT_RETRY,
    ATTEMPT_SENT,
    BLOCKED,
    DEAD,
    PENDING,
    SENT,
    DeliveryAttempt,
    Message,
    db_time,
    literal,
)


@dataclass(frozen=True)
class OutboxMessage:
    """A message due for upload, with what ``addMessage`` needs."""

    id: int
    iccid: str
    number: str | None  # the SIM's own number; None while unknown
    slot: str | None
    sender: str
    text: str
    scts: datetime  # aware, in the sender network's own offset
    received_at: datetime
    attempts: int
    complete: bool
    missing_parts: tuple[int, ...]


# The outbox reads run once per upload, so they speak SQL directly (see ingest.sql): peewee
# spends milliseconds building this statement, SQLite microseconds running it. Both use
# the partial index of pending rows, (iccid, seq) WHERE state = 'pending'.
_COLUMNS = (
    'm."id", m."iccid", s."number", m."slot", m."sender", m."text", m."scts",'
    ' m."scts_offset_min", m."received_at", m."attempts", m."complete", m."missing_parts",'
    ' m."next_attempt_at"'
)
# Each SIM's first pending message (one probe of the index per SIM), of which those whose
# retry time has come. Never a scan of the whole, mostly sent, table; a GROUP BY over all
# pending rows instead costs 30 ms with a backlog of 100,000.
_DUE = (
    f'SELECT {_COLUMNS} FROM "message" m JOIN "sim" s ON s."iccid" = m."iccid"'
    ' WHERE m."seq" IN (SELECT (SELECT p."seq" FROM "message" p WHERE p."iccid" = q."iccid"'
    f' AND p."state" = \'{PENDING}\' ORDER BY p."seq" LIMIT 1) FROM "sim" q)'
    f" AND m.\"state\" = '{PENDING}'"
    ' AND (m."next_attempt_at" IS NULL OR m."next_attempt_at" <= ?)'
    ' ORDER BY m."seq" LIMIT ?'
)
_SIM_QUEUE = (
    f'SELECT {_COLUMNS} FROM "message" m JOIN "sim" s ON s."iccid" = m."iccid"'
    f' WHERE m."iccid" = ? AND m."state" = \'{PENDING}\' ORDER BY m."seq" LIMIT ?'
)


def _row(row: tuple[Any, ...]) -> OutboxMessage:
    (id_, iccid, number, slot, sender, text, scts, offset, received_at, attempts, complete,
     missing, _next_attempt_at) = row  # fmt: skip
    return OutboxMessage(
        id=id_,
        iccid=iccid,
        number=number,
        slot=slot,
        sender=sender,
        text=text,
        scts=with_offset(_utc(scts), offset),
        received_at=_utc(received_at),
        attempts=attempts,
        complete=bool(complete),
        missing_parts=tuple(int(seq) for seq in missing.split(",") if seq),
    )


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def due_messages(now: datetime, limit: int) -> list[OutboxMessage]:
    """The messages to send now, oldest first: at most the first pending one of each SIM."""
    return [_row(row) for row in sql(_DUE, (db_time(now), limit)).fetchall()]


def sim_queue(iccid: str, now: datetime, limit: int) -> list[OutboxMessage]:
    """The next ``limit`` pending messages of one SIM, in order, as long as they are due:
    empty while the SIM's first pending message waits for its retry time."""
    due: list[OutboxMessage] = []
    moment = db_time(now)
    for row in sql(_SIM_QUEUE, (iccid, limit)).fetchall():
        next_attempt_at = row[-1]
        if next_attempt_at is not None and next_attempt_at > moment:
            break
        due.append(_row(row))
    return due


def _message(message_id: int) -> Message:
    row = Message.get_or_none(Message.id == message_id)
    if row is None:
        raise StoreError(f"message #{message_id} does not exist (pruned or never stored)")
    return row


def mark_sent(message_id: int, at: datetime, status: int | None, body: str | None) -> None:
    # The happy path of every message: plain SQL, two statements (see ingest._sql).
    sent_at = db_time(at)
    updated = sql(
        'UPDATE "message" SET "state" = ?, "sent_at" = ?, "attempts" = "attempts" + 1,'
        ' "next_attempt_at" = NULL, "last_error" = NULL WHERE "id" = ?',
        (SENT, sent_at, message_id),
    ).rowcount
    if not updated:
        _message(message_id)  # raises the error that names the message
    sql(
        'INSERT INTO "delivery_attempt" ("message_id", "at", "outcome", "http_status", "body")'
        " VALUES (?, ?, 'sent', ?, ?)",
        (message_id, sent_at, status, body),
    )


def schedule_retry(
    message_id: int,
    attempt: int,
    next_at: datetime,
    error: str,
    *,
    at: datetime,
    status: int | None = None,
    body: str | None = None,
) -> None:
    row = _message(message_id)
    if row.state != PENDING:
        raise StoreError(f"message #{message_id} is {row.state}: only pending ones are retried")
    row.attempts = attempt
    row.next_attempt_at = next_at
    row.last_error = error
    row.save()
    DeliveryAttempt.create(
        message=row, at=at, outcome=ATTEMPT_RETRY, http_status=status, body=body, error=error
    )


def record_link_failure(
    message_id: int, error: str, *, at: datetime, status: int | None, body: str | None
) -> None:
    """An attempt that failed for the link's sake (network, timeout, 5xx, 429): kept in the
    history, but the message's own schedule (``attempts``, ``next_attempt_at``) is left
    alone: the link has one back-off for all messages (docs/uplink.md)."""
    row = _message(message_id)
    if row.state != PENDING:
        raise StoreError(f"message #{message_id} is {row.state}: only pending ones are retried")
    row.last_error = error
    row.save()
    DeliveryAttempt.create(
        message=row, at=at, outcome=ATTEMPT_RETRY, http_status=status, body=body, error=error
    )


def clamped_retry_times(now: datetime, shift: float, cap: float) -> dict[int, datetime]:
    """The persisted retry times to move: each shifted by ``shift`` seconds (a wall-clock
    jump the pump saw on the monotonic clock), then any still more than ``cap`` seconds
    after ``now`` brought back to ``now + cap``, so that a retry time written before the
    clock was set right never makes a message wait longer than the policy's cap.
    A read: nothing is written when nothing moves."""
    latest = now + timedelta(seconds=cap)
    rows = Message.select(Message.id, Message.next_attempt_at).where(
        (Message.state == literal(PENDING)) & Message.next_attempt_at.is_null(False)
    )
    moves: dict[int, datetime] = {}
    for row in rows:
        when = min(row.next_attempt_at + timedelta(seconds=shift), latest)
        if when != row.next_attempt_at:
            moves[row.id] = when
    return moves


def set_retry_times(moves: dict[int, datetime]) -> None:
    for message_id, when in moves.items():
        Message.update(next_attempt_at=when).where(
            (Message.id == message_id) & (Message.state == literal(PENDING))
        ).execute()


def dead_letter(
    message_id: int, reason: str, status: int | None, body: str | None, *, at: datetime
) -> None:
    row = _message(message_id)
    row.state = DEAD
    row.attempts += 1
    row.next_attempt_at = None
    row.last_error = reason
    row.save()
    DeliveryAttempt.create(
        message=row, at=at, outcome=ATTEMPT_DEAD, http_status=status, body=body, error=reason
    )
    log_event(
        "message_dead",
        f"message #{row.id} from {row.sender} not uploaded: {reason}",
        at=at,
        level="error",
        slot=row.slot,
        iccid=row.sim_id,
    )


def retry(message_id: int, *, at: datetime) -> None:
    """Put a dead message back in line, or make a backing-off one due now (by hand).

    The attempt count restarts so the retry policy's backoff starts small again; the
    earlier attempts stay in the history."""
    row = _message(message_id)
    if row.state not in (DEAD, PENDING):
        raise StoreError(
            f"message #{message_id} is {row.state}: only dead or waiting messages can be retried"
        )
    row.state = PENDING
    row.attempts = 0
    row.next_attempt_at = None
    row.save()
    log_event(
        "message_retry",
        f"message #{row.id} put back in the outbox by hand",
        at=at,
        slot=row.slot,
        iccid=row.sim_id,
    )


def retry_all_dead(*, at: datetime) -> int:
    count = (
        Message.update(state=PENDING, attempts=0, next_attempt_at=None)
        .where(Message.state == literal(DEAD))
        .execute()
    )
    if count:
        log_event("message_retry", f"{count} dead messages put back in the outbox by hand", at=at)
    return count


def pending_count() -> int:
    """Messages waiting for an attempt, now or at a retry time: the outbox's depth."""
    (count,) = sql('SELECT COUNT(*) FROM "message" WHERE "state" = ?', (PENDING,)).fetchone()
    return int(count)


def counts(now: datetime) -> OutboxStatus:
    """What ``simedge status`` and the dashboard show of the outbox (the uplink's own last
    error is added by the caller: :meth:`OutboxStatus.with_uplink_error`)."""
    by_state = dict(
        Message.select(Message.state, fn.COUNT(Message.id))
        .where(Message.state != literal(SENT))
        .group_by(Message.state)
        .tuples()
    )
    backing_off = (
        Message.select()
        .where((Message.state == literal(PENDING)) & (Message.next_attempt_at > now))
        .count()
    )
    last_success = (
        Message.select(fn.MAX(Message.sent_at)).where(Message.state == literal(SENT)).scalar()
    )
    last_failure = (
        DeliveryAttempt.select()
        .where(DeliveryAttempt.outcome != literal(ATTEMPT_SENT))
        .order_by(DeliveryAttempt.id.desc())
        .first()
    )
    last_success_at = Message.sent_at.python_value(last_success)
    return OutboxStatus(
        pending=by_state.get(PENDING, 0) - backing_off,
        backing_off=backing_off,
        dead=by_state.get(DEAD, 0),
        blocked=by_state.get(BLOCKED, 0),
        assembling=by_state.get(ASSEMBLING, 0),
        last_success_at=last_success_at.timestamp() if last_success_at else None,
        last_error=last_failure.error if last_failure else None,
        last_error_at=last_failure.at.timestamp() if last_failure else None,
    )
