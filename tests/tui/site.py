"""A stand-in for the agent's control handler, serving a site built from agent.status.

It answers the control ops with the shapes of :mod:`agent.status` over a real
ControlServer on a real unix socket, records the actions it was asked for, and applies
their effect to its state and publishes the event the agent would, so a test sees an
action's effect arrive on screen the way it would from the agent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.control.server import ControlServer
from agent.errors import ControlError
from agent.status import (
    AttemptRecord,
    LogEvent,
    MessageDetail,
    MessageSummary,
    ModemState,
    ModemStatus,
    NumbersOnline,
    NumberSource,
    OutboxStatus,
    PduRecord,
    SimRow,
    SimState,
    SimStayRecord,
    SiteSnapshot,
    SlotActivity,
    TakeoffMark,
    UplinkState,
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
        uplink=UplinkStatus(state=UplinkState.OK, last_success_at=now - 12),
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
    """The agent's control handler, reduced to a site held in memory."""

    def __init__(self, snapshot: SiteSnapshot, messages: list[MessageSummary]) -> None:
        self.snapshot = snapshot
        self.messages = messages
        self.sims = demo_sims(snapshot)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.server: ControlServer | None = None

    async def handle(self, op: str, arguments: dict[str, Any]) -> Any:
        if op not in ("snapshot", "messages", "message", "outbox", "sims"):
            self.calls.append((op, arguments))
        if op == "snapshot":
            return self.snapshot.to_json()
        if op == "sims":
            return [row.to_json() for row in self.sims]
        if op == "messages":
            query = arguments.get("query", "")
            found = [m for m in self.messages if query in m.sender or query in (m.number or "")]
            return [dataclasses.asdict(m) for m in found[: arguments.get("limit", 200)]]
        if op == "message":
            message = next((m for m in self.messages if m.id == arguments["message_id"]), None)
            if message is None:
                raise ControlError(f"no message {arguments['id']}")
            return MessageDetail(
                message=message,
                pdus=(PduRecord("07919730071111F1040B919701", NOW - 91, "SM", 3, "ok"),),
                attempts=(AttemptRecord(NOW - 80, "dead", 400, "WRONG_PARAMS"),),
            ).to_json()
        if op == "outbox":
            return [dataclasses.asdict(m) for m in self.messages if m.state != "sent"]
        if op == "set_number":
            self.update_modem(
                lambda m: m.iccid == arguments["iccid"],
                number=arguments["number"],
                number_source=NumberSource.MANUAL,
            )
        if op == "takeoff_done":
            marks = tuple(t for t in self.snapshot.takeoff if t.iccid != arguments["iccid"])
            self.snapshot = dataclasses.replace(self.snapshot, takeoff=marks)
            self.publish("takeoff", None)
        if op == "retry":
            self.outbox(dead=0, pending=self.snapshot.outbox.pending + 2)
        return {"ok": True}

    def update_modem(self, which: Any, **changes: Any) -> None:
        modems = []
        for modem in self.snapshot.modems:
            if which(modem):
                modem = dataclasses.replace(modem, **changes)
                self.publish("modem", modem.to_json())
            modems.append(modem)
        self.snapshot = dataclasses.replace(self.snapshot, modems=tuple(modems))

    def outbox(self, **changes: Any) -> None:
        outbox = dataclasses.replace(self.snapshot.outbox, **changes)
        self.snapshot = dataclasses.replace(self.snapshot, outbox=outbox)
        self.publish("outbox", dataclasses.asdict(outbox))

    def receive(self, message: MessageSummary) -> None:
        """A new SMS, as the agent publishes it."""
        self.messages.insert(0, message)
        self.publish("message", dataclasses.asdict(message))

    def publish(self, kind: str, data: Any) -> None:
        assert self.server is not None
        self.server.publish(kind, data)


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
