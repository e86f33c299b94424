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
from datetime import datetime

from peewee import fn

from agent.errors import StoreError
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
    Sim,
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


@dataclass(frozen=True)
class OutboxCounts:
    """What `simedge status` and the dashboard show about the outbox."""

    pending: int  # waiting for their first or next attempt now
    backing_off: int  # waiting for a retry time in the future
    dead: int
    blocked: int
    assembling: int  # multipart messages still waiting for parts
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None


def due_messages(now: datetime, limit: int) -> list[OutboxMessage]:
    """The messages to send now, oldest first: at most the first pending one of each SIM."""
    # Each SIM's first pending message (read off the small partial index of pending rows),
    # then those whose retry time has come. Never a scan of the whole, mostly sent, table.
    first_per_sim = (
        Message.select(fn.MIN(Message.seq))
        .where(Message.state == literal(PENDING))
        .group_by(Message.sim)
    )
    query = (
        Message.select(Message, Sim.number.alias("sim_number"))
        .join(Sim)
        .where(
            Message.seq.in_(first_per_sim)
            & (Message.state == literal(PENDING))
            & (Message.next_attempt_at.is_null() | (Message.next_attempt_at <= now))
        )
        .order_by(Message.seq)
        .limit(limit)
        .objects()
    )
    return [
        OutboxMessage(
            id=row.id,
            iccid=row.sim_id,
            number=row.sim_number,
            slot=row.slot,
            sender=row.sender,
            text=row.text,
            scts=with_offset(row.scts, row.scts_offset_min),
            received_at=row.received_at,
            attempts=row.attempts,
            complete=row.complete,
            missing_parts=tuple(int(seq) for seq in row.missing_parts.split(",") if seq),
        )
        for row in query
    ]


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


def counts(now: datetime) -> OutboxCounts:
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
    return OutboxCounts(
        pending=by_state.get(PENDING, 0) - backing_off,
        backing_off=backing_off,
        dead=by_state.get(DEAD, 0),
        blocked=by_state.get(BLOCKED, 0),
        assembling=by_state.get(ASSEMBLING, 0),
        last_success_at=Message.sent_at.python_value(last_success),
        last_error=last_failure.error if last_failure else None,
        last_error_at=last_failure.at if last_failure else None,
    )
