"""The modem side of an SMS alone: the event loop's CPU and Python calls per SMS.

Issue 19 cuts the agent's CPU per SMS; the end-to-end bench mixes the modem side with the
upload and the store's writer. Here only the modem side runs: a hub of emulated SIM800
modems in its own process (:func:`bench.site.start_hub`, as the other benches start it),
and in this process one :class:`~agent.modem.worker.ModemWorker` per modem reading into a
real :class:`~agent.store.Store` (no uplink). Per SMS that is ``+CMTI``, ``AT+CMGR``, the
decode and the hand-off to the store's writer thread, the commit, ``AT+CMGD``.

SMS arrive at a steady rate over all modems (one control request per modem, a modem every
1/rate s, the hub spacing that modem's SMS), and the figures are over the window from the
first request to the last SMS stored: this process's main thread CPU, user and system
(``getrusage(RUSAGE_THREAD)``: the event loop, not the writer thread), and its context
switches, per SMS; with ``--calls`` the Python calls per SMS of that thread (cProfile,
which slows it: CPU figures of such a run are not comparable). The window
also holds the health checks that fall in it (one every 30 s per modem).

    python -m bench.modem_path_bench [--modems 64] [--rate 20] [--seconds 20] [--calls [--dump F]]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.cli import run_on_event_loop
from bench.site import SENDER, at_ports, start_hub


class _CountingSink:
    """The real store, counting the PDUs it made durable (to know when all are in)."""

    def __init__(self, store: Any, expected: int) -> None:
        self.store = store
        self.expected = expected
        self.count = 0
        self.done = asyncio.Event()

    async def ingest_pdu(self, **fields: Any) -> Any:
        result = await self.store.ingest_pdu(**fields)
        self.count += 1
        if self.count >= self.expected:
            self.done.set()
        return result


async def measure(
    modems: int, rate: float, seconds: float, calls: bool, dump: Path | None = None
) -> str:
    from agent.modem.worker import ModemWorker
    from agent.status import ModemState
    from agent.store import Store

    with tempfile.TemporaryDirectory(prefix="simedge-bench-") as directory:
        folder = Path(directory)
        hub, client = await start_hub(folder, modems, seed=31)
        store = await Store.open(folder / "simedge.db")
        total = max(1, round(rate * seconds) // modems) * modems
        sink = _CountingSink(store, total)
        ready: set[str] = set()
        all_ready = asyncio.Event()

        def on_status(status: Any) -> None:
            if status.state is ModemState.READY:
                ready.add(status.slot)
                if len(ready) == modems:
                    all_ready.set()

        workers = [
            ModemWorker(port, slot=f"slot{index}", sink=sink, on_status=on_status)
            for index, port in enumerate(await at_ports(client))
        ]
        tasks = [asyncio.create_task(worker.run()) for worker in workers]
        profile = cProfile.Profile() if calls else None
        try:
            async with asyncio.timeout(120):
                await all_ready.wait()
            await asyncio.sleep(2.0)  # the first health checks and sweeps end
            before, started = resource.getrusage(resource.RUSAGE_THREAD), time.monotonic()
            if profile is not None:
                profile.enable()
            # One request per modem, a modem every 1/rate s, each spacing its own SMS
            # modems/rate s apart: a steady stream, not bursts of all modems at once.
            per_modem = total // modems
            for index in range(modems):
                await client.inject(
                    index,
                    SENDER,
                    f"path {index} {{n}} code 4711",
                    count=per_modem,
                    rate=rate / modems,
                )
                await asyncio.sleep(1 / rate)
            async with asyncio.timeout(60 + seconds):
                await sink.done.wait()
            if profile is not None:
                profile.disable()
            after, took = resource.getrusage(resource.RUSAGE_THREAD), time.monotonic() - started
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await store.close()
            await client.close()
            await hub.stop()
    user = after.ru_utime - before.ru_utime
    system = after.ru_stime - before.ru_stime
    voluntary = after.ru_nvcsw - before.ru_nvcsw
    involuntary = after.ru_nivcsw - before.ru_nivcsw
    lines = [
        f"{modems} SIM800 modems, {total} SMS at {rate:g}/s, all stored in {took:.1f} s",
        f"event loop thread CPU per SMS: {(user + system) / total * 1e3:.3f} ms "
        f"(user {user / total * 1e3:.3f}, system {system / total * 1e3:.3f})"
        + (" (under cProfile)" if profile is not None else ""),
        f"event loop thread context switches per SMS: voluntary {voluntary / total:.1f}, "
        f"involuntary {involuntary / total:.1f}",
    ]
    if profile is not None:
        stats = pstats.Stats(profile)
        lines.append(f"Python calls per SMS: {stats.total_calls / total:.0f}")  # type: ignore[attr-defined]
        if dump is not None:
            stats.dump_stats(dump)
            lines.append(f"profile written to {dump} (pstats)")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.modem_path_bench", description=__doc__)
    parser.add_argument("--modems", type=int, default=64)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--calls", action="store_true", help="count Python calls (cProfile)")
    parser.add_argument("--dump", type=Path, help="with --calls: write the profile here")
    args = parser.parse_args(argv)
    print(run_on_event_loop(measure(args.modems, args.rate, args.seconds, args.calls, args.dump)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
