"""CPU use of 128 emulated modems sitting idle in one hub process.

The hub must stay cheap when nothing happens (goal: under 5% of one core for 128 modems):
pty masters are watched with ``loop.add_reader`` and the only timer is the shared noise
tick. Measured as process CPU time (user + system, ``resource.getrusage``) over a window
of wall time after start-up, for the quietest profile (sim800: no noise at all) and the
noisiest (ec25: four ptys per modem, DIAG and NMEA output on every tick).

    python -m bench.emulator_idle [SECONDS]
"""

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
import time

from bench import Result

MODEMS = 128
PROFILES = ("sim800", "ec25", "mixed")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(profile: str, seconds: float) -> tuple[float, int]:
    from agent.emulate.modems.hub import Hub

    with tempfile.TemporaryDirectory(prefix="simedge-bench-") as directory:
        hub = Hub(directory, count=MODEMS, profile=profile, seed=1)
        await hub.start()
        try:
            await asyncio.sleep(1.0)  # let the boot URCs and first timers pass
            cpu, wall = _cpu_seconds(), time.monotonic()
            await asyncio.sleep(seconds)
            used = _cpu_seconds() - cpu
            elapsed = time.monotonic() - wall
            ports = sum(len(slot.ports) for slot in hub.slots)
        finally:
            await hub.stop()
    return 100.0 * used / elapsed, ports


def run(seconds: float = 10.0) -> list[Result]:
    results = []
    for profile in PROFILES:
        percent, ports = asyncio.run(_measure(profile, seconds))
        results.append(
            Result(
                name=f"{MODEMS} idle modems, profile {profile} ({ports} ptys)",
                value=percent,
                unit="% of one core",
                command=f"python -m bench.emulator_idle {seconds:g}",
                note="goal < 5",
            )
        )
    return results


if __name__ == "__main__":
    for result in run(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0):
        print(f"{result.name}: {result.cell()} {result.unit} ({result.note})")
