"""The agent process: every part of ``simedge run`` in one event loop, started and stopped
in order.

    store ─┬─ fleet (hot-plug → one ModemWorker per modem) ── PDUs in
           ├─ numbers sync (sendNumbersOnline) ◀── fleet changes
           ├─ outbox pump (addMessage) ◀── store "message ready"
           ├─ take-off poll (takeOffNumbers) ─▶ marks ─▶ numbers sync
           ├─ webhook (list online, /healthz, /metrics) ◀── numbers sync
           ├─ public URL check (its own /healthz through the tunnel or port forward)
           └─ control socket (dashboard, CLI) ◀── everything, read-only but for commands

Shutdown (SIGTERM) stops the parts that take work in first (the fleet closes every port;
an SMS read but not yet durable stays on its SIM), lets in-flight uploads end or stay
pending in the store, then stops the listeners and closes the store. Nothing is lost: what
is not done is durable and picked up at the next start.

The agent is also the control socket's handler (its methods marked ``@handles``, one per
operation of :mod:`agent.control.protocol`) and the webhook's view
(:meth:`Agent.online_list`, :meth:`Agent.health`).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import time
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

from agent.clock import WallClockWatch, kernel_clock_synchronized
from agent.config import Config
from agent.control.block_rules import BlockRuleOps
from agent.control.protocol import (
    AskBalance,
    CheckHealth,
    EventKind,
    ListMessages,
    ListOutbox,
    ListSims,
    Rescan,
    ResetModem,
    Retry,
    SetNumber,
    ShowMessage,
    TakeoffDone,
    TakeSnapshot,
    Trace,
    handles,
)
from agent.control.server import Coalesced, ControlServer
from agent.errors import ControlError, StoreNotWritable
from agent.locking import DataDirLock
from agent.logs import get_logger, set_port_trace
from agent.modem import own_number
from agent.modem.calls import CallSettings
from agent.modem.discovery import BY_PATH_DIR
from agent.modem.fleet import Fleet
from agent.modem.hotplug import PortWatcher
from agent.modem.own_number import StoreNumberBook
from agent.modem.probe import NumberProber, ProbeSettings
from agent.modem.upkeep import SimUpkeep, StoreUpkeepLedger
from agent.modem.worker import WorkerCommand, WorkerSettings
from agent.status import (
    FACT_UPLINK,
    MessageDetail,
    MessageSummary,
    ModemState,
    ModemStatus,
    PublicUrlState,
    PublicUrlStatus,
    SimRow,
    SiteSnapshot,
    UplinkStatus,
)
from agent.store import Store, datadir, queries
from agent.store.blocking import CONFIGURED, BlockRule
from agent.store.facts import UplinkRecorder, read_fact
from agent.systemd import Notifier
from agent.uplink.client import OnlineSimClient, UplinkSettings
from agent.uplink.numbers import NumbersSync, list_fields
from agent.uplink.pump import OutboxPump
from agent.uplink.state import UplinkSnapshot, UplinkTracker
from agent.uplink.takeoff import TakeOffMarks, TakeOffPoller
from agent.webhook.app import WebhookApp
from agent.webhook.metrics import Metrics
from agent.webhook.reach import PublicUrlCheck
from agent.webhook.server import WebhookServer

log = get_logger("agent")

MAINTENANCE_INTERVAL = 60.0  # expire partial multiparts, refresh gauges
PRUNE_INTERVAL = 6 * 3600.0
# The per-slot activity and the site's hourly figures scan a day of messages: computed at
# most once a second after an SMS came or went, and at least every ACTIVITY_CACHE seconds.
ACTIVITY_CACHE = 10.0
ACTIVITY_MIN_AGE = 1.0
# Control clients asking for snapshots share them (see Coalesced): however many ask, the
# store reads one at a time, at most this often, so no client can slow an SMS down.
SNAPSHOT_INTERVAL = 0.2


class Agent:
    """``simedge run``. ``auto_discovery`` off and ``by_path_dir`` let tests and the demo
    watch only their emulated hub."""

    def __init__(
        self,
        config: Config,
        *,
        auto_discovery: bool = True,
        by_path_dir: Path = BY_PATH_DIR,
        worker_settings: WorkerSettings | None = None,
        notifier: Notifier | None = None,
        hotplug_interval: float | None = None,
        clock: Callable[[], float] = time.time,
        upkeep_check: float = 3600.0,
    ) -> None:
        self.config = config
        # The wall clock of SIM upkeep (balance schedule and freshness, keep-alive
        # deadlines): days pass in a test by moving it; see agent.modem.upkeep.
        self.clock = clock
        self.upkeep_check = upkeep_check
        self.auto_discovery = auto_discovery
        self.by_path_dir = by_path_dir
        self.worker_settings = worker_settings or WorkerSettings.from_config(config.modems)
        self.notifier = notifier or Notifier()
        self.hotplug_interval = hotplug_interval
        # Told by /healthz, so that the public URL check knows it reached this very agent
        # and not a relay's error page or another site behind a mistyped path.
        self.instance = secrets.token_hex(8)
        self.public_url: PublicUrlCheck | None = None
        self.metrics = Metrics()
        self.metrics.set_site(config.site.name)
        self.metrics.read_clock(kernel_clock_synchronized)
        self.uplink = UplinkTracker()
        self._uplink_condition = self.uplink.snapshot.condition  # as the metric says
        self.started = asyncio.Event()
        self.store: Store | None = None
        self._data_lock: DataDirLock | None = None
        self.fleet: Fleet | None = None
        self.prober: NumberProber | None = None
        self.numbers: NumbersSync | None = None
        self.pump: OutboxPump | None = None
        self.marks: TakeOffMarks | None = None
        self.uplink_record: UplinkRecorder | None = None
        self._list_fields: dict[str, tuple[object, ...]] = {}  # by slot; see _modem_changed
        self._background: set[asyncio.Task[object]] = set()
        self.takeoff: TakeOffPoller | None = None
        self.client: OnlineSimClient | None = None
        self.webhook: WebhookServer | None = None
        self.control: ControlServer | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._activity: tuple[float, Any] | None = None  # (monotonic time taken, figures)
        self._activity_stale = False
        self._activity_recheck = False
        self._snapshots = Coalesced(self.snapshot, min_interval=SNAPSHOT_INTERVAL)
        self._coalesced: set[EventKind] = set()
        self._changed = asyncio.Event()

    # -- life ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Start everything, serve until ``stop`` is set, then shut down in order."""
        try:
            await self.start()
            self.notifier.notify(ready="1", status=self._status_line())
            stopped = asyncio.create_task(stop.wait())
            running = set(self._tasks.values())
            while not stopped.done():
                done, _ = await asyncio.wait(
                    {stopped, *running}, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done - {stopped}:
                    running.discard(task)  # a part may end on purpose (take-off disabled)
                    if not task.cancelled() and task.exception() is not None:
                        stopped.cancel()
                        raise RuntimeError(f"the {task.get_name()} task died") from (
                            task.exception()
                        )
        finally:
            self.notifier.notify(stopping="1", status="shutting down")
            await self.shutdown()

    async def start(self) -> None:
        config = self.config
        data_dir = config.site.data_dir
        # First of all: a second agent on the same folder would drive the same modems.
        self._data_lock = datadir.claim(data_dir, config.database)
        self.store = store = await Store.open(
            config.database,
            multipart_timeout=config.store.multipart_timeout,
            retention_days=config.store.retention_days,
            block_rules=[
                BlockRule(rule.name, rule.sender, rule.text, source=CONFIGURED)
                for rule in config.store.block
            ],
        )
        store.on_message_ready(self._message_ready)
        store.on_message_stored(self.metrics.sms_stored)
        self.metrics.read_data_folder(data_dir)
        self.uplink_record = UplinkRecorder(
            partial(store.record_fact, FACT_UPLINK),
            await store.read(partial(read_fact, FACT_UPLINK)),
        )
        self.client = OnlineSimClient(UplinkSettings.from_config(config.onlinesim))
        self.marks = TakeOffMarks(store)
        await self.marks.load()
        marks = self.marks
        self.metrics.read_swap_due(lambda: len(marks.open_marks()))
        self.metrics.read_sim_balances(self._live_modems, config.sims.low_balance)
        self.numbers = NumbersSync(
            self.client,
            store,
            self._live_modems,
            state=self.uplink,
            metrics=self.metrics,
            marks=self.marks,
            takeoff_offline=config.onlinesim.takeoff_action == "offline",
            debounce=config.onlinesim.numbers_debounce,
            heartbeat=config.onlinesim.numbers_heartbeat,
            balance_fresh=config.sims.balance_fresh,
            clock=self.clock,
        )
        self.pump = OutboxPump(
            self.client,
            store,
            numbers=self.numbers,
            state=self.uplink,
            metrics=self.metrics,
            max_in_flight=config.onlinesim.max_in_flight,
            on_outcome=self._outbox_outcome,
        )
        self.takeoff = TakeOffPoller(
            self.client,
            self.marks,
            self.numbers.holders,
            sum_rub=config.onlinesim.takeoff_sum,
            interval=config.onlinesim.takeoff_interval,
            on_marked=self._takeoff_marked,
            state=self.uplink,
        )
        self.uplink.on_change(self._uplink_changed)
        store.on_writable_change(self._store_writable_changed)
        watcher = PortWatcher(
            config.modems.ports,
            labels=config.site.slot_labels,
            auto=self.auto_discovery,
            by_path_dir=self.by_path_dir,
            **({"interval": self.hotplug_interval} if self.hotplug_interval else {}),
        )
        self.fleet = Fleet(
            watcher=watcher,
            store=store,
            settings=self.worker_settings,
            number_book=StoreNumberBook(store),
            ussd_recipes=own_number.recipes(config.modems.ussd),
            upkeep=SimUpkeep.from_config(
                config.sims,
                StoreUpkeepLedger(store),
                check_every=self.upkeep_check,
                clock=self.clock,
            ),
            on_change=self._modem_changed,
            call_settings=CallSettings(
                forward_template=config.calls.forward_text if config.calls.forward else None
            ),
        )
        self.prober = NumberProber(
            store=store,
            workers=self.fleet,
            settings=ProbeSettings(
                per_day=config.sims.probe_sms_per_day, timeout=config.sims.probe_timeout
            ),
        )

        self.webhook = WebhookServer(
            WebhookApp(self, self.metrics, path=config.webhook.path, token=config.webhook.token)
        )
        await self.webhook.start(config.webhook.host, config.webhook.port)
        self.control = ControlServer(config.control_socket, self, BlockRuleOps(store))
        await self.control.start()
        if config.webhook.public_url:
            self.public_url = PublicUrlCheck(
                config.webhook.public_url,
                config.webhook.public_webhook_url,
                self.instance,
                on_change=self._public_url_changed,
            )
            self._tasks["public_url"] = asyncio.create_task(
                self._guard("public_url", self.public_url.run), name="public_url"
            )
        for name, work in (
            ("fleet", self.fleet.run),
            ("probe", self.prober.run),
            ("numbers", self.numbers.run),
            ("pump", self.pump.run),
            ("takeoff", self.takeoff.run),
            ("maintenance", self._maintenance),
            ("watchdog", lambda: self.notifier.watchdog(self._alive)),
        ):
            self._tasks[name] = asyncio.create_task(self._guard(name, work), name=name)
        await store.log_event("agent", "agent started", level="info")
        log.info(
            "agent started: data in %s, webhook on %s:%s, control on %s",
            data_dir,
            config.webhook.host,
            self.webhook.port,
            config.control_socket,
        )
        self.started.set()

    async def shutdown(self) -> None:
        # Those that take work in first, so that everything they took is durable.
        for name in (
            "fleet",
            "probe",
            "takeoff",
            "numbers",
            "maintenance",
            "pump",
            "watchdog",
            "public_url",
        ):
            task = self._tasks.pop(name, None)
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.webhook is not None:
            await self.webhook.stop()
        if self.control is not None:
            await self.control.stop()
        if self.client is not None:
            await self.client.aclose()
        if self.uplink_record is not None:
            await self.uplink_record.flush()
        if self.store is not None:
            with contextlib.suppress(Exception):
                await self.store.log_event("agent", "agent stopped", level="info")
            await self.store.close()
            self.store = None
        if self._data_lock is not None:  # else another agent has the folder: not us to stop
            self._data_lock.release()
            self._data_lock = None
            log.info("agent stopped")

    async def _guard(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        """A part that returns is fine (take-off disabled); one that raises is logged with
        its traceback and ends the agent, so that systemd restarts it clean."""
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the %s task failed", name)
            raise

    def _alive(self) -> bool:
        return all(
            not task.done() or (not task.cancelled() and task.exception() is None)
            for task in self._tasks.values()
        )

    async def _maintenance(self) -> None:
        assert self.store is not None
        loop = asyncio.get_running_loop()
        last_prune = -float("inf")  # loop time: a wall-clock jump neither hastens nor delays
        watch = WallClockWatch(time.time, loop.time)
        while True:
            now = time.time()
            with contextlib.suppress(StoreNotWritable):  # said by the writer's listener
                if shift := watch.jumped():
                    # The multipart timeout counts from each first part's recorded arrival.
                    moved = await self.store.shift_partials(shift)
                    watch.settle(shift)
                    log.warning("wall clock jumped by %+.0f s: %d partial SMS moved", shift, moved)
                await self.store.expire_partials(now)
                if loop.time() - last_prune > PRUNE_INTERVAL:
                    await self.store.prune(now)
                    last_prune = loop.time()
            self.notifier.notify(status=self._status_line())
            await asyncio.sleep(MAINTENANCE_INTERVAL)

    # -- what the parts tell each other ----------------------------------------------------

    def _live_modems(self) -> list[ModemStatus]:
        return self.fleet.modems() if self.fleet is not None else []

    def _modem_changed(self, status: ModemStatus) -> None:
        # Every health check brings a new signal figure: that is for the dashboard. The
        # numbers list, the take-off marks and the state counts look again only when
        # something they are built from changed, which keeps an idle site idle.
        fields = list_fields(status)
        if self._list_fields.get(status.slot) != fields:
            self._list_fields[status.slot] = fields
            if self.numbers is not None:
                self.numbers.notify_change()
            if self.prober is not None:
                self.prober.wake()
            if self.marks is not None and self.fleet is not None:
                self._in_background(self.marks.settle(self.fleet.modems()), "settle take-off marks")
            counts = {state: 0 for state in ModemState}
            for modem in self._live_modems():
                counts[modem.state] += 1
            self.metrics.set_modems(counts)
        self._publish(EventKind.MODEM, status)

    def _store_writable_changed(self, error: StoreNotWritable | None) -> None:
        # Any write counts, an ingest's DiskFull as much as the pump's mark_sent: /healthz
        # and the metric say the store cannot write until one commits again.
        self.metrics.set_store_writable(error is None)
        if error is not None:
            log.error("the store cannot write: %s", error)

    def _public_url_changed(self, status: PublicUrlStatus) -> None:
        up = status.state is PublicUrlState.UP
        assert status.since is not None
        self.metrics.set_public_url(status.url, up, status.since)
        # The site's log keeps each change: `simedge status` reads the last one from the
        # database, and the Log screen shows when the tunnel came and went.
        text = (
            f"public URL reachable: {status.url}"
            if up
            else f"public URL unreachable: {status.problem}"
        )
        if self.store is not None:
            self._in_background(
                self.store.log_event(
                    "public_url", text, level="info" if up else "alarm", at=status.since
                ),
                "log the public URL's state",
            )
        self._publish(EventKind.PUBLIC_URL, status)

    def _in_background(self, work: Coroutine[Any, Any, object], what: str) -> None:
        """Run ``work`` without waiting for it, holding its task until it ends (the loop
        keeps only a weak reference) and logging its failure."""
        task = asyncio.get_running_loop().create_task(work, name=what)
        self._background.add(task)

        def ended(task: asyncio.Task[object]) -> None:
            self._background.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.warning("%s failed: %s", what, task.exception())

        task.add_done_callback(ended)

    def _uplink_status(self) -> UplinkStatus:
        """The uplink now, with the last error of an earlier run if none came since."""
        live = self.uplink.snapshot.to_status()
        return self.uplink_record.status(live) if self.uplink_record is not None else live

    def _uplink_changed(self, snapshot: UplinkSnapshot) -> None:
        if snapshot.condition is not self._uplink_condition:  # not on every upload
            self._uplink_condition = snapshot.condition
            self.metrics.set_uplink_state(str(snapshot.condition))
        status = self._uplink_status()
        if self.uplink_record is not None:
            self.uplink_record.update(snapshot.to_status())
        self._publish(EventKind.UPLINK, status)

    def _message_ready(self, _iccid: str | None) -> None:
        self._activity_stale = True
        self._publish_later(EventKind.MESSAGE)

    def _outbox_outcome(self, _message_id: int, outcome: str) -> None:
        if outcome == "accepted":
            return  # still pending in the store: its "sent" is the news
        self._activity_stale = True
        self._publish_later(EventKind.OUTBOX)

    def _takeoff_marked(self) -> None:
        if self.numbers is not None:
            self.numbers.notify_change()
        self._publish_later(EventKind.TAKEOFF)

    def _publish(self, kind: EventKind, data: Any = None) -> None:
        if self.control is not None:
            self.control.publish(kind, data)
        # One Event per generation: waiters of this one wake, later waiters get a new one.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds, looking again after every change the agent
        publishes (modems, messages, uplink, outbox, take-off). Tests and benchmarks wait
        on this inside ``asyncio.timeout`` instead of sleeping."""
        while not condition():
            await self._changed.wait()

    def _publish_later(self, kind: EventKind) -> None:
        """Events that only say "look again": coalesced, at most one per kind per loop turn,
        so a burst of 100 SMS costs the dashboard one refresh, not 100."""
        if kind in self._coalesced:
            return
        self._coalesced.add(kind)

        def send() -> None:
            self._coalesced.discard(kind)
            self._publish(kind)

        asyncio.get_running_loop().call_soon(send)

    def _status_line(self) -> str:
        modems = self._live_modems()
        ready = sum(1 for m in modems if m.state is ModemState.READY)
        accepted = self.numbers.accepted if self.numbers else None
        online = "numbers list not yet sent" if accepted is None else f"{accepted.count} online"
        return (
            f"{ready}/{len(modems)} modems ready, {online}, uplink {self.uplink.snapshot.condition}"
        )

    # -- the webhook's view ----------------------------------------------------------------

    def online_list(self) -> list[dict[str, Any]]:
        return self.numbers.current_items() if self.numbers is not None else []

    def health(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for modem in self._live_modems():
            counts[str(modem.state)] = counts.get(str(modem.state), 0) + 1
        writable = self.store is None or self.store.writable
        ok = self.started.is_set() and self._alive() and writable
        return {
            "agent": "ok" if ok else "failing",
            "modems": counts,
            "uplink": self.uplink.snapshot.health(),
            "store": {"writable": writable},
            "instance": self.instance,
        }

    # -- the control socket ----------------------------------------------------------------

    # One method per operation of agent.control.protocol (the block rules' are in
    # BlockRuleOps); the server only starts once the store and the fleet exist.

    def _serving(self) -> tuple[Store, Fleet]:
        if self.store is None or self.fleet is None:
            raise ControlError("the agent is starting; try again in a moment")
        return self.store, self.fleet

    @handles(TakeSnapshot)
    async def _op_snapshot(self, _: TakeSnapshot) -> SiteSnapshot:
        self._serving()  # refuses while starting
        return await self._snapshots.get()

    @handles(CheckHealth)
    async def _op_health(self, _: CheckHealth) -> dict[str, Any]:
        return self.health()

    @handles(ListMessages)
    async def _op_messages(self, request: ListMessages) -> tuple[MessageSummary, ...]:
        store, _ = self._serving()
        rows = await store.read(
            lambda: queries.messages(request.limit, request.query, request.before)
        )
        return tuple(rows)

    @handles(ShowMessage)
    async def _op_message(self, request: ShowMessage) -> MessageDetail:
        store, _ = self._serving()
        detail = await store.read(lambda: queries.message_detail(request.message_id))
        if detail is None:
            raise ControlError(f"no message {request.message_id}")
        return detail

    @handles(ListOutbox)
    async def _op_outbox(self, request: ListOutbox) -> tuple[MessageSummary, ...]:
        store, _ = self._serving()
        return tuple(await store.read(lambda: queries.outbox(request.state)))

    @handles(Rescan)
    async def _op_rescan(self, _: Rescan) -> str:
        _, fleet = self._serving()
        fleet.rescan()
        return "rescan started"

    @handles(ResetModem)
    async def _op_reset_modem(self, request: ResetModem) -> str:
        store, fleet = self._serving()
        fleet.command(request.slot, WorkerCommand.RESET)
        await store.log_event(
            "modem", "reset asked from the dashboard", level="info", slot=request.slot
        )
        return f"resetting {request.slot}"

    @handles(SetNumber)
    async def _op_set_number(self, request: SetNumber) -> str:
        return await self._set_number(request.iccid, request.number)

    @handles(Trace)
    async def _op_trace(self, request: Trace) -> str:
        _, fleet = self._serving()
        slot, on = request.slot, request.on
        fleet.command(slot, WorkerCommand.TRACE_ON if on else WorkerCommand.TRACE_OFF)
        status = fleet.statuses.get(slot)
        if status is not None and status.at_port:
            set_port_trace(status.at_port, on)
        return f"raw AT trace {'on' if on else 'off'} for {slot}"

    @handles(Retry)
    async def _op_retry(self, request: Retry) -> str:
        store, _ = self._serving()
        if request.all_dead:
            count = await store.retry_all_dead()
            return f"{count} dead letters queued again"
        assert request.message_id is not None  # Retry says one or the other
        await store.retry(request.message_id)
        return f"message {request.message_id} queued again"

    @handles(TakeoffDone)
    async def _op_takeoff_done(self, request: TakeoffDone) -> str:
        self._serving()  # refuses while starting
        assert self.marks is not None
        await self.marks.done(request.iccid)
        self._takeoff_marked()
        return f"take-off mark of {request.iccid} cleared"

    @handles(ListSims)
    async def _op_sims(self, _: ListSims) -> tuple[SimRow, ...]:
        store, _fleet = self._serving()
        return tuple(await store.read(self.sim_rows))

    @handles(AskBalance)
    async def _op_sim_balance(self, request: AskBalance) -> str:
        _store, fleet = self._serving()
        for status in fleet.modems():
            if request.sim in (status.slot, status.iccid) and status.iccid:
                fleet.command(status.slot, WorkerCommand.CHECK_BALANCE)
                return (
                    f"balance of SIM {status.iccid} in slot {status.slot} asked;"
                    " the answer shows in `simedge sims` and on the dashboard"
                )
        raise ControlError(f"no SIM in a slot named {request.sim!r} or with that ICCID")

    async def _set_number(self, iccid: str, number: str) -> str:
        assert self.store is not None
        assert self.fleet is not None
        await self.store.set_sim_number(iccid, number)
        for status in self.fleet.modems():
            if status.iccid == iccid and status.state is not ModemState.GONE:
                self.fleet.command(status.slot, WorkerCommand.REFRESH_NUMBER)
        await self.store.log_event("sim", f"number set by hand to {number}", iccid=iccid)
        return f"number of {iccid} set to {number}"

    def sim_rows(self) -> list[SimRow]:
        """Every SIM ever seen (a read on the store's thread: see queries.sims)."""
        assert self.fleet is not None
        in_slots = {
            status.iccid: status.slot
            for status in self.fleet.modems()
            if status.iccid and status.state is not ModemState.GONE
        }
        return queries.sims(
            self.clock(),
            in_slots=in_slots,
            low_balance=self.config.sims.low_balance,
            keepalive_days=self.config.sims.keepalive_days,
        )

    async def snapshot(self) -> SiteSnapshot:
        assert self.store is not None
        now = time.time()
        # Its age on the monotonic clock: a wall clock set back must not freeze the figures.
        taken = time.monotonic()
        age = taken - self._activity[0] if self._activity is not None else float("inf")
        if age > ACTIVITY_CACHE or (self._activity_stale and age > ACTIVITY_MIN_AGE):
            self._activity_stale = False
            self._activity = (taken, await self.store.read(lambda: queries.activity(now)))
        elif self._activity_stale and not self._activity_recheck:
            # Too soon to scan again: tell the dashboard to look once more when it is time.
            self._activity_recheck = True

            def recheck() -> None:
                self._activity_recheck = False
                self._publish_later(EventKind.MESSAGE)

            asyncio.get_running_loop().call_later(ACTIVITY_MIN_AGE - age + 0.01, recheck)
        activity, forwarded, latency = self._activity[1]
        counts = await self.store.outbox_counts(now)
        events = await self.store.read(lambda: queries.events(100))
        disk = shutil.disk_usage(self.config.site.data_dir)
        uplink = self._uplink_status()
        return SiteSnapshot(
            taken_at=now,
            modems=tuple(self._live_modems()),
            activity=activity,
            uplink=uplink,
            outbox=counts.with_uplink_error(uplink),
            takeoff=tuple(
                mark.to_status() for mark in (self.marks.open_marks() if self.marks else [])
            ),
            numbers_online=self.numbers.accepted if self.numbers is not None else None,
            clock_synced=_clock_synced(),
            disk_free_bytes=disk.free,
            forwarded_per_hour=forwarded,
            latency_per_hour=latency,
            events=tuple(events),
            public_url=self.public_url.status if self.public_url is not None else None,
        )


def _clock_synced() -> bool | None:
    """Whether systemd-timesyncd (or chrony via timedatectl's flag file) says the clock
    is synchronised; None when nothing says (not on systemd)."""
    flag = Path("/run/systemd/timesync/synchronized")
    if flag.exists():
        return True
    return False if Path("/run/systemd/system").exists() else None
