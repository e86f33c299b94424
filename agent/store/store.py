"""The store as the rest of the agent sees it: one object, every write awaited until durable.

Writes go to the single writer (:mod:`agent.store.db`) and return once committed with
``synchronous=FULL``: a modem session deletes an SMS from the SIM only after
:meth:`Store.ingest_pdu` returned. Reads are small indexed queries run on the event loop's
own connection (WAL readers never wait for the writer); :meth:`Store.read` runs a heavier
one in a worker thread.

One store is open per process at a time: the models are bound to its database at open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from peewee import SqliteDatabase

from agent.errors import BlockRuleError, PduError, StoreError, StoreNotWritable
from agent.logs import get_logger
from agent.protocol import pdu
from agent.status import BalanceAnswer, KeepaliveAction, OutboxStatus
from agent.store import calls, datadir, facts, ingest, integrity, outbox, probes, simhistory
from agent.store.blocking import (
    ADDED,
    CONFIGURED,
    MAX_RULES,
    PREVIEW_MESSAGES,
    RULE_TIMEOUT,
    BlockRule,
    BlockRules,
    Preview,
    preview,
)
from agent.store.db import DEFAULT_MAX_BATCH, Writer, open_database, prepare_file
from agent.store.migrations import upgrade
from agent.store.models import (
    ASSEMBLING,
    BLOCKED,
    MODELS,
    PENDING,
    SENT,
    BlockRuleRow,
    Event,
    Message,
    Modem,
    ReceivedPdu,
    Sim,
    literal,
    to_utc,
)

T = TypeVar("T")
log = get_logger("store")

MANUAL = "manual"
DEFAULT_EVENT_CAP = 20_000
_PRUNE_CHUNK = 2_000  # rows per prune transaction: ingests never wait long behind a prune
_VACUUM_CHUNK = 2_048  # pages (8 MB) per incremental_vacuum step, for the same reason
#: Seconds a "sent" mark waits at most for another commit to ride with (mark_sent_soon).
#: At 20 SMS/s the next SMS's commit comes within 50 ms; a crash in this window sends the
#: messages accepted in it again after the restart (docs/uplink.md, "Sent twice").
MARK_SENT_WITHIN = 0.1


@dataclass(frozen=True)
class PruneResult:
    messages: int
    pdus: int
    events: int
    pages_freed: int


def _now() -> datetime:
    return datetime.now(UTC)


class Store:
    """The durable store. Build it with ``await Store.open(path, ...)``."""

    _open_path: ClassVar[Path | None] = None

    def __init__(
        self,
        database: SqliteDatabase,
        writer: Writer,
        *,
        multipart_timeout: float,
        block_rules: Sequence[BlockRule],
        retention_days: float,
        event_cap: int,
    ) -> None:
        self._database = database
        self._writer = writer
        self._multipart_timeout = multipart_timeout
        self._block_rules = BlockRules(block_rules)
        # One rule added at a time: each add checks the name and MAX_RULES, then awaits
        # its trial and its write; adds that overlapped would all pass the checks.
        self._adding_rule = asyncio.Lock()
        self._retention = timedelta(days=retention_days)
        self._event_cap = event_cap
        self._ready_callbacks: list[Callable[[], None]] = []
        self._stored_callbacks: list[Callable[[bool], None]] = []
        self._number_callbacks: list[Callable[[str], None]] = []
        self._closed = False

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        multipart_timeout: float = 600,
        block_rules: Sequence[BlockRule] = (),
        retention_days: float = 30,
        event_cap: int = DEFAULT_EVENT_CAP,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> Store:
        """Open (or create) the database, migrate it to the newest schema, and deliver the
        multipart messages whose timeout passed while the agent was down."""
        path = Path(path)
        if cls._open_path is not None:
            raise StoreError(f"{path}: a store ({cls._open_path}) is already open in this process")
        datadir.make(path.parent)
        await asyncio.to_thread(_check_or_create, path)
        database = open_database(path)
        database.bind(MODELS)
        writer = Writer(database, max_batch=max_batch)
        store = cls(
            database,
            writer,
            multipart_timeout=multipart_timeout,
            block_rules=block_rules,
            retention_days=retention_days,
            event_cap=event_cap,
        )
        cls._open_path = path
        try:
            await writer.submit(partial(prepare_file, database), f"open {path}", bare=True)
            await writer.submit(partial(upgrade, database), f"migrate {path}", bare=True)
            await store._load_added_block_rules()
            await store.expire_partials(_now())
        except BaseException:
            await store.close()
            raise
        return store

    @property
    def block_rules(self) -> tuple[BlockRule, ...]:
        """The rules in force: the configured ones first, then those added at run time."""
        return self._block_rules.rules

    def block_rule_timing_out(self, rule: BlockRule) -> bool:
        """Whether ``rule`` ran out of time on an SMS since the store was opened."""
        return self._block_rules.timing_out(rule)

    async def _load_added_block_rules(self) -> None:
        def rows() -> list[BlockRuleRow]:
            return list(BlockRuleRow.select().order_by(BlockRuleRow.id))

        for row in await self.read(rows):
            if self._block_rules.get(row.name) is not None:
                continue  # the configuration's rule of that name wins
            try:
                rule = BlockRule(row.name, row.sender, row.text, source=ADDED)
            except BlockRuleError as exc:
                # Stored by an older version that checked less: skipped, and said, so the
                # agent still starts and a person can remove it.
                await self._warn(
                    "block_rule",
                    f"{exc}; not applied (remove it: simedge block remove {row.name!r})",
                )
                continue
            self._block_rules.add(rule)

    async def add_block_rule(self, rule: BlockRule, *, force: bool = False) -> Preview:
        """Keep SMS matching ``rule`` from now on (and after restarts); never uploaded.

        The rule is first tried on the last stored SMS; when it would have withheld most
        of them it is refused (a StoreError saying how many) unless ``force``: a rule such
        as text ``.`` would otherwise silence the site."""
        async with self._adding_rule:
            return await self._add_block_rule(rule, force=force)

    async def _add_block_rule(self, rule: BlockRule, *, force: bool) -> Preview:
        if self._block_rules.get(rule.name) is not None:
            raise StoreError(f"a block rule named {rule.name!r} exists already")
        if self._block_rules.count(ADDED) >= MAX_RULES:
            raise StoreError(
                f"block rule {rule.name!r}: {MAX_RULES} rules were added already (the most);"
                " remove one first"
            )
        trial = await self.preview_block_rule(rule)
        if trial.withholds_most and not force:
            raise StoreError(
                f"block rule {rule.name!r} {trial.describe()}: a person must confirm it"
                " (add it with force)"
            )

        def job() -> None:
            BlockRuleRow.create(name=rule.name, sender=rule.sender, text=rule.text, added_at=_now())

        await self._write(job, f"add block rule {rule.name}")
        self._block_rules.add(rule)
        await self.log_event(
            "block_rule",
            f"block rule {rule.name} added (sender {rule.sender or 'any'},"
            f" text {rule.text or 'any'}); it {trial.describe()}",
        )
        return trial

    async def remove_block_rule(self, name: str) -> None:
        """Stop applying a rule added at run time and forget it. A configured rule is
        refused: it lives in the configuration file and comes back at every start."""
        rule = self._block_rules.get(name)
        if rule is not None and rule.source == CONFIGURED:
            raise StoreError(
                f"block rule {name!r} comes from the configuration file: remove it from"
                " [[store.block]] there and restart the agent"
            )

        def job() -> int:
            return BlockRuleRow.delete().where(BlockRuleRow.name == name).execute()

        deleted = await self._write(job, f"remove block rule {name}")
        if rule is None and not deleted:
            known = ", ".join(repr(rule.name) for rule in self._block_rules.rules) or "none"
            raise StoreError(f"no block rule named {name!r} (rules: {known})")
        self._block_rules.remove(name)
        await self.log_event("block_rule", f"block rule {name} removed")

    async def preview_block_rule(self, rule: BlockRule) -> Preview:
        """What ``rule`` would have done to the last ``PREVIEW_MESSAGES`` stored SMS, tried
        in a worker thread within ``PREVIEW_BUDGET`` seconds."""

        def trial() -> Preview:
            recent = (
                Message.select(Message.sender, Message.text)
                .where(Message.state != literal(ASSEMBLING))
                .order_by(Message.id.desc())
                .limit(PREVIEW_MESSAGES)
                .tuples()
            )
            return preview(rule, ((sender, text or "") for sender, text in recent))

        return await self.read(trial)

    async def _report_rule_timeouts(self) -> None:
        texts = [
            f"block rule {rule.name!r} took longer than {RULE_TIMEOUT * 1000:.0f} ms on an SMS"
            " and was skipped (the SMS is forwarded); simplify or remove it. Said once per rule."
            for rule in self._block_rules.take_timeouts()
        ]
        if not texts:
            return
        for text in texts:
            log.warning(text)
        at = _now()

        def job() -> None:  # one transaction for all: the SMS that found them waits on it
            for text in texts:
                ingest.log_event("block_rule", text, at=at, level="warning")

        await self._write(job, "report block rules that ran out of time")

    async def _warn(self, kind: str, text: str) -> None:
        """A problem for the agent's log and the dashboard's event log alike."""
        log.warning(text)
        await self.log_event(kind, text, level="warning")

    async def close(self) -> None:
        """Commit what is queued, stop the writer, close this thread's connection."""
        if self._closed:
            return
        self._closed = True
        await self._writer.close()
        self._database.close()
        type(self)._open_path = None

    @property
    def writer(self) -> Writer:
        """The single writer (its counters: ``jobs_done``, ``transactions``)."""
        return self._writer

    @property
    def path(self) -> str:
        return str(self._database.database)

    # --- can it write? --------------------------------------------------------------------

    @property
    def writable(self) -> bool:
        """False while writes fail with StoreNotWritable (full, read-only, I/O error),
        whoever's write it was; True again after a write commits (Writer.writable)."""
        return self._writer.writable

    def on_writable_change(
        self, listener: Callable[[StoreNotWritable | None], None]
    ) -> Callable[[], None]:
        """``listener(error)`` when writes start failing, ``listener(None)`` when they work
        again; returns a function that removes it."""
        return self._writer.on_writable_change(listener)

    async def probe_write(self) -> None:
        """One small real write (a row added and removed in one committed transaction):
        raises StoreNotWritable while the store cannot write, and, when it succeeds, makes
        the store writable again for everyone that waits on it."""

        def job() -> None:
            probe = Event.create(at=_now(), kind="store_probe", level="info", text="probe")
            Event.delete().where(Event.id == probe.id).execute()

        await self._write(job, "probe the store with a write")

    # --- waking the outbox ----------------------------------------------------------------

    def on_message_ready(self, callback: Callable[[str | None], None]) -> Callable[[], None]:
        """Call ``callback(iccid)`` (on the event loop, after the commit) whenever a message
        becomes due for upload; returns a function that removes it. ``iccid`` is the SIM
        whose messages changed when one SIM's did (an SMS stored, its number set), None
        when any SIM's may have (a retry by hand, a long SMS given up on, a message sent or
        dead-lettered). The drainer wakes on it, so the happy path needs no polling, and
        reads only that SIM's queue for a fresh SMS (issue 19)."""
        self._ready_callbacks.append(callback)
        return lambda: self._ready_callbacks.remove(callback)

    def on_message_stored(self, callback: Callable[[bool], None]) -> Callable[[], None]:
        """Call ``callback(blocked)`` (on the event loop, after the commit) once for every
        SMS made whole in the store: a single-part SMS, the last part of a long one, or a
        long one delivered incomplete at its timeout; ``blocked`` when a block rule kept
        it. Duplicates and parts still waiting are not messages yet. Returns a function
        that removes it. The agent counts simedge_sms_received/blocked here."""
        self._stored_callbacks.append(callback)
        return lambda: self._stored_callbacks.remove(callback)

    def on_number_found(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(iccid)`` when a number probe's SMS gave that SIM its number;
        returns a function that removes it."""
        self._number_callbacks.append(callback)
        return lambda: self._number_callbacks.remove(callback)

    def _notify_stored(self, blocked: bool) -> None:
        for callback in list(self._stored_callbacks):
            callback(blocked)

    def _notify_ready(self, iccid: str | None = None) -> None:
        for callback in list(self._ready_callbacks):
            callback(iccid)

    async def _write(self, function: Callable[[], T], what: str) -> T:
        return await self._writer.submit(function, what)

    async def read(self, function: Callable[[], T]) -> T:
        """Run a heavier read in a worker thread on a connection of its own."""

        def run() -> T:
            with self._database.connection_context():
                return function()

        return await asyncio.to_thread(run)

    # --- receiving ------------------------------------------------------------------------

    async def ingest_pdu(
        self,
        *,
        iccid: str,
        imei: str | None,
        slot: str,
        storage: str,
        index: int | None,
        pdu_hex: str,
        read_at: datetime | float,
    ) -> ingest.IngestResult:
        """Store one PDU read off a modem; durable when this returns, so the caller may then
        delete it from the modem. Undecodable PDUs are kept (with the decoder's error) and
        count as stored. Raises StoreError, or DiskFull when the data folder is full."""
        normalised = ingest.normalise_pdu_hex(pdu_hex)
        decoded: object
        try:
            decoded = pdu.decode(normalised, salvage=True)
        except PduError as exc:
            decoded = exc
        received = ingest.ReceivedSms(
            iccid=iccid,
            imei=imei,
            slot=slot,
            storage=storage,
            index=index,
            pdu_hex=normalised,
            read_at=to_utc(read_at),
        )
        result = await self._write(
            partial(ingest.ingest, received, decoded, self._block_rules, self._multipart_timeout),
            f"ingest PDU from SIM {iccid} ({storage} index {index})",
        )
        if result.number_found is not None:
            for number_found in list(self._number_callbacks):
                number_found(result.number_found)
        if result.message_id is not None:
            self._notify_stored(result.blocked)
            if not result.blocked:
                self._notify_ready(iccid)
        await self._report_rule_timeouts()
        return result

    async def expire_partials(self, now: datetime | float) -> list[int]:
        """Deliver, marked incomplete, the multipart messages that waited longer than the
        assembly timeout; return their ids. Run periodically, and at open."""
        delivered = await self._write(
            partial(ingest.expire, to_utc(now), self._multipart_timeout, self._block_rules),
            "expire partial multipart messages",
        )
        for _, state in delivered:
            self._notify_stored(state == BLOCKED)
        if any(state == PENDING for _, state in delivered):
            self._notify_ready()
        await self._report_rule_timeouts()
        return [message_id for message_id, _ in delivered]

    async def shift_partials(self, shift: float) -> int:
        """The wall clock jumped by ``shift`` seconds: move the receipt times of the long SMS
        waiting for parts with it, so their timeout still counts from their arrival."""
        return await self._write(
            partial(ingest.shift_assembling, shift), "move partial messages with the clock"
        )

    # --- modems, SIMs, events -------------------------------------------------------------

    async def upsert_modem(
        self,
        imei: str | None,
        slot: str,
        model: str | None,
        *,
        manufacturer: str | None = None,
        firmware: str | None = None,
        port: str | None = None,
        seen_at: datetime | float | None = None,
    ) -> None:
        """Record a modem in its slot (the stable USB path) with what it said about itself."""
        seen = to_utc(seen_at) if seen_at is not None else _now()
        fields = {
            Modem.imei: imei,
            Modem.model: model,
            Modem.manufacturer: manufacturer,
            Modem.firmware: firmware,
            Modem.port: port,
            Modem.last_seen: seen,
        }

        def job() -> None:
            Modem.insert({**fields, Modem.slot: slot, Modem.first_seen: seen}).on_conflict(
                conflict_target=[Modem.slot], update=fields
            ).execute()

        await self._write(job, f"record modem in slot {slot}")

    async def upsert_sim(
        self,
        iccid: str,
        *,
        imsi: str | None = None,
        number: str | None = None,
        number_source: str | None = None,
        operator: str | None = None,
        slot: str | None = None,
        imei: str | None = None,
        seen_at: datetime | float | None = None,
    ) -> None:
        """Record a SIM; fields given as None keep what is stored. A number set by hand is
        not replaced by one the agent discovered (a USSD answer may be wrong or stale)."""
        seen = to_utc(seen_at) if seen_at is not None else _now()

        def job() -> None:
            ingest.touch_sim(iccid, slot=slot, imei=imei, seen_at=seen)
            if slot is not None:
                simhistory.record_stay(iccid, slot, seen)
            sim = Sim.get_by_id(iccid)
            if imsi is not None:
                sim.imsi = imsi
            if operator is not None:
                sim.operator = operator
            manual_kept = sim.number_source == MANUAL and number_source != MANUAL
            if number is not None and not manual_kept and number != sim.number:
                sim.number = number
                sim.number_source = number_source
                sim.number_updated_at = seen
            sim.save()

        await self._write(job, f"record SIM {iccid}")

    async def set_sim_number(self, iccid: str, number: str, source: str = MANUAL) -> None:
        """Set a SIM's own number (by hand from the dashboard, or from a trusted lookup)."""
        at = _now()

        def job() -> None:
            ingest.touch_sim(iccid, slot=None, imei=None, seen_at=at)
            Sim.update(number=number, number_source=source, number_updated_at=at).where(
                Sim.iccid == iccid
            ).execute()

        await self._write(job, f"set the number of SIM {iccid}")
        self._notify_ready(iccid)  # messages waiting for a known number may go now

    async def record_balance(self, row: BalanceAnswer) -> None:
        """Keep one balance question's outcome: the amount, or the answer and what was
        wrong with it (nothing the operator said is lost)."""
        await self._write(
            partial(simhistory.record_balance, row), f"record the balance of SIM {row.iccid}"
        )

    async def record_keepalive(self, row: KeepaliveAction) -> None:
        """Keep one keep-alive action and its outcome."""
        await self._write(
            partial(simhistory.record_keepalive, row), f"record a keep-alive of SIM {row.iccid}"
        )

    async def log_event(
        self,
        kind: str,
        text: str,
        *,
        level: str = "info",
        slot: str | None = None,
        iccid: str | None = None,
        at: datetime | float | None = None,
    ) -> int:
        """Add a line to the site's log (what the dashboard shows); returns its id."""
        moment = to_utc(at) if at is not None else _now()
        return await self._write(
            partial(ingest.log_event, kind, text, at=moment, level=level, slot=slot, iccid=iccid),
            f"log event {kind}",
        )

    # --- number probes and calls (agent.modem.probe, agent.modem.calls) -------------------

    async def start_probe(
        self,
        *,
        iccid: str,
        slot: str | None,
        target_iccid: str,
        target_number: str,
        token: str,
        at: datetime | float,
    ) -> int:
        """Record a probe before its SMS is sent; its id."""
        return await self._write(
            partial(
                probes.start,
                iccid=iccid,
                slot=slot,
                target_iccid=target_iccid,
                target_number=target_number,
                token=token,
                at=to_utc(at),
            ),
            f"start a number probe from SIM {iccid}",
        )

    async def probe_sent(self, probe_id: int, reference: int, at: datetime | float) -> None:
        await self._write(
            partial(probes.sent, probe_id, reference, to_utc(at)), f"number probe #{probe_id} sent"
        )

    async def probe_failed(self, probe_id: int, reason: str, at: datetime | float) -> bool:
        return await self._write(
            partial(probes.failed, probe_id, reason, to_utc(at)), f"number probe #{probe_id} failed"
        )

    async def expire_probes(self, now: datetime | float, within: float) -> list[int]:
        """Fail the probes whose SMS did not arrive within ``within`` seconds."""
        return await self._write(
            partial(probes.expire, to_utc(now), within), "expire number probes"
        )

    async def probe_attempts_since(self, since: datetime | float) -> dict[str, int]:
        return await self.read(partial(probes.attempts_since, to_utc(since)))

    async def record_call(
        self,
        *,
        iccid: str,
        slot: str | None,
        caller: str | None,
        at: datetime | float,
        rejected_with: str | None,
        forward_template: str | None,
    ) -> tuple[int, int | None]:
        """Keep a call (and, with ``forward_template``, the message forwarding it)."""
        call_id, message_id = await self._write(
            partial(
                calls.record,
                iccid=iccid,
                slot=slot,
                caller=caller,
                at=to_utc(at),
                rejected_with=rejected_with,
                forward_template=forward_template,
                rules=self._block_rules,
            ),
            f"record a call on SIM {iccid}",
        )
        if message_id is not None:
            self._notify_stored(False)
            self._notify_ready(iccid)
        return call_id, message_id

    async def record_fact(self, name: str, value: dict[str, Any]) -> None:
        """Keep one fact for the readers that cannot ask the agent (see store.facts)."""
        await self._write(partial(facts.write_fact, name, value), f"record the {name} fact")

    async def recent_events(self, limit: int = 100) -> list[Event]:
        """The newest events, newest first."""
        return list(Event.select().order_by(Event.id.desc()).limit(limit))

    # --- the outbox -----------------------------------------------------------------------

    async def due_messages(self, now: datetime | float, limit: int) -> list[outbox.OutboxMessage]:
        """Messages to upload now, oldest first, at most the first pending one per SIM."""
        return outbox.due_messages(to_utc(now), limit)

    async def sim_queue(
        self, iccid: str, now: datetime | float, limit: int
    ) -> list[outbox.OutboxMessage]:
        """One SIM's next due messages, in order (the pump works through them in turn)."""
        return outbox.sim_queue(iccid, to_utc(now), limit)

    async def mark_sent(
        self, msg_id: int, at: datetime | float, status: int | None, body: str | None
    ) -> None:
        await self._write(
            partial(outbox.mark_sent, msg_id, to_utc(at), status, body),
            f"mark message #{msg_id} sent",
        )
        self._notify_ready()  # the SIM's next message is due now

    def mark_sent_soon(
        self, msg_id: int, at: datetime | float, status: int | None, body: str | None
    ) -> asyncio.Future[None]:
        """:meth:`mark_sent` riding with the next commit, within ``MARK_SENT_WITHIN``
        seconds at the latest (:meth:`Writer.submit_soon`); the future is done once it is
        committed. Nothing is notified: the caller knows the message is no longer due."""
        return self._writer.submit_soon(
            partial(outbox.mark_sent, msg_id, to_utc(at), status, body),
            f"mark message #{msg_id} sent",
            within=MARK_SENT_WITHIN,
        )

    async def schedule_retry(
        self,
        msg_id: int,
        attempt: int,
        next_at: datetime | float,
        error: str,
        *,
        status: int | None = None,
        body: str | None = None,
    ) -> None:
        """Record a failed attempt (number ``attempt``) and when to try again."""
        await self._write(
            partial(
                outbox.schedule_retry,
                msg_id,
                attempt,
                to_utc(next_at),
                error,
                at=_now(),
                status=status,
                body=body,
            ),
            f"schedule retry of message #{msg_id}",
        )

    async def record_link_failure(
        self, msg_id: int, error: str, *, status: int | None = None, body: str | None = None
    ) -> None:
        """Record an attempt the link failed (network, timeout, 5xx, 429) in the message's
        history without touching its own schedule: the link backs off, not the message."""
        await self._write(
            partial(outbox.record_link_failure, msg_id, error, at=_now(), status=status, body=body),
            f"record a failed attempt of message #{msg_id}",
        )

    async def clamp_retry_times(self, now: datetime | float, shift: float, cap: float) -> int:
        """Shift persisted retry times by a wall-clock jump and cap them at ``now + cap``
        (see outbox.clamped_retry_times); returns how many moved. Writes only when one
        moves."""
        moves = outbox.clamped_retry_times(to_utc(now), shift, cap)
        if moves:
            await self._write(partial(outbox.set_retry_times, moves), "clamp retry times")
        return len(moves)

    async def dead_letter(
        self, msg_id: int, reason: str, status: int | None, body: str | None
    ) -> None:
        """Give up on a message, keeping the reason and the answer that killed it."""
        await self._write(
            partial(outbox.dead_letter, msg_id, reason, status, body, at=_now()),
            f"dead-letter message #{msg_id}",
        )
        self._notify_ready()  # it no longer holds back the SIM's later messages

    async def retry(self, msg_id: int) -> None:
        """Put one dead (or backing-off) message back in line, due now."""
        await self._write(partial(outbox.retry, msg_id, at=_now()), f"retry message #{msg_id}")
        self._notify_ready()

    async def retry_all_dead(self) -> int:
        """Put every dead message back in line; returns how many."""
        count = await self._write(partial(outbox.retry_all_dead, at=_now()), "retry dead messages")
        if count:
            self._notify_ready()
        return count

    async def outbox_depth(self) -> int:
        """Pending messages, due now or backing off (one indexed count)."""
        return outbox.pending_count()

    async def outbox_counts(self, now: datetime | float | None = None) -> OutboxStatus:
        """Pending, backing off, dead, blocked, last success and last error."""
        return outbox.counts(to_utc(now) if now is not None else _now())

    # --- retention ------------------------------------------------------------------------

    async def prune(self, now: datetime | float) -> PruneResult:
        """Delete sent and blocked messages (with their parts, PDUs and attempts) and
        undecodable PDUs older than the retention, events beyond the cap; then give the
        free pages back to the file system so the file shrinks on the SD card.

        Work is split into small transactions so ingests never wait long behind it."""
        cutoff = to_utc(now) - self._retention
        messages = pdus = 0
        while removed := await self._write(
            partial(_prune_messages, cutoff, _PRUNE_CHUNK), "prune messages"
        ):
            messages += removed
        while removed := await self._write(
            partial(_prune_orphan_pdus, cutoff, _PRUNE_CHUNK), "prune PDUs"
        ):
            pdus += removed
        events = await self._write(partial(_prune_events, self._event_cap), "prune events")
        pages = 0
        while freed := await self._writer.submit(
            partial(_vacuum_step, self._database, _VACUUM_CHUNK), "incremental vacuum", bare=True
        ):
            pages += freed
        await self.checkpoint()
        return PruneResult(messages=messages, pdus=pdus, events=events, pages_freed=pages)

    async def checkpoint(self) -> None:
        """Copy the WAL into the database file and cut the WAL to zero bytes: after a prune
        this is what actually shrinks the file (SQLite truncates it at checkpoint)."""

        def job() -> None:
            # Fetch the result row: a cursor left open would keep its statement active and
            # stop the next transaction's SAVEPOINT.
            self._database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

        await self._writer.submit(job, "checkpoint", bare=True)

    async def table_counts(self) -> dict[str, int]:
        """Rows per table (for `simedge status` and tests)."""
        return {model._meta.table_name: model.select().count() for model in MODELS}


def _check_or_create(path: Path) -> None:
    """Refuse a damaged file (StoreDamaged); create a missing one whole (see integrity)."""
    checked = integrity.check_before_open(path)
    if checked is None:
        integrity.create_atomically(path)
    elif not checked.finished:
        log.warning(
            "%s: the quick check at open did not finish in %.0f s; the agent starts "
            "unchecked (run `simedge db check` when it can stop)",
            path,
            checked.seconds,
        )


def _prune_messages(cutoff: datetime, chunk: int) -> int:
    # Two queries, each on its partial index: an OR of the two would scan the table.
    old_sent = (
        Message.select(Message.id)
        .where((Message.state == literal(SENT)) & (Message.sent_at < cutoff))
        .limit(chunk)
    )
    ids = [row.id for row in old_sent]
    if len(ids) < chunk:
        old_blocked = (
            Message.select(Message.id)
            .where((Message.state == literal(BLOCKED)) & (Message.ready_at < cutoff))
            .limit(chunk - len(ids))
        )
        ids.extend(row.id for row in old_blocked)
    if ids:
        simhistory.fold_into_days(ids)  # a SIM's SMS totals outlive its messages
        Message.delete().where(Message.id.in_(ids)).execute()  # parts, PDUs, attempts cascade
    return len(ids)


def _prune_orphan_pdus(cutoff: datetime, chunk: int) -> int:
    old = (
        ReceivedPdu.select(ReceivedPdu.id)
        .where(ReceivedPdu.message.is_null() & (ReceivedPdu.read_at < cutoff))
        .limit(chunk)
    )
    ids = [row.id for row in old]
    if ids:
        ReceivedPdu.delete().where(ReceivedPdu.id.in_(ids)).execute()
    return len(ids)


def _prune_events(cap: int) -> int:
    boundary = Event.select(Event.id).order_by(Event.id.desc()).offset(cap).limit(1).scalar()
    if boundary is None:
        return 0
    return Event.delete().where(Event.id <= boundary).execute()


def _vacuum_step(database: SqliteDatabase, pages: int) -> int:
    before = database.execute_sql("PRAGMA freelist_count").fetchone()[0]
    if not before:
        return 0
    # executescript steps the pragma to completion; a plain execute frees a single page.
    database.connection().executescript(f"PRAGMA incremental_vacuum({int(pages)})")
    return before - database.execute_sql("PRAGMA freelist_count").fetchone()[0]
