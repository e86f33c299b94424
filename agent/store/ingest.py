"""PDU -> parts -> messages: what the writer does with an SMS read off a modem.

The functions here run inside the writer's transaction (see :mod:`agent.store.db`), are
synchronous, and touch nothing but the database, so the writer may run them again after
SQLite rolled a batch back.

- Dedupe: a PDU is identified by (ICCID, sha256 of its normalised hex). Reading the same
  stored SMS again (the agent crashed between our commit and ``AT+CMGD``) finds the row and
  creates nothing.
- Undecodable PDUs are kept whole with the decoder's error, logged as an event, and never
  uploaded: the modem may delete them, they are safe with us.
- Salvaged PDUs (readable text around a faulty field, docs/pdu-decoder.md) are forwarded:
  the PDU row is marked "salvaged" with the faults, the message carries them in
  ``problems``, and an unusable timestamp is replaced by the time the agent read the SMS.
- Multipart: the parts of an unfinished message live in the ``part`` table under a message
  row in state "assembling", so a restart loses none. The pure
  :class:`agent.protocol.concat.Assembler` is rebuilt from those rows for each part and
  does the joining; the database stays the one source of truth.
- Block rules are applied to the whole text once the message is deliverable.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from peewee import fn

from agent.errors import PduError
from agent.protocol import concat
from agent.protocol.pdu import SmsDeliver
from agent.store import probes
from agent.store.blocking import BlockRules
from agent.store.models import (
    ASSEMBLING,
    BLOCKED,
    PDU_IGNORED,
    PDU_OK,
    PDU_PROBE,
    PDU_SALVAGED,
    PDU_UNDECODABLE,
    PENDING,
    Event,
    Message,
    Part,
    db_time,
    literal,
)


@dataclass(frozen=True)
class IngestResult:
    """What became of one PDU. The caller may delete the SMS from the modem in every case.

    ``duplicate``: this PDU (or this part of a multipart message) was already stored.
    ``message_id``: the message this PDU completed (single part, or the last missing part).
    ``waiting``: a part was stored and its message waits for others.
    ``blocked``: the completed message matched a block rule and will not be uploaded.
    ``error``: the decoder's complaint when the PDU was kept undecodable.
    ``number_found``: the PDU was a number probe (agent.store.probes): kept, not a
    message; this is the ICCID of the SIM whose number it gave.
    """

    pdu_id: int
    duplicate: bool = False
    message_id: int | None = None
    waiting: bool = False
    blocked: bool = False
    error: str | None = None
    number_found: str | None = None


@dataclass(frozen=True)
class ReceivedSms:
    """One PDU as read off a modem, with where and when it was read."""

    iccid: str
    imei: str | None
    slot: str
    storage: str
    index: int | None
    pdu_hex: str  # normalised: no whitespace, upper case
    read_at: datetime  # aware


def normalise_pdu_hex(pdu_hex: str) -> str:
    """The form we hash: modems differ in case and may wrap long lines."""
    return "".join(pdu_hex.split()).upper()


def pdu_digest(normalised_hex: str) -> bytes:
    return hashlib.sha256(normalised_hex.encode("ascii", "replace")).digest()


def offset_minutes(moment: datetime) -> int:
    offset = moment.utcoffset()
    return int(offset.total_seconds() // 60) if offset is not None else 0


def with_offset(utc_moment: datetime, minutes: int) -> datetime:
    """The SCTS as the sender's network wrote it: UTC moment shown in its own zone."""
    return utc_moment.astimezone(timezone(timedelta(minutes=minutes)))


def sql(statement: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
    # The hot path speaks SQL directly: peewee spends ~150 us building each statement,
    # twenty times what SQLite needs to run it, and an ingest runs several. It goes to the
    # sqlite3 connection itself, not through peewee's execute_sql (a cursor, a log record
    # and an error wrapper each time: 8 Python calls, a sixth of the writer's per SMS).
    # Errors stay sqlite3's own: agent.store.db.translate reads them as it reads peewee's.
    return Message._meta.database.connection().execute(statement, params)


def touch_sim(iccid: str, *, slot: str | None, imei: str | None, seen_at: datetime) -> None:
    """Make sure the SIM row exists (messages reference it) and note where it was seen."""
    seen = db_time(seen_at)
    sql(
        'INSERT INTO "sim" ("iccid", "last_slot", "last_imei", "first_seen", "last_seen")'
        ' VALUES (?, ?, ?, ?, ?) ON CONFLICT ("iccid") DO UPDATE SET'
        ' "last_seen" = excluded."last_seen",'
        ' "last_slot" = COALESCE(excluded."last_slot", "last_slot"),'
        ' "last_imei" = COALESCE(excluded."last_imei", "last_imei")',
        (iccid, slot, imei, seen, seen),
    )


def log_event(
    kind: str,
    text: str,
    *,
    at: datetime,
    level: str = "info",
    slot: str | None = None,
    iccid: str | None = None,
) -> int:
    return Event.insert(at=at, level=level, kind=kind, text=text, slot=slot, iccid=iccid).execute()


def ingest(
    received: ReceivedSms,
    decoded: object,
    rules: BlockRules,
    assembly_timeout: float,
) -> IngestResult:
    """Store one received PDU. ``decoded`` is what ``pdu.decode`` returned or raised."""
    touch_sim(received.iccid, slot=received.slot, imei=received.imei, seen_at=received.read_at)
    digest = pdu_digest(received.pdu_hex)
    # Dedupe is the PDU row's INSERT itself (see _keep_pdu): nothing before it writes.
    status, error = PDU_OK, None
    if isinstance(decoded, PduError):
        status, error = PDU_UNDECODABLE, str(decoded)
    elif not isinstance(decoded, SmsDeliver):
        status = PDU_IGNORED
        error = f"an {type(decoded).__name__} is not a received SMS; kept, not forwarded"
    elif decoded.problems:
        status, error = PDU_SALVAGED, problems_text(decoded)
        if decoded.timestamp is None:
            decoded = replace(decoded, timestamp=received.read_at)
    probe = probes.awaited(received.iccid, decoded, received.read_at)
    if probe is not None:
        status = PDU_PROBE
    elif isinstance(decoded, SmsDeliver) and (decoded.concat is None or decoded.concat.total == 1):
        return _single(received, decoded, digest, status, error, rules)
    pdu_id = _keep_pdu(received, digest, status, error)
    if pdu_id is None:
        return _duplicate(received, digest)
    if probe is not None:
        probes.found(probe, received.read_at)
        return IngestResult(pdu_id=pdu_id, number_found=probe.iccid)
    if status == PDU_SALVAGED:
        _log_salvaged(received, pdu_id, error)
    if not isinstance(decoded, SmsDeliver):
        where = f"{received.storage} index {received.index}"
        log_event(
            "pdu_" + status,
            f"PDU #{pdu_id} at {where}: {error}",
            at=received.read_at,
            level="warning" if status == PDU_UNDECODABLE else "info",
            slot=received.slot,
            iccid=received.iccid,
        )
        return IngestResult(pdu_id=pdu_id, error=error)
    return _add_part(received, decoded, pdu_id, rules, assembly_timeout)


def _keep_pdu(
    received: ReceivedSms,
    digest: bytes,
    status: str,
    error: str | None,
    message_id: int | None = None,
) -> int | None:
    """The raw PDU's row; ``message_id`` when its message is stored already. None when
    this SIM's row of the same PDU exists: a duplicate, nothing written. The unique index
    on (ICCID, digest) decides, in the INSERT itself: a SELECT before it cost one more
    statement per SMS to search the same index."""
    cursor = sql(
        'INSERT INTO "received_pdu" ("iccid", "imei", "slot", "storage", "storage_index",'
        ' "pdu_hex", "digest", "read_at", "status", "error", "message_id")'
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ' ON CONFLICT ("iccid", "digest") DO NOTHING',
        (
            received.iccid,
            received.imei,
            received.slot,
            received.storage,
            received.index,
            received.pdu_hex,
            digest,
            db_time(received.read_at),
            status,
            error,
            message_id,
        ),
    )
    # rowcount, not lastrowid: after DO NOTHING, lastrowid is the previous INSERT's.
    return cursor.lastrowid if cursor.rowcount == 1 else None


def _duplicate(received: ReceivedSms, digest: bytes) -> IngestResult:
    """The PDU read again (the agent stopped between its commit and ``AT+CMGD``)."""
    (pdu_id,) = sql(
        'SELECT "id" FROM "received_pdu" WHERE "iccid" = ? AND "digest" = ?',
        (received.iccid, digest),
    ).fetchone()
    return IngestResult(pdu_id=pdu_id, duplicate=True)


def _log_salvaged(received: ReceivedSms, pdu_id: int, error: str | None) -> None:
    log_event(
        "pdu_salvaged",
        f"PDU #{pdu_id} at {received.storage} index {received.index} forwarded around "
        f"faults: {error}",
        at=received.read_at,
        level="warning",
        slot=received.slot,
        iccid=received.iccid,
    )


def problems_text(sms: SmsDeliver) -> str | None:
    """The decoder's problems as the store keeps them: one line each; None when sound."""
    return "\n".join(str(problem) for problem in sms.problems) or None


def _timestamp(sms: SmsDeliver) -> datetime:
    # ingest() put the read time where salvage found the SCTS unusable.
    assert sms.timestamp is not None
    return sms.timestamp


def _single(
    received: ReceivedSms,
    sms: SmsDeliver,
    digest: bytes,
    status: str,
    error: str | None,
    rules: BlockRules,
) -> IngestResult:
    """A one-part SMS: deliverable at once, in two statements, with no ``part`` row (the
    message and its PDU hold all of it). The message goes in first, so that the PDU's row
    is written once, already pointing at it (an UPDATE after would move its entry in the
    index on ``message_id`` and write one more page per commit). When the PDU is a
    duplicate, the message made for it is deleted again: rare, and then nothing is left."""
    message_id, blocked_rule = add_message(
        iccid=received.iccid,
        slot=received.slot,
        sender=sms.sender,
        sender_type=sms.sender_type,
        text=sms.text,
        encoding=sms.encoding,
        scts=_timestamp(sms),
        received_at=received.read_at,
        rules=rules,
        problems=problems_text(sms),
    )
    pdu_id = _keep_pdu(received, digest, status, error, message_id)
    if pdu_id is None:
        sql('DELETE FROM "message" WHERE "id" = ?', (message_id,))
        return _duplicate(received, digest)
    if status == PDU_SALVAGED:
        _log_salvaged(received, pdu_id, error)
    if blocked_rule:
        _log_blocked(message_id, sms.sender, blocked_rule, received, received.read_at)
    return IngestResult(pdu_id=pdu_id, message_id=message_id, blocked=bool(blocked_rule))


def add_message(
    *,
    iccid: str,
    slot: str | None,
    sender: str,
    sender_type: str,
    text: str,
    encoding: str,
    scts: datetime,
    received_at: datetime,
    rules: BlockRules,
    problems: str | None = None,
) -> tuple[int, str | None]:
    """A complete one-part message, due for upload unless a block rule holds it (the
    rule's name is returned beside the id)."""
    blocked_rule = rules.first_match(sender, text)
    read_at = db_time(received_at)
    offset = offset_minutes(scts)
    message_id = sql(
        'INSERT INTO "message" ("iccid", "slot", "sender", "sender_type", "text", "encoding",'
        ' "scts", "scts_offset_min", "received_at", "ready_at", "seq", "part_count",'
        ' "complete", "missing_parts", "blocked_rule", "state", "attempts", "problems")'
        ' VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX("seq"), 0) + 1'
        " FROM \"message\"), 1, 1, '', ?, ?, 0, ?)",
        (
            iccid,
            slot,
            sender,
            sender_type,
            text,
            encoding,
            db_time(scts),
            offset,
            read_at,
            read_at,
            blocked_rule,
            BLOCKED if blocked_rule else PENDING,
            problems,
        ),
    ).lastrowid
    return message_id, blocked_rule


def _log_blocked(
    message_id: int, sender: str, rule: str, where: ReceivedSms | Message, at: datetime
) -> None:
    iccid = where.iccid if isinstance(where, ReceivedSms) else where.sim_id
    log_event(
        "message_blocked",
        f"message #{message_id} from {sender} blocked by rule {rule!r}",
        at=at,
        slot=where.slot,
        iccid=iccid,
    )


def _stored_part(row: Part) -> concat.Part:
    return concat.Part(
        seq=row.seq,
        text=row.text,
        encoding=row.encoding,
        data=bytes(row.data),
        timestamp=with_offset(row.scts, row.scts_offset_min),
        received_at=row.received_at.timestamp(),
    )


def _pending_of(row: Message) -> concat.PendingMessage:
    parts = {part.seq: _stored_part(part) for part in row.parts}
    return concat.PendingMessage(row.sim_id, row.sender, row.concat_ref, row.part_count, parts)


def _add_part(
    received: ReceivedSms,
    sms: SmsDeliver,
    pdu_id: int,
    rules: BlockRules,
    assembly_timeout: float,
) -> IngestResult:
    """One part of a multipart SMS: joined with the parts stored before it."""
    assert sms.concat is not None
    seq = sms.concat.seq
    same_key = (
        (Message.sim == received.iccid)
        & (Message.sender == sms.sender)
        & (Message.concat_ref == sms.concat.ref)
        & (Message.part_count == sms.concat.total)
    )
    group = Message.select().where(same_key & (Message.state == literal(ASSEMBLING))).first()
    if group is not None:
        copy_of = _held_part(group, seq)
    else:
        copy_of = _recent_copy(same_key, seq, sms, received, assembly_timeout)
    if copy_of is not None:
        # The SMSC sent this part again (a different PDU: another SCTS or SMSC): the PDU
        # is kept, attached to its message, and no part is added.
        sql(
            'UPDATE "received_pdu" SET "message_id" = ? WHERE "id" = ?',
            (copy_of.message_id, pdu_id),
        )
        return IngestResult(pdu_id=pdu_id, duplicate=True)

    assembler = concat.Assembler([_pending_of(group)] if group else [])
    whole = assembler.add(received.iccid, sms, received.read_at.timestamp())
    if group is None:
        group = Message.create(
            sim=received.iccid,
            slot=received.slot,
            sender=sms.sender,
            sender_type=sms.sender_type,
            encoding=sms.encoding,
            scts=_timestamp(sms),
            scts_offset_min=offset_minutes(_timestamp(sms)),
            received_at=received.read_at,
            concat_ref=sms.concat.ref,
            part_count=sms.concat.total,
            state=ASSEMBLING,
        )
    Part.create(
        message=group,
        seq=seq,
        text=sms.text,
        encoding=sms.encoding,
        data=sms.data,
        scts=_timestamp(sms),
        scts_offset_min=offset_minutes(_timestamp(sms)),
        received_at=received.read_at,
        pdu=pdu_id,
    )
    if sms.problems:
        # Each part's faults, named by the part they came from.
        faults = "\n".join(f"part {seq}: {problem}" for problem in sms.problems)
        group.problems = f"{group.problems}\n{faults}" if group.problems else faults
        group.save(only=[Message.problems])
    sql('UPDATE "received_pdu" SET "message_id" = ? WHERE "id" = ?', (group.id, pdu_id))
    if whole is None:
        return IngestResult(pdu_id=pdu_id, waiting=True)
    state = finish(group, whole, rules, ready_at=received.read_at)
    return IngestResult(pdu_id=pdu_id, message_id=group.id, blocked=state == BLOCKED)


def _held_part(group: Message, seq: int) -> Part | None:
    return Part.get_or_none((Part.message == group) & (Part.seq == seq))


def _recent_copy(
    same_key: object, seq: int, sms: SmsDeliver, received: ReceivedSms, window: float
) -> Part | None:
    """A part identical to one of a message completed within the assembly window: without
    this check, a part the SMSC repeats after completion would start a new message that
    the timeout would later deliver as a one-part fragment."""
    since = received.read_at - timedelta(seconds=window)
    return (
        Part.select()
        .join(Message)
        .where(
            same_key,
            Message.state != literal(ASSEMBLING),
            Message.ready_at >= since,
            Part.seq == seq,
            Part.text == sms.text,
        )
        .first()
    )


def finish(row: Message, whole: concat.Message, rules: BlockRules, *, ready_at: datetime) -> str:
    """Turn an assembling row into a deliverable message; return its state."""
    blocked_rule = rules.first_match(whole.sender, whole.text)
    next_seq = Message.select(fn.COALESCE(fn.MAX(Message.seq), 0) + 1).scalar()
    row.text = whole.text
    row.encoding = whole.encoding
    row.scts = whole.timestamp
    row.scts_offset_min = offset_minutes(whole.timestamp)
    row.complete = whole.complete
    row.missing_parts = ",".join(str(seq) for seq in whole.missing)
    row.blocked_rule = blocked_rule
    row.state = BLOCKED if blocked_rule else PENDING
    row.ready_at = ready_at
    row.seq = next_seq
    row.save()
    if blocked_rule:
        _log_blocked(row.id, whole.sender, blocked_rule, row, ready_at)
    return row.state


def shift_assembling(shift: float) -> int:
    """Move the receipt times of the long SMS still waiting for parts by ``shift`` seconds,
    a jump of the wall clock: their timeout then still counts from when they came (see
    agent.clock). Returns how many messages moved."""
    delta = timedelta(seconds=shift)
    waiting = list(
        Message.select(Message.id, Message.received_at).where(Message.state == literal(ASSEMBLING))
    )
    ids = [row.id for row in waiting]
    for row in waiting:
        Message.update(received_at=row.received_at + delta).where(Message.id == row.id).execute()
    for part in Part.select(Part.id, Part.received_at).where(Part.message.in_(ids)):
        Part.update(received_at=part.received_at + delta).where(Part.id == part.id).execute()
    return len(ids)


def expire(now: datetime, timeout: float, rules: BlockRules) -> list[tuple[int, str]]:
    """Deliver what arrived of multipart messages whose first part is ``timeout`` seconds
    old, marked incomplete. Returns (message id, state) of each, oldest first."""
    cutoff = now - timedelta(seconds=timeout)
    rows = list(
        Message.select()
        .where((Message.state == literal(ASSEMBLING)) & (Message.received_at <= cutoff))
        .order_by(Message.id)
    )
    by_key = {(row.sim_id, row.sender, row.concat_ref, row.part_count): row for row in rows}
    assembler = concat.Assembler(_pending_of(row) for row in rows)
    delivered = []
    for whole in assembler.expire(now.timestamp(), timeout):
        row = by_key[(whole.sim, whole.sender, whole.ref, whole.total)]
        state = finish(row, whole, rules, ready_at=now)
        missing = ",".join(str(seq) for seq in whole.missing)
        log_event(
            "message_incomplete",
            f"message #{row.id} from {whole.sender}: parts {missing} of {whole.total} never "
            f"arrived; delivering what did",
            at=now,
            level="warning",
            slot=row.slot,
            iccid=row.sim_id,
        )
        delivered.append((row.id, state))
    return delivered
