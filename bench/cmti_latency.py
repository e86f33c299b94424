"""Time from ``+CMTI`` to the PDU handed to the store, with 64 modems under load.

64 emulated modems (profile ``mixed``: SIM800, EC25 and Huawei) each get a stream of SMS
while 64 :class:`~agent.modem.worker.ModemWorker` s read them into a real SQLite store
and run their health checks every 2 s. For every SMS the emulator logs the moment it
printed ``+CMTI`` (``stored`` event); a sink in front of the store logs when the worker
handed the PDU over (``AT+CMGR`` answered) and when the store confirmed it durable. Both
use ``time.monotonic`` in one process, so the difference is the agent's latency plus the
emulator's share of the same event loop (the emulator is not free: on a Pi the modems
are separate hardware, so these figures are an upper bound for the agent's part).

    python -m bench.cmti_latency [SMS_PER_MODEM] [RATE_PER_MODEM]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

from bench import Result

MODEMS = 64


class _TimingSink:
    """The real store, with the hand-over and durable moments of each PDU logged."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.handed: dict[tuple[str, int], deque[tuple[float, float]]] = defaultdict(deque)
        self.count = 0
        self.done = asyncio.Event()
        self.expected = 0

    async def ingest_pdu(self, **fields: Any) -> Any:
        handed = time.monotonic()
        result = await self.store.ingest_pdu(**fields)
        self.handed[(fields["slot"], fields["index"])].append((handed, time.monotonic()))
        self.count += 1
        if self.count >= self.expected:
            self.done.set()
        return result


def _percentiles(values: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return statistics.median(values), cuts[98], max(values)


async def _measure(per_modem: int, rate: float) -> dict[str, Any]:
    from agent.emulate.modems.hub import Hub
    from agent.modem.worker import ModemWorker, WorkerSettings
    from agent.status import ModemState
    from agent.store import Store

    with tempfile.TemporaryDirectory(prefix="simedge-bench-") as directory:
        hub = Hub(Path(directory) / "hub", count=MODEMS, profile="mixed", seed=7, noise_interval=0)
        await hub.start()
        store = await Store.open(Path(directory) / "simedge.db")
        sink = _TimingSink(store)
        settings = WorkerSettings(health_interval=2.0, command_timeout=5.0)
        ready = asyncio.Event()
        ready_slots: set[str] = set()

        def on_status(status: Any) -> None:
            if status.state is ModemState.READY:
                ready_slots.add(status.slot)
                if len(ready_slots) == MODEMS:
                    ready.set()

        workers = []
        for slot in hub.slots:
            at_port = next(str(port.link) for port in slot.ports if port.spec.role == "at")
            workers.append(
                ModemWorker(
                    at_port, slot=slot.usb_path, sink=sink, on_status=on_status, settings=settings
                )
            )
        tasks = [asyncio.create_task(worker.run()) for worker in workers]
        try:
            async with asyncio.timeout(60):
                await ready.wait()
            first_event = len(hub.events)
            sink.expected = MODEMS * per_modem
            started = time.monotonic()
            for index in range(MODEMS):
                hub.inject(index, "+79161234567", "code {n}: 4711", count=per_modem, rate=rate)
            async with asyncio.timeout(120 + per_modem / rate * 2):
                await sink.done.wait()
            took = time.monotonic() - started
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await store.close()
            await hub.stop()

    slot_of = {slot.index: slot.usb_path for slot in hub.slots}
    to_handed: list[float] = []
    to_durable: list[float] = []
    for event in list(hub.events)[first_event:]:
        if event["kind"] != "stored":
            continue
        queue = sink.handed.get((slot_of[event["modem"]], event["index"]))
        if not queue:
            continue
        handed, durable = queue.popleft()
        to_handed.append((handed - event["t"]) * 1000)
        to_durable.append((durable - event["t"]) * 1000)
    return {"handed": to_handed, "durable": to_durable, "took": took}


def run(per_modem: int = 10, rate: float = 2.0) -> list[Result]:
    """Rows for bench/RESULTS.md: p50/p99/max of +CMTI -> handed and -> durable."""
    measured = asyncio.run(_measure(per_modem, rate))
    total = MODEMS * per_modem
    command = f"python -m bench.cmti_latency {per_modem} {rate:g}"
    load = (
        f"{MODEMS} modems (mixed), {per_modem} SMS each at {rate:g}/s per modem "
        f"({total} SMS, {total / measured['took']:.0f} SMS/s), health every 2 s"
    )
    results = []
    for key, what in (("handed", "handed to the store"), ("durable", "durable in SQLite")):
        values = measured[key]
        if len(values) < 2:
            continue
        p50, p99, worst = _percentiles(values)
        for label, value in (("p50", p50), ("p99", p99), ("max", worst)):
            results.append(
                Result(
                    name=f"+CMTI to PDU {what}, {label}",
                    value=value,
                    unit="ms",
                    command=command,
                    note=f"{load}; {len(values)} samples",
                )
            )
    return results


if __name__ == "__main__":
    arguments = sys.argv[1:]
    rows = run(
        int(arguments[0]) if arguments else 10, float(arguments[1]) if len(arguments) > 1 else 2.0
    )
    for result in rows:
        print(f"{result.name}: {result.cell()} {result.unit} ({result.note})")
