"""A stand-in agent for the dashboard's tests: a site held in memory, served by the
production :class:`~agent.control.server.ControlServer`.

Built the way zigpy-znp builds its fake from the production class: the stand-in is only
a set of handlers (``@handles``, one per operation, as the agent's) over a fake site
state; parsing requests, encoding answers and events, the bounds, all of it is the real
server and the one schema of :mod:`agent.control.protocol`. So the stand-in cannot send
what the agent never would: an event with data the schema says it has not, an answer of
another shape. It records the actions it was asked for (the request objects), applies
their effect to its state and publishes the event the agent would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.control.protocol import (
    AddBlockRule,
    AskBalance,
    CheckHealth,
    EventKind,
    ListBlockRules,
    ListMessages,
    ListOutbox,
    ListSims,
    PreviewBlockRule,
    RemoveBlockRule,
    Request,
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
from agent.control.server import ControlServer
from agent.errors import ControlError
from agent.status import (
    AttemptRecord,
    BlockRuleStatus,
    BlockRuleTrial,
    LogEvent,
    MessageDetail,
    MessageSummary,
    ModemState,
    ModemStatus,
    NumbersOnline,
    NumberSource,
    OutboxStatus,
    PduRecord,
    RuleSource,
    SimRow,
    SimState,
    SimStayRecord,
    SiteSnapshot,
    SlotActivity,
    TakeoffMark,
    UplinkCondition,
    UplinkStatus,
)

NOW = 1_780_000_000.0  # a fixed "now" (2026-05-28 20:26:40 UTC) for stable screens
HOSTILE = "[bold red]PWNED[/] \x1b[2J\x1b]0;owned\x07 [link=http://x]y[/link] \x9b31m end"


def demo_site(now: float = NOW, slots: int = 8) -> SiteSnapshot:
    """A site of ``slots`` modems in every state a person meets."""
    modems = []
    activity = {}
    states = [
        (ModemState.READY, SimState.READY, None),
        (ModemState.READY, SimState.READY, None),
        (ModemState.RECOVERING, SimState.READY, "no answer to AT for 15 s"),
        (ModemState.READY, SimState.ABSENT, None),
        (ModemState.FAILED, SimState.UNKNOWN, "port gone after reset (CME 10)"),
        (ModemState.READY, SimState.LOCKED, "SIM PIN required"),
        (ModemState.GONE, SimState.UNKNOWN, None),
        (ModemState.READY, SimState.READY, None),
    ]
    for index in range(slots):
        state, sim_state, fault = states[index % len(states)]
        slot = f"1-1.{index + 1}"
        has_sim = sim_state == SimState.READY
        modems.append(
            ModemStatus(
                slot=slot,
                label=f"A{index + 1}",
                ports=(f"/dev/ttyUSB{index * 4 + 2}",),
                at_port=f"/dev/ttyUSB{index * 4 + 2}",
                state=state,
                fault=fault,
                manufacturer="Quectel",
                model="EC25",
                imei=f"86{index:013d}",
                sim_state=sim_state,
                iccid=f"897010{index:013d}" if has_sim else None,
                imsi=f"25002{index:010d}" if has_sim else None,
                number=f"+7916123450{index}" if has_sim else None,
                number_source=NumberSource.USSD if has_sim else NumberSource.UNKNOWN,
                operator="25002" if has_sim else None,
                operator_name="MegaFon" if has_sim else None,
                signal_dbm=-60 - 8 * index,
                signal_bars=max(0, 4 - index // 2),
                registration="home" if has_sim else "searching",
                registered=has_sim,
                updated_at=now,
            )
        )
        activity[slot] = SlotActivity(
            sms_today=3 * index if has_sim else 0,
            last_sms_at=now - 75 * (index + 1) if has_sim else None,
            sms_per_hour=tuple((h * (index + 1)) % 7 for h in range(24)),
            signal_per_hour=tuple(-60 - 8 * index - (h % 5) for h in range(24)),
        )
    return SiteSnapshot(
        taken_at=now,
        modems=tuple(modems),
        activity=activity,
        uplink=UplinkStatus(state=UplinkCondition.OK, last_success_at=now - 12),
        outbox=OutboxStatus(pending=3, backing_off=1, dead=2, last_success_at=now - 12),
        takeoff=(TakeoffMark("8970100000000000001", "1-1.2", "+79161234501", 75.5, now - 3600),),
        numbers_online=NumbersOnline(count=4, accepted_at=NOW - 30),
        clock_synced=True,
        disk_free_bytes=12_500_000_000,
        forwarded_per_hour=tuple((h * 5) % 23 for h in range(24)),
        latency_per_hour=tuple(1.0 + (h % 4) * 0.5 for h in range(24)),
        events=(
            LogEvent(now - 300, "info", "modem", "modem ready", slot="1-1.1"),
            LogEvent(now - 120, "warning", "modem", "no answer to AT: resetting", slot="1-1.3"),
            LogEvent(now - 60, "alarm", "uplink", "addMessage answered 401: paused"),
        ),
    )


def demo_messages(now: float = NOW) -> list[MessageSummary]:
    """Newest first, as the agent answers ``messages``."""
    return [
        MessageSummary(
            id=3,
            sender="VKcom",
            text="Your code: 4821",
            state="pending",
            received_at=now - 40,
            slot="1-1.1",
            iccid="8970100000000000000",
            number="+79161234500",
            attempts=1,
            next_attempt_at=now + 300,
            last_error="HTTP 503",
        ),
        MessageSummary(
            id=2,
            sender="+79991112233",
            text=HOSTILE,
            state="dead",
            received_at=now - 90,
            slot="1-1.2",
            iccid="8970100000000000001",
            number="+79161234501",
            attempts=5,
            last_error="400 WRONG_PARAMS: rejected",
        ),
        MessageSummary(
            id=1,
            sender="Google",
            text="G-123456 is your code",
            state="sent",
            received_at=now - 600,
            slot="1-1.1",
            iccid="8970100000000000000",
            number="+79161234500",
            sent_at=now - 598,
        ),
    ]


def demo_sims(snapshot: SiteSnapshot, now: float = NOW) -> list[SimRow]:
    """A row for each SIM of the demo site's modems, and one swapped out a week ago: one
    with a low balance, one kept alive, one whose deadline passed, one never answered."""
    day = 86400.0
    rows = []
    for index, modem in enumerate(m for m in snapshot.modems if m.iccid):
        rows.append(
            SimRow(
                iccid=modem.iccid or "",
                slot=modem.slot,
                in_slot=True,
                number=modem.number,
                number_source=str(modem.number_source),
                operator=modem.operator,
                first_seen=now - 40 * day,
                last_seen=now - 5,
                balance=(None, 2.5, 187.4)[index % 3],
                balance_currency=(None, "RUB", "RUB")[index % 3],
                balance_at=None if index % 3 == 0 else now - 3600,
                balance_low=index % 3 == 1,
                balance_error="no amount in the answer to *100#" if index % 3 == 0 else None,
                active_until=now + 21 * day if index != 2 else now - day,
                keepalive_at=now - 9 * day,
                sms_today=3 * index,
                sms_7d=20 + index,
                sms_all=400 + 10 * index,
                earned=12.5 * index if index else None,
                calls=index % 4,
                last_caller=f"+7495123456{index}" if index % 4 else None,
                last_call_at=now - 600 * index if index % 4 else None,
                probe_state="failed" if modem.number is None else None,
                probe_error="no SMS came in 600 s" if modem.number is None else None,
                stays=(SimStayRecord(modem.slot, now - 40 * day, now - 5),),
            )
        )
    rows.append(
        SimRow(
            iccid="8970102000000000099",
            slot="1-1.4",
            in_slot=False,
            number="+79260000099",
            number_source="cnum",
            operator="25002",
            first_seen=now - 90 * day,
            last_seen=now - 7 * day,
            balance=0.0,
            balance_currency="RUB",
            balance_at=now - 8 * day,
            sms_7d=0,
            sms_all=1250,
            earned=55.0,
            stays=(
                SimStayRecord("1-1.2", now - 90 * day, now - 30 * day),
                SimStayRecord("1-1.4", now - 29 * day, now - 7 * day),
            ),
        )
    )
    return rows


class SiteStandIn:
    """The agent's control handlers, reduced to a site held in memory."""

    def __init__(self, snapshot: SiteSnapshot, messages: list[MessageSummary]) -> None:
        self.snapshot = snapshot
        self.messages = messages
        self.rules: list[BlockRuleStatus] = []
        self.sims = demo_sims(snapshot)
        self.calls: list[Request[Any]] = []  # the actions asked, in order (not the reads)
        self.server: ControlServer | None = None

    # The reads ---------------------------------------------------------------------------

    @handles(TakeSnapshot)
    async def take_snapshot(self, _: TakeSnapshot) -> SiteSnapshot:
        return self.snapshot

    @handles(CheckHealth)
    async def check_health(self, _: CheckHealth) -> dict[str, Any]:
        return {"agent": "ok", "uplink": {"state": str(self.snapshot.uplink.state)}}

    @handles(ListMessages)
    async def list_messages(self, request: ListMessages) -> tuple[MessageSummary, ...]:
        query = request.query or ""
        found = [m for m in self.messages if query in m.sender or query in (m.number or "")]
        return tuple(found[: request.limit])

    @handles(ShowMessage)
    async def show_message(self, request: ShowMessage) -> MessageDetail:
        message = next((m for m in self.messages if m.id == request.message_id), None)
        if message is None:
            raise ControlError(f"no message {request.message_id}")
        return MessageDetail(
            message=message,
            pdus=(PduRecord("07919730071111F1040B919701", NOW - 91, "SM", 3, "ok"),),
            attempts=(AttemptRecord(NOW - 80, "dead", 400, "WRONG_PARAMS"),),
        )

    @handles(ListOutbox)
    async def list_outbox(self, _: ListOutbox) -> tuple[MessageSummary, ...]:
        return tuple(m for m in self.messages if m.state != "sent")

    @handles(ListBlockRules)
    async def list_block_rules(self, _: ListBlockRules) -> tuple[BlockRuleStatus, ...]:
        return tuple(self.rules)

    @handles(PreviewBlockRule)
    async def preview_block_rule(self, request: PreviewBlockRule) -> BlockRuleTrial:
        withheld = sum(1 for m in self.messages if _matches(request, m))
        checked = len(self.messages)
        return BlockRuleTrial(
            withheld=withheld,
            checked=checked,
            timed_out=0,
            stored=checked,
            withholds_most=withheld * 2 > checked,
            summary=f"would have withheld {withheld} of the last {checked} SMS",
        )

    @handles(ListSims)
    async def list_sims(self, _: ListSims) -> tuple[SimRow, ...]:
        return tuple(self.sims)

    # The actions -------------------------------------------------------------------------

    @handles(AskBalance)
    async def ask_balance(self, request: AskBalance) -> str:
        self.calls.append(request)
        return f"balance of SIM {request.sim} asked"

    @handles(Rescan)
    async def rescan(self, request: Rescan) -> str:
        self.calls.append(request)
        return "rescan started"

    @handles(ResetModem)
    async def reset_modem(self, request: ResetModem) -> str:
        self.calls.append(request)
        return f"resetting {request.slot}"

    @handles(Trace)
    async def trace(self, request: Trace) -> str:
        self.calls.append(request)
        return f"raw AT trace {'on' if request.on else 'off'} for {request.slot}"

    @handles(SetNumber)
    async def set_number(self, request: SetNumber) -> str:
        self.calls.append(request)
        self.update_modem(
            lambda m: m.iccid == request.iccid,
            number=request.number,
            number_source=NumberSource.MANUAL,
        )
        return f"number of {request.iccid} set to {request.number}"

    @handles(TakeoffDone)
    async def takeoff_done(self, request: TakeoffDone) -> str:
        self.calls.append(request)
        marks = tuple(t for t in self.snapshot.takeoff if t.iccid != request.iccid)
        self.snapshot = dataclasses.replace(self.snapshot, takeoff=marks)
        self.publish(EventKind.TAKEOFF)
        return f"take-off mark of {request.iccid} cleared"

    @handles(Retry)
    async def retry(self, request: Retry) -> str:
        self.calls.append(request)
        self.outbox(dead=0, pending=self.snapshot.outbox.pending + 2)
        return "queued again"

    @handles(AddBlockRule)
    async def add_block_rule(self, request: AddBlockRule) -> str:
        self.calls.append(request)
        rule = BlockRuleStatus(request.name, RuleSource.ADDED, request.sender, request.text)
        self.rules.append(rule)
        return f"block rule {request.name} added"

    @handles(RemoveBlockRule)
    async def remove_block_rule(self, request: RemoveBlockRule) -> str:
        self.calls.append(request)
        self.rules = [rule for rule in self.rules if rule.name != request.name]
        return f"block rule {request.name} removed"

    # What happens on the site, published as the agent would ------------------------------

    def update_modem(self, which: Callable[[ModemStatus], bool], **changes: Any) -> None:
        modems = []
        for modem in self.snapshot.modems:
            if which(modem):
                modem = dataclasses.replace(modem, **changes)
                self.publish(EventKind.MODEM, modem)
            modems.append(modem)
        self.snapshot = dataclasses.replace(self.snapshot, modems=tuple(modems))

    def outbox(self, **changes: Any) -> None:
        outbox = dataclasses.replace(self.snapshot.outbox, **changes)
        self.snapshot = dataclasses.replace(self.snapshot, outbox=outbox)
        self.publish(EventKind.OUTBOX)

    def receive(self, message: MessageSummary) -> None:
        """A new SMS: stored, counted in its slot's activity, and said as the agent says
        it (a ``message`` event without data)."""
        self.messages.insert(0, message)
        if message.slot is not None:
            activity = self.snapshot.activity.get(message.slot, SlotActivity())
            activity = dataclasses.replace(activity, sms_today=activity.sms_today + 1)
            counts = {**self.snapshot.activity, message.slot: activity}
            self.snapshot = dataclasses.replace(self.snapshot, activity=counts)
        self.publish(EventKind.MESSAGE)

    def publish(self, kind: EventKind, data: Any = None) -> None:
        assert self.server is not None
        self.server.publish(kind, data)


def _matches(rule: PreviewBlockRule, message: MessageSummary) -> bool:
    return bool(
        (rule.sender or rule.text)
        and (rule.sender is None or re.search(rule.sender, message.sender))
        and (rule.text is None or re.search(rule.text, message.text))
    )


async def start_site(socket_path: Path, stand_in: SiteStandIn) -> ControlServer:
    server = ControlServer(socket_path, stand_in)
    stand_in.server = server
    await server.start()
    return server


@contextmanager
def site_in_thread(socket_path: Path, stand_in: SiteStandIn) -> Iterator[asyncio.AbstractEventLoop]:
    """The stand-in served from its own event loop in a thread, for tests whose app runs
    its own loop (snapshot tests) or in another process (tmux)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(start_site(socket_path, stand_in), loop).result(10)
    try:
        yield loop
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
