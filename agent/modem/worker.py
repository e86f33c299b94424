"""The one owner task of one modem: set it up, take its SMS, keep its health, recover it.

:class:`ModemWorker` is the only code that talks to its port. Everything it reacts to
arrives in one inbox and is handled in order:

- URCs, moved from the session's queue as they come, while the inbox has room for them
  (a ``+CUSD`` answer goes to the USSD question waiting for it instead);
- while a USSD question waits for its answer (seconds; 20 s when the network never
  answers), the worker reads the SMS the modem announces meanwhile, in the same task, and
  holds every other item, in order, for after the answer (:meth:`ModemWorker._answer`);
- the health tick, a timer re-armed after each check (``health_interval``), never a
  busy loop: ``+CSQ``, ``+CREG?``, ``+CPIN?``, ``+CNMI?`` (still set?) and storage (a sweep
  when anything is stored that was not taken: a notice lost in noise or a hang);
- commands from outside (:meth:`ModemWorker.send`): reset, trace on/off, refresh number,
  ask the balance now;
- the upkeep tick: the SIM's balance and keep-alive when due (:mod:`agent.modem.upkeep`);
- the port going away, which ends the worker with state GONE (discovery decides whether a
  new worker starts when the device comes back).

Receiving keeps the rule every SMS daemon worth its name keeps: read, hand the PDU to the
store, and delete it from the modem only after the store said it is durable. On start and
after every reset the storage is swept (``AT+CMGL=4``); ``+CMTI`` reads one index;
``+CMT`` (direct delivery, where a modem insists) is acknowledged with ``+CNMA`` after
the store has it. A sweep reads every storage the modem may receive into (SIM, its own
memory "ME", status reports: :func:`agent.modem.startup.storages_to_read`), switching
``mem1`` for the length of the sweep and back to SIM storage after it, with the port held
throughout. When the disk is full nothing more is read off the modems: the SMS stay
on the SIM, and a sweep is tried again later.

Recovery ladder, each step logged with its reason: a command timeout re-syncs the port
and sets the modem up again; ``timeouts_before_reset`` timeouts in a row climb on to
``AT+CFUN=1,1``, then reopening the port, then the configured power-cycle command; when
all fail the modem is FAILED with the reason and the ladder is tried again on a back-off.
Boot URCs in the middle of a session (the modem reset itself) set it up again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import re
import shlex
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol, TypeVar, cast

from agent.clock import on_the_beat
from agent.config import ModemsConfig
from agent.errors import (
    AtParseError,
    CommandFailed,
    CommandTimeout,
    PortBusy,
    PortGone,
    StoreError,
    StoreNotWritable,
)
from agent.logs import LogLimiter, get_logger
from agent.modem import calls, own_number, startup, ussd, vendors
from agent.modem.own_number import MemoryNumberBook, NumberBook, UssdRecipe
from agent.modem.session import AtSession
from agent.modem.startup import ModemSetup, SimIdentity
from agent.modem.upkeep import SimUpkeep
from agent.protocol import commands
from agent.protocol.urc import (
    CallEnded,
    CallerId,
    RegistrationChanged,
    Ring,
    SignalChanged,
    SimStatusChanged,
    SmsReceived,
    SmsStored,
    StorageFull,
    Urc,
    UssdReceived,
)
from agent.status import ModemState, ModemStatus, NumberSource, SimState

log = get_logger("modem.worker")

T = TypeVar("T")

URCS_IN_INBOX = 64
"""URCs the inbox holds at most; past it they wait in the session, so a port that floods URCs
while the worker is busy fills the session's bounded queue (URC_QUEUE_LIMIT, the excess
dropped and counted) instead of this one. USSD answers nobody asked for: USSD_ANSWERS_HELD."""
USSD_ANSWERS_HELD = 8

_STORAGE_NAME = re.compile(r"[A-Z_]{1,8}")  # "SM", "ME", "MT", "SR", "SM_P", ...


class PduSink(Protocol):
    """Where PDUs go; durable when ``ingest_pdu`` returns (agent.store.Store is one).
    Raises agent.errors.StoreNotWritable (DiskFull, ...) when it cannot store anything now."""

    async def ingest_pdu(
        self,
        *,
        iccid: str,
        imei: str | None,
        slot: str,
        storage: str,
        index: int | None,
        pdu_hex: str,
        read_at: float,
    ) -> object: ...


class WorkerCommand(StrEnum):
    """What the agent (control socket, dashboard) may ask of a running worker."""

    RESET = "reset"
    TRACE_ON = "trace-on"
    TRACE_OFF = "trace-off"
    REFRESH_NUMBER = "refresh-number"
    RELOAD_NUMBER = "reload-number"  # learnt elsewhere (a number probe): read it again
    CHECK_BALANCE = "check-balance"


@dataclass(frozen=True)
class Backoff:
    """The wait before the n-th retry of a FAILED modem: ``initial * growth**(n-1)``,
    at most ``cap`` seconds. Declared here, in one place, and logged when it sleeps."""

    initial: float = 30.0
    growth: float = 2.0
    cap: float = 600.0

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.initial * self.growth ** min(max(attempt - 1, 0), 32))


@dataclass(frozen=True)
class WorkerSettings:
    """Timings and knobs of a worker; :meth:`from_config` takes them from ``[modems]``."""

    baudrate: int = 115200
    command_timeout: float = 5.0
    health_interval: float = 30.0
    timeouts_before_reset: int = 3
    boot_settle: float = 1.0  # quiet time after boot URCs before setting up again
    reset_wait: float = 20.0  # how long a reset modem may take to answer again
    disk_full_retry: float = 60.0
    ussd_answer_within: float = 20.0
    power_cycle_command: str = ""
    power_cycle_timeout: float = 60.0
    failed_backoff: Backoff = field(default_factory=Backoff)

    @classmethod
    def from_config(cls, config: ModemsConfig) -> WorkerSettings:
        return cls(
            baudrate=config.baudrate,
            command_timeout=config.command_timeout,
            health_interval=config.health_interval,
            power_cycle_command=config.power_cycle_command,
        )


HEALTH_QUESTIONS = {
    "+CSQ": "AT+CSQ",
    "+CREG": "AT+CREG?",
    "+CPIN": "AT+CPIN?",
    "+CNMI": "AT+CNMI?",
    "+CPMS": "AT+CPMS?",
}
"""What a health check asks, by the prefix of its answer."""
HEALTH_LINE = "AT" + ";".join(question[2:] for question in HEALTH_QUESTIONS.values())


def _signal_fields(lines: list[str]) -> dict[str, object]:
    """The status fields a ``+CSQ`` answer gives (none when it cannot be read)."""
    try:
        signal = commands.parse_csq(lines)
    except AtParseError:
        return {}
    return {"signal_dbm": signal.dbm, "signal_bars": signal.bars}


def _registration_fields(lines: list[str]) -> dict[str, object]:
    """The status fields a ``+CREG?`` answer gives (none when it cannot be read)."""
    try:
        registration = commands.parse_registration(lines)
    except AtParseError:
        return {}
    return {
        "registration": startup.registration_word(registration),
        "registered": registration.status.registered,
    }


def _indication_setting(lines: list[str]) -> commands.MessageIndication | None:
    """A ``+CNMI?`` answer; None when it cannot be read."""
    try:
        return commands.parse_cnmi(lines)
    except AtParseError:
        return None


def _indications_on(chosen: startup.CnmiChoice, current: commands.MessageIndication | None) -> bool:
    """Whether the ``+CNMI?`` answer still has the mode and SMS indication we set up; a
    modem that cannot say (None) is judged by its other answers."""
    return current is None or chosen.matches(current)


class _HealthReadings:
    """What the last answer to each health question was read as.

    At rest a modem gives the same answers check after check, and reading them again was
    a good part of what an idle site costs (issue 19): each question's answer is read
    again only when its lines changed (a modem whose signal moves has its ``+CSQ`` read,
    the rest not). Holds one answer per question of HEALTH_QUESTIONS.
    """

    def __init__(self) -> None:
        self._last: dict[str, tuple[tuple[str, ...], Any]] = {}

    def read(self, prefix: str, lines: list[str], reader: Callable[[list[str]], T]) -> T:
        said = tuple(lines)
        last = self._last.get(prefix)
        if last is not None and last[0] == said:
            return cast(T, last[1])
        value = reader(lines)
        self._last[prefix] = (said, value)
        return value


class _Tick(StrEnum):
    HEALTH = "health"
    SETUP = "setup"  # boot URCs settled, or a SIM came: set up again
    SWEEP = "sweep"  # read what is stored (disk space may be back)
    UPKEEP = "upkeep"  # the SIM's balance and keep-alive, when due
    USSD_ANSWER = "ussd-answer"  # a +CUSD came: wakes the question waiting for it, if any
    GONE = "gone"


def _changes_the_sim(urc: Urc) -> bool:
    """Whether ``urc`` says the SIM changed or the modem restarted: who the SIM is must be
    read again before an SMS is stored for it."""
    return (
        isinstance(urc, SimStatusChanged)
        or vendors.sim_state_reported(urc) is not None
        or urc.boot_marker
    )


class _AnswersReadingSms(ussd.QueuedAnswers):
    """A worker's USSD answers, held in its queue and awaited in the worker's own task,
    which reads the SMS that arrive meanwhile (:meth:`ModemWorker._answer`)."""

    def __init__(self, worker: ModemWorker) -> None:
        super().__init__(worker._ussd_answers)
        self._worker = worker

    async def next(self, within: float) -> UssdReceived | None:
        return await self._worker._answer(within)


class _Job:
    """Work another part of the agent has for this port (a number probe's SMS), run by
    the worker in its turn; its outcome goes to ``done``."""

    def __init__(self, work: Callable[[AtSession], Awaitable[Any]]) -> None:
        self.work = work
        self.done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def run(self, session: AtSession) -> None:
        if self.done.cancelled():
            return  # whoever asked gave up waiting for its turn: the work is not done
        try:
            result = await self.work(session)
        except CommandFailed as exc:
            self.settle(exc)  # an answer: the port is fine
            return
        except (CommandTimeout, PortGone) as exc:
            self.settle(exc)
            raise  # the ladder's business, or the end of the worker
        except BaseException:  # the worker is stopped (cancelled) in the middle of it
            self.settle(PortGone("the modem's worker stopped during the work", session.name))
            raise
        self.settle(result)

    def settle(self, outcome: Any) -> None:
        if self.done.done():
            return  # the asker stopped waiting while the work ran
        if isinstance(outcome, BaseException):
            self.done.set_exception(outcome)
        else:
            self.done.set_result(outcome)


_InboxItem = Urc | WorkerCommand | _Tick | _Job

# A SIM's upkeep fields of ModemStatus, cleared when the SIM goes or changes.
_NO_UPKEEP: dict[str, object] = {
    "balance": None,
    "balance_currency": None,
    "balance_at": None,
    "active_until": None,
}


class ModemWorker:
    """One modem's owner task; see the module docstring. ``run()`` it in a task."""

    def __init__(
        self,
        device: str,
        *,
        slot: str,
        sink: PduSink,
        on_status: Callable[[ModemStatus], None] | None = None,
        settings: WorkerSettings | None = None,
        number_book: NumberBook | None = None,
        ussd_recipes: Mapping[str, UssdRecipe] | None = None,
        upkeep: SimUpkeep | None = None,
        label: str | None = None,
        usb_path: str | None = None,
        call_recorder: calls.CallRecorder | None = None,
        call_settings: calls.CallSettings | None = None,
    ) -> None:
        self.device = device
        self.slot = slot
        self.usb_path = usb_path or slot
        self.settings = settings or WorkerSettings()
        self._sink = sink
        self._on_status = on_status
        self._book: NumberBook = number_book or MemoryNumberBook()
        self._recipes = dict(ussd_recipes) if ussd_recipes is not None else own_number.recipes({})
        self._upkeep = upkeep
        self.status = ModemStatus(slot=slot, label=label, ports=(device,), at_port=device)
        self._session: AtSession | None = None
        # A broken modem can fail the same command every few seconds for days.
        self._errors = LogLimiter(log)
        # Commands, jobs and ticks are few by construction (one tick of each kind, jobs
        # awaited by their callers); URCs are bounded by URCS_IN_INBOX (_take_urcs).
        self._inbox: asyncio.Queue[_InboxItem] = asyncio.Queue()
        # Taken from the inbox while a USSD answer was awaited, handled next, in order
        # (URCs among them still count in _urcs_in_inbox, the bound of both).
        self._held: collections.deque[_InboxItem] = collections.deque()
        self._urcs_in_inbox = 0
        self._ussd_answers: asyncio.Queue[UssdReceived] = asyncio.Queue(maxsize=USSD_ANSWERS_HELD)
        self._ussd_wake_queued = False  # a USSD_ANSWER tick is in the inbox already
        # What an SMS read during a USSD wait raised, raised when that turn ends (_guarded).
        self._failed_meanwhile: Exception | None = None
        self._answers = _AnswersReadingSms(self)
        self._timers: dict[_Tick, asyncio.TimerHandle] = {}
        self._setup: ModemSetup | None = None
        self._sim: SimIdentity | None = None
        self._chain_health = True  # see _health_answers
        self._health_readings = _HealthReadings()
        self._timeouts = 0
        self._disk_full = False
        self._trace = False
        self._failures = 0
        self._idle = asyncio.Event()
        self._first_health = True
        self._calls = calls.CallHandler(
            slot,
            call_recorder,
            call_settings or calls.CallSettings(),
        )

    # -- outside world ---------------------------------------------------------------

    def send(self, command: WorkerCommand) -> None:
        """Queue a command; the worker runs it between its other work."""
        self._inbox.put_nowait(command)

    async def run_in_turn(self, work: Callable[[AtSession], Awaitable[Any]]) -> Any:
        """Run ``work(session)`` between the worker's other items (never in the middle of
        reading an SMS) and return what it returns; raises what it raised, or PortGone
        when the worker ends first. Cancelled (a caller's timeout) before its turn comes,
        the work is skipped."""
        job = _Job(work)
        self._inbox.put_nowait(job)
        return await job.done

    async def wait_idle(self) -> None:
        """Wait until the worker has handled everything in its inbox (tests, benchmarks)."""
        await self._idle.wait()

    def _publish(self, **changes: object) -> None:
        self.status = replace(self.status, **changes, updated_at=time.time())
        if self._on_status is not None:
            self._on_status(self.status)

    def _publish_changes(self, changes: dict[str, object]) -> None:
        """Publish ``changes`` unless every one of them is what the status says already."""
        status = self.status
        if any(getattr(status, name) != value for name, value in changes.items()):
            self._publish(**changes)

    # -- life ------------------------------------------------------------------------

    async def run(self) -> ModemStatus:
        """Serve the modem until its port goes away (returns the GONE status), another
        program holds it (returns a PROBING status: probe the slot again), or the task is
        cancelled (the session is closed either way)."""
        try:
            self._publish(state=ModemState.STARTING, fault=None)
            await self._open()
            await self._guarded(self._start)
            while True:
                if not self._held and self._inbox.empty():
                    self._idle.set()
                item = self._held.popleft() if self._held else await self._inbox.get()
                self._idle.clear()
                if isinstance(item, Urc):
                    self._urcs_in_inbox -= 1
                    self._take_urcs()
                if item is _Tick.GONE:
                    raise self._gone_reason()
                if item is _Tick.USSD_ANSWER:
                    self._ussd_wake_queued = False  # no question waits: an answer too late
                    continue
                await self._guarded(self._handle, item)
        except PortBusy as exc:
            # Another program took the port after the probe (or during a reopen): the
            # modem is neither gone nor failed; the fleet probes the slot again.
            log.warning("%s: port in use, handed back to probing: %s", self.slot, exc)
            self._publish(state=ModemState.PROBING, fault=f"port in use: {exc}")
            return self.status
        except PortGone as exc:
            log.info("%s: port gone: %s", self.slot, exc)
            self._publish(state=ModemState.GONE, fault=str(exc))
            return self.status
        finally:
            await self._shutdown()

    def _gone_reason(self) -> PortGone:
        session = self._session
        reason = session.gone_reason if session is not None else None
        return reason or PortGone("port closed", self.device)

    async def _open(self) -> None:
        session = await AtSession.open(
            self.device,
            baudrate=self.settings.baudrate,
            name=self.slot,
            command_timeout=self.settings.command_timeout,
        )
        session.set_trace(self._trace)
        self._session = session
        session.listen(self._take_urcs, self._port_closed)

    async def _close_port(self) -> None:
        if self._session is not None:
            self._session.listen(None, None)
            await self._session.close()
        # Whatever the old port said is stale now, including its "gone".
        self._drop_queued(lambda item: isinstance(item, Urc) or item is _Tick.GONE)

    async def _shutdown(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        while self._held or not self._inbox.empty():
            item = self._held.popleft() if self._held else self._inbox.get_nowait()
            if isinstance(item, _Job):
                item.settle(PortGone("the modem's worker ended", self.device))
        with contextlib.suppress(PortGone):
            await self._close_port()

    def _take_urcs(self) -> None:
        """Move URCs from the session's queue into the inbox while it has room for them
        (called by the session as each URC comes, and as the worker takes one)."""
        session = self._session
        if session is None:
            return
        while self._urcs_in_inbox < URCS_IN_INBOX and not session.urcs.empty():
            urc = session.urcs.get_nowait()
            if isinstance(urc, UssdReceived):
                self._hold_ussd_answer(urc)
            else:
                self._urcs_in_inbox += 1
                self._inbox.put_nowait(urc)

    def _port_closed(self) -> None:
        self._inbox.put_nowait(_Tick.GONE)

    def _hold_ussd_answer(self, answer: UssdReceived) -> None:
        """Keep a +CUSD for the question waiting for it; an unasked flood keeps the newest."""
        if self._ussd_answers.full():
            self._ussd_answers.get_nowait()
            self._errors.warning(
                "unasked USSD answers",
                self.slot,
                "%s: more than %d USSD answers nobody asked for: the oldest dropped",
                self.slot,
                USSD_ANSWERS_HELD,
            )
        self._ussd_answers.put_nowait(answer)
        if not self._ussd_wake_queued:
            self._ussd_wake_queued = True
            self._inbox.put_nowait(_Tick.USSD_ANSWER)

    async def _answer(self, within: float) -> UssdReceived | None:
        """The USSD answer a question waits for, or None after ``within`` seconds; the SMS
        the modem announces meanwhile are read now (the network may take its time, an SMS
        must not), every other item is held, in order, until the question is over.

        The wait ends early (ussd.WaitCut) on what makes the question moot or the port
        suspect: the SIM changing or the modem restarting (held, so that the SMS after it
        are read in order, for the SIM they belong to) and a read that failed (its error
        is raised when the turn ends, :meth:`_guarded`, as if the SMS had had its own
        turn). The port going away ends the wait (PortGone), as it ends the worker."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while self._ussd_answers.empty():
            try:
                async with asyncio.timeout_at(deadline):
                    item = await self._inbox.get()
            except TimeoutError:
                return None
            if item is _Tick.USSD_ANSWER:
                self._ussd_wake_queued = False
            elif item is _Tick.GONE:
                raise self._gone_reason()
            elif isinstance(item, SmsStored | SmsReceived):
                self._urcs_in_inbox -= 1
                self._take_urcs()
                try:
                    await self._urc(item)
                except (CommandTimeout, StoreError) as exc:
                    self._failed_meanwhile = exc
                    raise ussd.WaitCut(f"reading an SMS meanwhile failed: {exc}") from exc
            else:
                self._held.append(item)
                if isinstance(item, Urc) and _changes_the_sim(item):
                    raise ussd.WaitCut(f"the modem said {item.line!r} meanwhile")
        return self._ussd_answers.get_nowait()

    def _next_health(self) -> float:
        """The health interval, spread: modems set up together would otherwise check
        together, and SMS on every port would wait behind one round of checks at once
        (the end-to-end benchmark's p99). The first check after a setup lands anywhere in
        half an interval either way, later ones within a tenth."""
        spread = 0.5 if self._first_health else 0.1
        self._first_health = False
        return self.settings.health_interval * random.uniform(1 - spread, 1 + spread)

    def store_writable_again(self) -> None:
        """The store commits again: read the SMS left on the modem for want of it now,
        not at the next ``disk_full_retry`` (a minute by default)."""
        if self._disk_full:
            self._arm(_Tick.SWEEP, 0)

    def _arm(self, tick: _Tick, delay: float, *, on_beat: bool = False) -> None:
        """(Re)start the timer that puts ``tick`` in the inbox after ``delay`` seconds;
        ``on_beat``: on the last beat before then (agent.clock), to share a wake-up."""
        if (old := self._timers.pop(tick, None)) is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        now = loop.time()
        when = on_the_beat(now, delay) if on_beat else now + delay
        self._timers[tick] = loop.call_at(when, self._fire, tick)

    def _arm_health(self) -> None:
        """The next health check, on a beat: at rest the checks of the modems due about
        then, and the hot-plug watcher's look, share one wake-up of the loop."""
        self._arm(_Tick.HEALTH, self._next_health(), on_beat=True)

    def _fire(self, tick: _Tick) -> None:
        self._timers.pop(tick, None)
        self._inbox.put_nowait(tick)

    @property
    def session(self) -> AtSession:
        if self._session is None:
            raise PortGone("port is not open", self.device)
        return self._session

    # -- timeouts and the ladder -------------------------------------------------------

    async def _guarded(self, handler: Callable[..., Awaitable[None]], *args: object) -> None:
        """Run ``handler``; a command timeout goes to the recovery ladder. What an SMS read
        during a USSD wait in it raised is raised now, as if it had been its own turn."""
        try:
            await handler(*args)
            if (failed := self._failed_meanwhile) is not None:
                self._failed_meanwhile = None
                raise failed
        except CommandTimeout as exc:
            await self._timed_out(exc)
        except CommandFailed as exc:
            # A refusal the handler did not expect: logged, and the next item goes on.
            self._errors.warning("modem errors", self.slot, "%s: %s", self.slot, exc)

    async def _timed_out(self, exc: CommandTimeout) -> None:
        """Re-sync and set up again; after ``timeouts_before_reset`` timeouts in a row,
        climb the rest of the ladder."""
        reason = str(exc)
        self._timeouts += 1
        while self._timeouts < self.settings.timeouts_before_reset:
            self._step("re-sync", reason)
            try:
                await self.session.resync(answer_within=self.settings.command_timeout)
                await self._start()
                return
            except CommandTimeout as again:
                self._timeouts += 1
                reason = str(again)
        await self._climb(reason)

    def _step(self, step: str, reason: str) -> None:
        log.warning("%s: recovery: %s, because %s", self.slot, step, reason)
        self._publish(state=ModemState.RECOVERING, fault=f"{step}: {reason}")

    async def _climb(self, reason: str) -> None:
        """CFUN reset, reopen, power cycle; FAILED and again on a back-off until one works."""
        rungs: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("reset (AT+CFUN=1,1)", self._reset),
            ("reopen the port", self._reopen),
        ]
        if self.settings.power_cycle_command:
            rungs.append(("power cycle", self._power_cycle))
        while True:
            for step, rung in rungs:
                self._step(step, reason)
                try:
                    await rung()
                    await self._start()
                    self._failures = 0
                    return
                except (CommandTimeout, CommandFailed) as exc:
                    reason = f"{step} did not help: {exc}"
            self._failures += 1
            wait = self.settings.failed_backoff.delay(self._failures)
            log.error("%s: modem failed (%s); trying again in %.0fs", self.slot, reason, wait)
            self._publish(state=ModemState.FAILED, fault=reason)
            await self._wait_or_gone(wait)

    async def _wait_or_gone(self, seconds: float) -> None:
        """Sleep ``seconds`` (the back-off), but end at once with PortGone if the port goes."""
        try:
            async with asyncio.timeout(seconds):
                await self.session.closed.wait()
        except TimeoutError:
            return
        raise self._gone_reason()

    async def _reset(self) -> None:
        try:
            await self.session.command("AT+CFUN=1,1")
        except CommandFailed:
            # No full reset on this module (or not now): radio off and on again.
            await self.session.command("AT+CFUN=0")
            await self.session.command("AT+CFUN=1")
        await self._await_answer()

    async def _await_answer(self) -> None:
        """Wait (up to ``reset_wait``) for a restarting modem to answer ``AT`` again."""
        attempts = max(1, int(self.settings.reset_wait / self.settings.command_timeout))
        await self.session.resync(
            attempts=attempts, answer_within=self.settings.command_timeout, quiet=0.1
        )

    async def _reopen(self) -> None:
        await self._close_port()
        await self._open()
        await self._await_answer()

    async def _power_cycle(self) -> None:
        command = self.settings.power_cycle_command.format(
            device=shlex.quote(self.device),
            slot=shlex.quote(self.slot),
            usb_path=shlex.quote(self.usb_path),
        )
        await self._close_port()
        try:
            output = await self._run_power_cycle(command)
        finally:
            # PortGone here: the device went away and discovery takes over when it is back.
            await self._open()
        log.info("%s: power cycle done: %s %s", self.slot, command, output)
        await self._await_answer()

    async def _run_power_cycle(self, command: str) -> str:
        process = await asyncio.create_subprocess_shell(
            command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            async with asyncio.timeout(self.settings.power_cycle_timeout):
                output, _ = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise CommandTimeout(
                f"power cycle command still running after "
                f"{self.settings.power_cycle_timeout:g}s: {command}",
                self.device,
            ) from None
        text = output.decode(errors="replace").strip()
        if process.returncode:
            raise CommandFailed(
                f"power cycle command exited {process.returncode}: {command}: {text}",
                self.device,
                text,
            )
        return text

    # -- setting up ----------------------------------------------------------------------

    async def _start(self) -> None:
        """Set up, identify the SIM, find its number, sweep storage, arm the health tick."""
        self._publish(state=ModemState.STARTING)
        if (pending := self._timers.pop(_Tick.SETUP, None)) is not None:
            pending.cancel()  # this is the setup it asked for
        identity = await startup.identify(self.session)
        setup = identity.setup
        self._setup = setup
        self._chain_health = True
        self._timeouts = 0
        self._publish(
            manufacturer=setup.manufacturer,
            model=setup.model,
            imei=setup.imei,
            sim_state=setup.sim_state,
        )
        try:
            await self._start_receiving(setup, identity.sim)
        finally:
            # Boot lines that came while setting up are answered by this very setup.
            self._drop_queued(lambda item: isinstance(item, Urc) and item.boot_marker)

    async def _start_receiving(self, setup: ModemSetup, sim: SimIdentity | None) -> None:
        if setup.sim_state is not SimState.READY:
            self._sim = None
            self._publish(
                state=ModemState.READY,
                fault=f"SIM {setup.sim_state}",
                iccid=None,
                imsi=None,
                number=None,
                number_source=NumberSource.UNKNOWN,
                operator=None,
                operator_name=None,
                **_NO_UPKEEP,
            )
            self._arm_health()
            return
        self._calls.caller_id = await calls.enable_caller_id(self.session)
        self._sim = sim
        if sim is None:
            self._publish(state=ModemState.READY, fault="cannot read the SIM's ICCID")
            self._arm_health()
            return
        self._publish(
            iccid=sim.iccid,
            imsi=sim.imsi,
            operator=sim.operator,
            operator_name=sim.operator_name,
            storage_used=setup.storage.used if setup.storage else None,
            storage_total=setup.storage.total if setup.storage else None,
            **_NO_UPKEEP,  # until the upkeep check says what this SIM's are
        )
        await self._resolve_number(refresh=False)
        self._first_health = True
        await self._health()
        await self._sweep()
        self._publish(state=ModemState.READY, fault=self._standing_fault())
        self._arm(_Tick.UPKEEP, 0)

    def _standing_fault(self) -> str | None:
        if self._disk_full:
            return "disk full: SMS left on the SIM"
        if self._setup is not None and self._setup.cnmi is None:
            return "no new-SMS indications: found by sweeps only"
        return None

    def _drop_queued(self, unwanted: Callable[[_InboxItem], bool]) -> None:
        """Drop the ``unwanted`` items waiting in the inbox and among the held ones."""

        def kept(item: _InboxItem) -> bool:
            if not unwanted(item):
                return True
            if isinstance(item, Urc):
                self._urcs_in_inbox -= 1
            return False

        self._held = collections.deque(item for item in self._held if kept(item))
        queued = []
        while not self._inbox.empty():
            queued.append(self._inbox.get_nowait())
        for item in queued:
            if kept(item):
                self._inbox.put_nowait(item)

    async def _resolve_number(self, *, refresh: bool) -> None:
        if self._sim is None or self._setup is None:
            return
        number, source = await own_number.resolve(
            self.session,
            iccid=self._sim.iccid,
            network=self._sim.operator,
            vendor=self._setup.vendor,
            book=self._book,
            table=self._recipes,
            answers=self._answers,
            answer_within=self.settings.ussd_answer_within,
            refresh=refresh,
        )
        self._publish(number=number, number_source=source)

    # -- the inbox ---------------------------------------------------------------------

    async def _handle(self, item: _InboxItem) -> None:
        if isinstance(item, WorkerCommand):
            await self._command(item)
        elif item is _Tick.HEALTH:
            await self._health()
        elif item is _Tick.SETUP:
            await self._start()
        elif item is _Tick.SWEEP:
            await self._sweep()
            self._publish(fault=self._standing_fault())
        elif item is _Tick.UPKEEP:
            await self._check_upkeep(balance_now=False)
        elif isinstance(item, Urc):
            await self._urc(item)
        elif isinstance(item, _Job):
            await item.run(self.session)

    async def _command(self, command: WorkerCommand) -> None:
        log.info("%s: asked to %s", self.slot, command)
        if command is WorkerCommand.RESET:
            self._step("reset (AT+CFUN=1,1)", "asked by a person")
            await self._reset()
            await self._start()
        elif command in (WorkerCommand.TRACE_ON, WorkerCommand.TRACE_OFF):
            self._trace = command is WorkerCommand.TRACE_ON
            self.session.set_trace(self._trace)
        elif command is WorkerCommand.REFRESH_NUMBER:
            await self._resolve_number(refresh=True)
        elif command is WorkerCommand.RELOAD_NUMBER:
            await self._resolve_number(refresh=False)
        elif command is WorkerCommand.CHECK_BALANCE:
            await self._check_upkeep(balance_now=True)

    async def _check_upkeep(self, *, balance_now: bool) -> None:
        upkeep, sim, setup = self._upkeep, self._sim, self._setup
        if upkeep is None or sim is None or setup is None:
            return
        try:
            view = await upkeep.check(
                self.session,
                sim,
                slot=self.slot,
                vendor=setup.vendor,
                answers=self._answers,
                answer_within=self.settings.ussd_answer_within,
                registered=self.status.registered,
                balance_now=balance_now,
            )
        except StoreError as exc:
            # The store cannot keep the answer now (full, read-only): looked at again later;
            # the SMS, which the store's state concerns, are handled on their own path.
            self._errors.warning("upkeep", self.slot, "%s: SIM upkeep: %s", self.slot, exc)
            self._arm(_Tick.UPKEEP, upkeep.check_every)
            return
        self._publish(
            balance=view.balance.amount if view.balance else None,
            balance_currency=view.balance.currency if view.balance else None,
            balance_at=view.balance_at,
            active_until=view.active_until,
        )
        self._arm(_Tick.UPKEEP, view.next_check)

    async def _urc(self, urc: Urc) -> None:
        if isinstance(urc, SmsStored):
            if self._sim is not None and not self._disk_full:
                await self._read_one(urc.storage, urc.index)
        elif isinstance(urc, SmsReceived):
            await self._direct(urc)
        elif isinstance(urc, RegistrationChanged):
            registration = urc.registration
            self._publish(
                registration=startup.registration_word(registration),
                registered=registration.status.registered,
            )
        elif isinstance(urc, SignalChanged):
            self._publish(signal_dbm=urc.signal.dbm, signal_bars=urc.signal.bars)
        elif isinstance(urc, SimStatusChanged):
            self._sim_changed(startup.sim_state_of(urc.status), urc)
        elif (reported := vendors.sim_state_reported(urc)) is not None:
            self._sim_changed(reported, urc)
        elif isinstance(urc, Ring | CallerId | CallEnded):
            await self._calls.handle(
                urc,
                session=self.session,
                iccid=self._sim.iccid if self._sim is not None else None,
                vendor=self._setup.vendor if self._setup is not None else vendors.GENERIC,
            )
        elif isinstance(urc, StorageFull):
            log.warning("%s: modem says %s storage full: sweeping", self.slot, urc.storage)
            await self._sweep()
        elif urc.boot_marker:
            log.warning("%s: modem restarted by itself (%r): setting up again", self.slot, urc.line)
            self._publish(state=ModemState.STARTING, fault=f"restarted: {urc.line}")
            self._arm(_Tick.SETUP, self.settings.boot_settle)

    def _sim_changed(self, state: SimState, urc: Urc) -> None:
        """A SIM-state URC (``+CPIN:`` or a vendor's own report) said ``state``."""
        if state is SimState.READY:
            # A SIM came (or the modem restarted): who it is must be read again.
            self._publish(sim_state=state, state=ModemState.STARTING)
            self._arm(_Tick.SETUP, self.settings.boot_settle)
            return
        log.warning("%s: SIM %s (%r)", self.slot, state, urc.line)
        self._sim = None
        self._publish(
            sim_state=state,
            fault=f"SIM {state}",
            iccid=None,
            imsi=None,
            number=None,
            number_source=NumberSource.UNKNOWN,
            registered=False,
            **_NO_UPKEEP,
        )

    # -- health ------------------------------------------------------------------------

    async def _health(self) -> None:
        """Signal, registration, SIM and storage; the next check is ``health_interval``
        after this one ends, so a slow modem is never asked faster than it answers."""
        if (pending := self._timers.pop(_Tick.HEALTH, None)) is not None:
            pending.cancel()
        try:
            await self._check_health()
        finally:
            self._arm_health()

    async def _check_health(self) -> None:
        changes: dict[str, object] = {}
        try:
            sweep = await self._read_health(changes)
        finally:
            # One status for the whole check, and none when nothing changed: the fleet,
            # the numbers list and the dashboard have nothing to look at (issue 19).
            self._publish_changes(changes)
        if sweep:
            await self._sweep()

    async def _read_health(self, changes: dict[str, object]) -> bool:
        """Ask the health questions, put what they say into ``changes`` and act on it;
        True when the storage holds SMS not taken (the caller sweeps them)."""
        session = self.session
        answers = await self._health_answers()
        read = self._health_readings.read

        async def answer(prefix: str) -> list[str]:
            if answers is not None:
                return answers[prefix]
            return await session.command(HEALTH_QUESTIONS[prefix])

        with contextlib.suppress(CommandFailed):
            changes.update(read("+CSQ", await answer("+CSQ"), _signal_fields))
        with contextlib.suppress(CommandFailed):
            changes.update(read("+CREG", await answer("+CREG"), _registration_fields))
        if answers is not None:
            sim = read("+CPIN", answers["+CPIN"], startup.sim_state_from)
        else:
            sim = await startup.sim_status(session)
        if sim is SimState.READY and self.status.sim_state is not SimState.READY:
            log.info("%s: SIM is ready now: setting up again", self.slot)
            self._arm(_Tick.SETUP, 0)
            return False
        if sim is not self.status.sim_state:
            changes.update(sim_state=sim, fault=None if sim is SimState.READY else f"SIM {sim}")
        if sim is not SimState.READY or self._sim is None:
            return False
        chosen = self._setup.cnmi if self._setup is not None else None
        with contextlib.suppress(CommandFailed):
            if chosen is not None and not _indications_on(
                chosen, read("+CNMI", await answer("+CNMI"), _indication_setting)
            ):
                # A modem that reset without a boot line we know (or a missed +CNMA)
                # has silently stopped telling us of new SMS: set it up, then sweep.
                log.warning("%s: new-SMS indications are off: setting up again", self.slot)
                self._arm(_Tick.SETUP, 0)
                return False
        try:
            storage = read("+CPMS", await answer("+CPMS"), startup.storage_from)
        except CommandFailed:
            storage = None
        if storage is None:
            return False
        changes.update(storage_used=storage.used, storage_total=storage.total)
        if storage.used:
            # Every SMS is read on its +CMTI and deleted, so anything stored now
            # was missed (a notice lost in garbage or a hang) or is nearly full.
            log.warning(
                "%s: %d of %d stored SMS not taken yet: sweeping",
                self.slot,
                storage.used,
                storage.total,
            )
        return bool(storage.used)

    async def _health_answers(self) -> dict[str, list[str]] | None:
        """All health questions on one line: one exchange instead of five, which is most
        of what an idle site costs. None when the line fails as a whole (an error in any
        part fails it, e.g. +CPIN? without a SIM, or a modem that refuses chains): the
        questions are then asked one by one until the next set-up."""
        if not self._chain_health:
            return None
        try:
            lines = await self.session.command(HEALTH_LINE)
            return commands.split_chained(lines, tuple(HEALTH_QUESTIONS))
        except (CommandFailed, AtParseError) as exc:
            log.info("%s: %s failed (%s): asking one by one", self.slot, HEALTH_LINE, exc)
            self._chain_health = False
            return None

    # -- receiving -----------------------------------------------------------------------

    async def _sweep(self) -> None:
        """Read, store and delete everything in every storage (start, reset, anything
        missed, a storage full)."""
        if self._sim is None or (self._disk_full and _Tick.SWEEP in self._timers):
            return
        self._disk_full = False
        storages = self._setup.storages if self._setup is not None else (startup.STORAGE,)
        taken: dict[str, int] = {}
        async with self.session.exchange():
            for storage in storages:
                try:
                    async with self._reading_from(storage):
                        lines = await self.session.command("AT+CMGL=4")
                        for message in commands.parse_cmgl(lines):
                            if message.index is None:
                                continue
                            if not await self._keep_and_delete(
                                storage, message.index, message.pdu_hex
                            ):
                                return  # disk full: the rest stays on the modem
                            taken[storage] = taken.get(storage, 0) + 1
                except (CommandFailed, AtParseError) as exc:
                    self._errors.warning(
                        "modem errors",
                        self.slot,
                        "%s: sweep of %s storage: %s",
                        self.slot,
                        storage,
                        exc,
                    )
        if taken:
            counts = ", ".join(f"{count} from {storage}" for storage, count in taken.items())
            log.info("%s: sweep took %s off the modem", self.slot, counts)

    def _reading_from(self, storage: str) -> contextlib.AbstractAsyncContextManager[None]:
        """``mem1`` (what AT+CMGL/CMGR/CMGD read and delete) is ``storage`` inside the
        block, and SIM storage again after it; mem2 and mem3 are left as they are. The
        caller holds the port (:meth:`AtSession.exchange`) for the whole block. SIM
        storage, where every +CMTI of most modems points, needs no switch and no
        generator-based context (issue 19)."""
        if storage.upper() == startup.STORAGE:
            return contextlib.nullcontext()
        return self._switched_to(storage)

    @contextlib.asynccontextmanager
    async def _switched_to(self, storage: str) -> AsyncIterator[None]:
        name = storage.upper()
        if not _STORAGE_NAME.fullmatch(name):
            # The name comes from the modem (+CMTI) and goes into a command line.
            raise AtParseError(f"storage name {storage!r} is not one 27.005 knows", storage)
        await self.session.command(f'AT+CPMS="{name}"')
        try:
            yield
        finally:
            await self.session.command(f'AT+CPMS="{startup.STORAGE}"')

    async def _read_one(self, storage: str, index: int) -> None:
        """``+CMTI``: read the index, store it, delete it."""
        async with self.session.exchange():
            try:
                async with self._reading_from(storage):
                    message = commands.parse_cmgr(await self.session.command(f"AT+CMGR={index}"))
                    if message is not None:
                        await self._keep_and_delete(storage, index, message.pdu_hex)
            except (CommandFailed, AtParseError) as exc:
                self._errors.warning(
                    "modem errors",
                    self.slot,
                    "%s: reading %s index %d: %s",
                    self.slot,
                    storage,
                    index,
                    exc,
                )

    async def _keep_and_delete(self, storage: str, index: int, pdu_hex: str) -> bool:
        """Store one PDU, then delete it from the modem; False when the disk is full."""
        if not await self._ingest(storage, index, pdu_hex):
            return False
        await self.session.command(f"AT+CMGD={index}")
        return True

    async def _direct(self, urc: SmsReceived) -> None:
        """``+CMT``: store, then acknowledge (an SMS not acked comes again from the
        network, so a full disk simply leaves it unacknowledged)."""
        if self._sim is None:
            return
        if await self._ingest("MT", None, urc.pdu_hex):
            try:
                await self.session.command("AT+CNMA")
            except CommandFailed as exc:
                self._errors.warning("modem errors", self.slot, "%s: AT+CNMA: %s", self.slot, exc)

    async def _ingest(self, storage: str, index: int | None, pdu_hex: str) -> bool:
        assert self._sim is not None
        try:
            await self._sink.ingest_pdu(
                iccid=self._sim.iccid,
                imei=self.status.imei,
                slot=self.slot,
                storage=storage,
                index=index,
                pdu_hex=pdu_hex,
                read_at=time.time(),
            )
        except StoreNotWritable as exc:
            # Full, read-only or failing: the SMS is safe where it is until a write works.
            self._errors.error(
                "SMS left on the modem (store not writable)",
                self.slot,
                "%s: %s: SMS stay on the modem until there is space",
                self.slot,
                exc,
            )
            self._disk_full = True
            self._publish(fault=self._standing_fault())
            self._arm(_Tick.SWEEP, self.settings.disk_full_retry)
            return False
        return True
