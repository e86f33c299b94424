"""Read-side queries for the dashboard, the control socket and ``simedge status``.

Each function runs on a read connection and returns the plain shapes of
:mod:`agent.status`. Nothing here writes. In the agent, call them through ``Store.read``
(so the event loop never waits on SQLite); in another process (the dashboard while the
agent is down), inside :func:`reading`, which binds the models to the agent's file
opened read-only. Both then say the same of the same rows: there is no second reader.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from statistics import median

from peewee import Case, DatabaseError, OperationalError, fn

from agent.errors import StoreError
from agent.status import (
    FACT_NUMBERS_ONLINE,
    FACT_UPLINK,
    AttemptRecord,
    CallRecord,
    LogEvent,
    MessageDetail,
    MessageSummary,
    ModemState,
    ModemStatus,
    NumbersOnline,
    NumberSource,
    OutboxStatus,
    PduRecord,
    ProbeRecord,
    SimRow,
    SimStayRecord,
    SlotActivity,
    TakeoffMark,
    UplinkStatus,
    from_json,
)
from agent.store import outbox as outbox_store
from agent.store.db import open_read_only
from agent.store.facts import read_fact
from agent.store.models import (
    DEAD,
    MODELS,
    PENDING,
    SENT,
    DeliveryAttempt,
    Event,
    IncomingCall,
    Message,
    Modem,
    NumberProbe,
    ReceivedPdu,
    Sim,
    SimBalance,
    SimDay,
    SimKeepalive,
    SimStay,
    to_utc,
)

HOURS = 24
# Binding the models is process-wide: one read-only reading at a time (the dashboard's
# worker threads may ask for a snapshot and a message list at once).
_READING = threading.Lock()


@contextmanager
def reading(path: str | Path) -> Iterator[None]:
    """Run the queries below on the agent's file at ``path``, opened read-only, from a
    process that has no store open (the dashboard while the agent is down). StoreError
    names the file when it cannot be read."""
    with _READING:
        database = open_read_only(path)
        try:
            with database.bind_ctx(MODELS):
                yield
        except DatabaseError as exc:
            raise StoreError(f"{path}: cannot read the agent's database: {exc}") from exc
        finally:
            database.close()


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def summary(message: Message, number: str | None = None) -> MessageSummary:
    # The SMSC's own zone, as the sender's network stated it.
    scts = message.scts.astimezone(timezone(timedelta(minutes=message.scts_offset_min)))
    return MessageSummary(
        id=message.id,
        sender=message.sender,
        text=message.text,
        state=message.state,
        received_at=message.received_at.timestamp(),
        slot=message.slot,
        iccid=message.sim.iccid,
        number=number,
        scts=scts.isoformat(),
        attempts=message.attempts,
        next_attempt_at=_epoch(message.next_attempt_at),
        sent_at=_epoch(message.sent_at),
        complete=message.complete,
        missing_parts=message.missing_parts,
        blocked_rule=message.blocked_rule,
        last_error=message.last_error,
        problems=message.problems,
    )


def messages(
    limit: int = 100, query: str | None = None, before: int | None = None
) -> list[MessageSummary]:
    """Newest first; ``query`` matches the sender or the SIM's number; ``before`` pages."""
    select = (
        Message.select(Message, Sim.iccid, Sim.number)
        .join(Sim)
        .order_by(Message.id.desc())
        .limit(max(1, min(limit, 1000)))
    )
    if before is not None:
        select = select.where(Message.id < before)
    if query:
        pattern = f"%{query}%"
        select = select.where(Message.sender.contains(query) | Sim.number**pattern)
    return [summary(m, m.sim.number) for m in select]


def known_modems() -> list[ModemStatus]:
    """Every modem the store has seen, by slot, with the SIM last seen in its slot: what
    was there, not what is (state GONE, ``updated_at`` when it was last seen)."""
    sims: dict[str, Sim] = {}
    for sim in Sim.select().where(Sim.last_slot.is_null(False)).order_by(Sim.last_seen):
        sims[sim.last_slot] = sim  # the latest seen wins
    modems = []
    for modem in Modem.select().order_by(Modem.slot):
        sim = sims.get(modem.slot)
        modems.append(
            ModemStatus(
                slot=modem.slot,
                at_port=modem.port,
                state=ModemState.GONE,
                manufacturer=modem.manufacturer,
                model=modem.model,
                imei=modem.imei,
                iccid=sim.iccid if sim else None,
                imsi=sim.imsi if sim else None,
                number=sim.number if sim else None,
                number_source=_number_source(sim.number_source if sim else None),
                operator=sim.operator if sim else None,
                updated_at=modem.last_seen.timestamp(),
            )
        )
    return modems


def _number_source(value: str | None) -> NumberSource:
    try:
        return NumberSource(value)
    except ValueError:  # none yet, or a source this version does not know
        return NumberSource.UNKNOWN


def outbox_status(now: float) -> OutboxStatus:
    """Pending (due now), backing off, dead, blocked, assembling; the last success and
    the last failed attempt (the uplink's own last error is added by the caller, see
    :meth:`OutboxStatus.with_uplink_error`)."""
    return outbox_store.counts(to_utc(now))


def recorded_uplink() -> UplinkStatus | None:
    """The uplink as the agent last recorded it (None: never, or unreadable)."""
    value = _fact(FACT_UPLINK)
    try:
        return None if value is None else from_json(UplinkStatus, value, where=FACT_UPLINK)
    except ValueError:
        return None


def numbers_online() -> NumbersOnline | None:
    """The last numbers list OnlineSim accepted (None: none yet)."""
    value = _fact(FACT_NUMBERS_ONLINE)
    try:
        return None if value is None else from_json(NumbersOnline, value, where="numbers")
    except ValueError:
        return None


def _fact(name: str) -> dict[str, object] | None:
    try:
        return read_fact(name)
    except OperationalError:  # a database older than the site_fact table
        return None


def outbox(state: str | None = None, limit: int = 500) -> list[MessageSummary]:
    """Messages not yet accepted: pending (due or backing off) and dead letters."""
    states = [state] if state else [PENDING, DEAD]
    select = (
        Message.select(Message, Sim.iccid, Sim.number)
        .join(Sim)
        .where(Message.state.in_(states))
        .order_by(Message.seq)
        .limit(limit)
    )
    return [summary(m, m.sim.number) for m in select]


def message_detail(message_id: int) -> MessageDetail | None:
    message = (
        Message.select(Message, Sim.iccid, Sim.number)
        .join(Sim)
        .where(Message.id == message_id)
        .first()
    )
    if message is None:
        return None
    pdus = tuple(
        PduRecord(
            pdu_hex=p.pdu_hex,
            read_at=p.read_at.timestamp(),
            storage=p.storage,
            index=p.storage_index,
            status=p.status,
            error=p.error,
        )
        for p in ReceivedPdu.select()
        .where(ReceivedPdu.message == message_id)
        .order_by(ReceivedPdu.id)
    )
    attempts = tuple(
        AttemptRecord(
            at=a.at.timestamp(), outcome=a.outcome, http_status=a.http_status, body=a.body
        )
        for a in DeliveryAttempt.select()
        .where(DeliveryAttempt.message == message_id)
        .order_by(DeliveryAttempt.id)
    )
    return MessageDetail(message=summary(message, message.sim.number), pdus=pdus, attempts=attempts)


def events(limit: int = 200) -> list[LogEvent]:
    """The site's log, newest last."""
    rows = Event.select().order_by(Event.id.desc()).limit(limit)
    return [_log_event(e) for e in reversed(list(rows))]


def last_event(kind: str) -> LogEvent | None:
    """The newest line of the log of this kind (None: none)."""
    row = Event.select().where(Event.kind == kind).order_by(Event.id.desc()).first()
    return None if row is None else _log_event(row)


def _log_event(e: Event) -> LogEvent:
    return LogEvent(
        at=e.at.timestamp(), level=e.level, kind=e.kind, text=e.text, slot=e.slot, iccid=e.iccid
    )


def open_takeoff_marks() -> list[TakeoffMark]:
    """Take-off marks not yet done, of the SIM each slot holds now (the one seen there
    last: a mark of a SIM already swapped out is history), by slot."""
    newer = Sim.alias()
    swapped_out = newer.select().where(
        (newer.last_slot == Sim.last_slot) & (newer.last_seen > Sim.last_seen)
    )
    rows = (
        Sim.select()
        .where(
            Sim.takeoff_at.is_null(False) & Sim.takeoff_done_at.is_null() & ~fn.EXISTS(swapped_out)
        )
        .order_by(Sim.last_slot)
    )
    return [
        TakeoffMark(
            iccid=sim.iccid,
            slot=sim.last_slot,
            number=sim.number,
            sum_rub=sim.takeoff_sum or 0.0,
            marked_at=sim.takeoff_at.timestamp(),
        )
        for sim in rows
    ]


def activity(
    now: float,
) -> tuple[dict[str, SlotActivity], tuple[int, ...], tuple[float | None, ...]]:
    """Per slot: SMS today, last SMS, SMS per hour (24 h) of the SIM in the slot now; for
    the site: forwarded per hour and the median delivery latency per hour. ``now`` is epoch
    seconds. A swapped-out SIM's SMS stay with that SIM (``sims``), never with the slot's
    next card (issue 17: history per SIM, not per slot)."""
    end = to_utc(now)
    start = end - timedelta(hours=HOURS)
    midnight = (
        datetime.fromtimestamp(now)
        .astimezone()
        .replace(hour=0, minute=0, second=0, microsecond=0)
        .astimezone(UTC)
    )

    def bucket(at: datetime) -> int:
        return min(HOURS - 1, max(0, int((at - start).total_seconds() // 3600)))

    per_slot: dict[str, list[int]] = defaultdict(lambda: [0] * HOURS)
    today: dict[str, int] = defaultdict(int)
    last: dict[str, datetime] = {}
    forwarded = [0] * HOURS
    latencies: list[list[float]] = [[] for _ in range(HOURS)]
    rows = (
        Message.select(
            Message.slot, Message.sim_id, Message.received_at, Message.sent_at, Message.state
        )
        .where(Message.received_at >= min(start, midnight))
        .tuples()
    )
    # The card in each slot is the one seen there last; SIMs ever seen are few (one row each).
    slot_of: dict[str, str | None] = {}
    card_in: dict[str, tuple[datetime, str]] = {}
    for iccid, last_slot, last_seen in Sim.select(Sim.iccid, Sim.last_slot, Sim.last_seen).tuples():
        slot_of[iccid] = last_slot
        if last_slot and (last_slot not in card_in or last_seen > card_in[last_slot][0]):
            card_in[last_slot] = (last_seen, iccid)

    def still_there(slot: str | None, iccid: str) -> bool:
        """The SMS's card is still the slot's: not moved elsewhere, not replaced."""
        moved = slot_of.get(iccid) not in (None, slot)
        replaced = slot in card_in and card_in[slot][1] != iccid
        return not (moved or replaced)

    for slot, iccid, received_at, sent_at, state in rows:
        if state == SENT and sent_at is not None and sent_at >= start:
            forwarded[bucket(sent_at)] += 1
            latencies[bucket(sent_at)].append((sent_at - received_at).total_seconds())
        if not still_there(slot, iccid):
            continue
        slot = slot or "?"
        if received_at >= start:
            per_slot[slot][bucket(received_at)] += 1
        if received_at >= midnight:
            today[slot] += 1
        if slot not in last or received_at > last[slot]:
            last[slot] = received_at
    # A slot quiet for a day still shows when its last SMS came.
    for slot, iccid, received_at in (
        Message.select(Message.slot, Message.sim_id, fn.MAX(Message.received_at))
        .group_by(Message.slot, Message.sim_id)
        .tuples()
    ):
        if slot and slot not in last and received_at is not None and still_there(slot, iccid):
            last[slot] = to_utc(datetime.fromisoformat(str(received_at)).replace(tzinfo=UTC))
    slots = set(per_slot) | set(today) | set(last)
    result = {
        slot: SlotActivity(
            sms_today=today.get(slot, 0),
            last_sms_at=_epoch(last.get(slot)),
            sms_per_hour=tuple(per_slot[slot]) if slot in per_slot else (0,) * HOURS,
        )
        for slot in slots
    }
    latency = tuple(median(values) if values else None for values in latencies)
    return result, tuple(forwarded), latency


def _probe_record(row: NumberProbe) -> ProbeRecord:
    return ProbeRecord(
        id=row.id,
        iccid=row.iccid,
        slot=row.slot,
        target_iccid=row.target_iccid,
        target_number=row.target_number,
        state=row.state,
        started_at=row.started_at.timestamp(),
        sent_at=_epoch(row.sent_at),
        finished_at=_epoch(row.finished_at),
        reason=row.reason,
        found_number=row.found_number,
    )


def number_probes(iccid: str | None = None, limit: int = 100) -> list[ProbeRecord]:
    """Number probes, newest first; of one SIM when ``iccid`` is given."""
    query = NumberProbe.select()
    if iccid is not None:
        query = query.where(NumberProbe.iccid == iccid)
    return [_probe_record(row) for row in query.order_by(NumberProbe.id.desc()).limit(limit)]


def last_probes() -> dict[str, ProbeRecord]:
    """The newest number probe of each SIM that ever probed, by ICCID (the SIMs screen:
    why a number is still unknown, or that it came by SMS)."""
    return {row.iccid: _probe_record(row) for row in _newest_of_each_sim(NumberProbe)}


def incoming_calls(iccid: str | None = None, limit: int = 100) -> list[CallRecord]:
    """Calls that rang and were rejected, newest first; of one SIM when ``iccid`` is given."""
    query = IncomingCall.select()
    if iccid is not None:
        query = query.where(IncomingCall.iccid == iccid)
    return [_call_record(row) for row in query.order_by(IncomingCall.id.desc()).limit(limit)]


def _call_record(row: IncomingCall) -> CallRecord:
    return CallRecord(
        id=row.id,
        iccid=row.iccid,
        slot=row.slot,
        caller=row.caller,
        at=row.at.timestamp(),
        rejected_with=row.rejected_with,
        message_id=row.message_id,
    )


def calls_per_sim(since: datetime | float | None = None) -> dict[str, int]:
    """How many calls rang on each SIM (since ``since``, or ever), by ICCID."""
    query = IncomingCall.select(IncomingCall.iccid, fn.COUNT(IncomingCall.id).alias("calls"))
    if since is not None:
        query = query.where(IncomingCall.at >= to_utc(since))
    return {row.iccid: row.calls for row in query.group_by(IncomingCall.iccid)}


def last_calls() -> dict[str, CallRecord]:
    """The newest call of each SIM that ever rang, by ICCID."""
    return {row.iccid: _call_record(row) for row in _newest_of_each_sim(IncomingCall)}


def _newest_of_each_sim(model: type[NumberProbe] | type[IncomingCall]) -> Iterator:
    """The newest row (highest id) of each ICCID in ``model``'s table, in one query."""
    newest = model.select(fn.MAX(model.id)).group_by(model.iccid)
    return iter(model.select().where(model.id.in_(newest)))


def sims(
    now: float,
    *,
    in_slots: Mapping[str, str] | None = None,
    low_balance: float = 0.0,
    keepalive_days: Mapping[str, float] | None = None,
) -> list[SimRow]:
    """Every SIM ever seen, by ICCID, most recently seen first (``simedge sims``, the
    SIMs screen). ``in_slots`` (ICCID -> slot) are the SIMs the running agent sees now;
    ``keepalive_days`` (MCC+MNC -> days) the networks a keep-alive policy covers."""
    in_slots = in_slots or {}
    keepalive_days = keepalive_days or {}
    end = to_utc(now)
    midnight = (
        datetime.fromtimestamp(now)
        .astimezone()
        .replace(hour=0, minute=0, second=0, microsecond=0)
        .astimezone(UTC)
    )
    week = end - timedelta(days=7)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # today, 7 days, all
    # Counted by SQLite, one row per SIM: a site keeps a month of SMS (a few 100,000 rows).
    since_midnight = fn.SUM(Case(None, [(Message.received_at >= midnight, 1)], 0))
    since_week = fn.SUM(Case(None, [(Message.received_at >= week, 1)], 0))
    per_sim = Message.select(Message.sim, since_midnight, since_week, fn.COUNT(Message.id))
    for iccid, today, seven, total in per_sim.group_by(Message.sim).tuples():
        counts[iccid] = [int(today or 0), int(seven or 0), int(total)]
    # Pruned messages, by day (UTC): their days are past the retention, so "all" only.
    pruned = SimDay.select(SimDay.iccid, fn.SUM(SimDay.sms)).group_by(SimDay.iccid)
    for iccid, total in pruned.tuples():
        counts[iccid][2] += int(total or 0)
    amounts = _newest(
        SimBalance, SimBalance.amount.is_null(False), SimBalance.amount, SimBalance.currency
    )
    asked = _newest(SimBalance, None, SimBalance.error)
    kept = _newest(SimKeepalive, SimKeepalive.error.is_null())
    tried = _newest(SimKeepalive, None, SimKeepalive.error)
    calls = calls_per_sim()
    last_call = last_calls()
    probes = last_probes()
    stays: dict[str, list[SimStayRecord]] = defaultdict(list)
    for stay in SimStay.select().order_by(SimStay.since):
        stays[stay.iccid].append(
            SimStayRecord(stay.slot, stay.since.timestamp(), stay.until.timestamp())
        )
    rows = []
    for sim in Sim.select().order_by(Sim.last_seen.desc(), Sim.iccid):
        iccid = sim.iccid
        balance = amounts.get(iccid)  # (at, amount, currency)
        failure = _failed_since(asked.get(iccid), balance)  # the newest question's error
        keepalive = kept.get(iccid)  # (at,)
        keepalive_failure = _failed_since(tried.get(iccid), keepalive)
        days = keepalive_days.get(sim.operator or "")
        active_until = None
        if days is not None:
            start = keepalive[0] if keepalive is not None else sim.first_seen.timestamp()
            active_until = start + days * 86400
        today, seven, total = counts.get(iccid, (0, 0, 0))
        call = last_call.get(iccid)
        probe = probes.get(iccid)
        rows.append(
            SimRow(
                iccid=iccid,
                slot=in_slots.get(iccid) or sim.last_slot,
                in_slot=iccid in in_slots,
                number=sim.number,
                number_source=sim.number_source,
                operator=sim.operator,
                first_seen=sim.first_seen.timestamp(),
                last_seen=sim.last_seen.timestamp(),
                balance=balance[1] if balance else None,
                balance_currency=balance[2] if balance else None,
                balance_at=balance[0] if balance else None,
                balance_low=balance is not None and balance[1] < low_balance,
                balance_error=failure,
                active_until=active_until,
                keepalive_at=keepalive[0] if keepalive else None,
                keepalive_error=keepalive_failure,
                sms_today=today,
                sms_7d=seven,
                sms_all=total,
                earned=sim.takeoff_sum,
                calls=calls.get(iccid, 0),
                last_caller=call.caller if call else None,
                last_call_at=call.at if call else None,
                probe_state=probe.state if probe else None,
                probe_error=probe.reason if probe else None,
                stays=tuple(stays.get(iccid, ())),
            )
        )
    return rows


def _newest(model: type, where: object | None, *columns: object) -> dict[str, tuple]:
    """ICCID -> (unix time, *columns) of each SIM's newest row matching ``where``: one row
    per SIM, chosen by SQLite (a bare column beside MAX() comes from the row with the
    maximum), not a year of answers read into Python."""
    select = model.select(model.iccid, fn.MAX(model.at), *columns)
    if where is not None:
        select = select.where(where)
    return {
        iccid: (_stored_time(at), *rest)
        for iccid, at, *rest in select.group_by(model.iccid).tuples()
    }


def _failed_since(newest: tuple | None, success: tuple | None) -> str | None:
    """The error of the newest attempt (at, error) when it came after the last success."""
    if newest is None or newest[1] is None:
        return None
    return newest[1] if success is None or newest[0] > success[0] else None


def _stored_time(value: object) -> float:
    """A time as an aggregate returns it (the stored naive-UTC text), as unix seconds."""
    return to_utc(datetime.fromisoformat(str(value)).replace(tzinfo=UTC)).timestamp()
