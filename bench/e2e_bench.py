"""End to end: an SMS injected at an emulated modem until OnlineSim's addMessage has it.

Three processes as on a site (see :mod:`bench.site`): 64 emulated SIM800 modems, the
OnlineSim stand-in, and ``simedge run`` with an operator's configuration. SMS are injected
at a steady aggregate rate, round-robin over the modems; each one's latency is the hub's
``injected`` stamp to the stand-in's receipt of its addMessage, so it covers ``+CMTI``,
``AT+CMGR``, the SQLite commit, ``AT+CMGD`` and the HTTP upload. Then a rate ramp finds
the highest rate at which p99 stays under 1 s. That ceiling is the site's on this
machine: the bench's injector, the hub, the stand-in and the agent share its cores.

Durations keep ``make bench`` bounded; lengthen them with ``SIMEDGE_BENCH_E2E_SECONDS``
(steady part, default 120) and ``SIMEDGE_BENCH_RAMP_SECONDS`` (each ramp step, default 30: one
round of health checks, whose burst sets p99, falls in every step). For a quick look at the
CPU per SMS (issue 19), ``SIMEDGE_BENCH_RAMP_SECONDS=0`` skips the ramp:

    SIMEDGE_BENCH_E2E_SECONDS=60 SIMEDGE_BENCH_RAMP_SECONDS=0 python -m bench.e2e_bench

    python -m bench e2e_bench
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench import Result
from bench.site import (
    SimedgeSite,
    cpu_seconds,
    percentiles,
    rss_mib,
    simedge_load,
    simedge_site,
)

MODEMS = 64
RATE = 20.0
RAMP = (40.0, 80.0, 160.0, 240.0, 320.0)  # after the steady part at RATE
P99_GOAL_MS = 100.0  # at RATE, on this machine
P99_LIMIT_MS = 1000.0  # the ramp's: the highest rate that stays under it
COMMAND = "python -m bench e2e_bench"


def _seconds(variable: str, default: float) -> float:
    return float(os.environ.get(variable, default))


@dataclass(frozen=True)
class Steady:
    """The agent under a steady stream: what each SMS took, and what the agent spent."""

    latencies_ms: list[float]
    sent: int
    cpu_per_minute: float
    cpu_per_sms_ms: float
    rss_mib: float


async def steady_load(site: SimedgeSite, seconds: float) -> Steady:
    """``RATE`` SMS/s over every modem of ``site`` for ``seconds``, each one waited for."""
    cpu_before = cpu_seconds(site.agent.pid)
    latencies, cpu, sent = await simedge_load(site, MODEMS, RATE, seconds, "steady")
    cpu_per_sms_ms = (cpu_seconds(site.agent.pid) - cpu_before) / max(sent, 1) * 1000
    return Steady(latencies, sent, cpu, cpu_per_sms_ms, rss_mib(site.agent.pid))


def steady_rows(
    steady: Steady, seconds: float, command: str, *, p99_goal_ms: float, condition: str = ""
) -> list[Result]:
    """Rows of a :func:`steady_load`: p50, p99, max, CPU per minute and per SMS, RSS.
    ``condition``: how the agent ran, added to every note (the Pi-sized run's limit)."""
    load = (
        f"{MODEMS} SIM800 modems, {RATE:g} SMS/s for {seconds:g} s "
        f"({len(steady.latencies_ms)}/{steady.sent} delivered)"
    ) + (f"; {condition}" if condition else "")
    results = [
        Result(
            f"injected -> addMessage at the stand-in, {label}", value, "ms", command, load + goal
        )
        for label, value, goal in zip(
            ("p50", "p99", "max"),
            percentiles(steady.latencies_ms),
            ("", f"; goal p99 < {p99_goal_ms:g}", ""),
            strict=True,
        )
    ]
    results.append(
        Result("agent CPU under that load", steady.cpu_per_minute, "CPU s/min", command, load)
    )
    results.append(
        Result(
            "agent CPU per SMS under that load",
            steady.cpu_per_sms_ms,
            "ms",
            command,
            load + "; goal <= 1.6 (issue 19)",
        )
    )
    results.append(
        Result("agent RSS after that load", steady.rss_mib, "MiB", command, load + "; goal < 60")
    )
    return results


async def _measure(steady_seconds: float, step: float) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="simedge-e2e-") as directory:
        async with simedge_site(Path(directory), MODEMS, seed=11) as site:
            steady = await steady_load(site, steady_seconds)
            results = steady_rows(steady, steady_seconds, COMMAND, p99_goal_ms=P99_GOAL_MS)
            latencies, sent = steady.latencies_ms, steady.sent
            if step <= 0:
                return results  # the ramp skipped: no ceiling row rather than a false one
            steady_p99 = percentiles(latencies)[1]
            kept_up = steady_p99 < P99_LIMIT_MS and len(latencies) == sent
            best = RATE if kept_up else 0.0
            steps = [f"{RATE:g}/s: the steady part, p99 {steady_p99:.0f} ms"]
            for rate in RAMP if kept_up else ():
                latencies, _cpu, sent = await simedge_load(
                    site, MODEMS, rate, step, f"ramp{rate:g}"
                )
                p50, p99, _worst = percentiles(latencies)
                steps.append(
                    f"{rate:g}/s: p50 {p50:.0f}, p99 {p99:.0f} ms, {len(latencies)}/{sent}"
                )
                if p99 >= P99_LIMIT_MS or len(latencies) < sent:
                    break
                best = rate
            results.append(
                Result(
                    "highest sustained rate with p99 < 1 s",
                    best,
                    "SMS/s",
                    COMMAND,
                    f"ramp of {step:g} s steps over {MODEMS} modems after the steady part, "
                    "stops at the first miss: " + "; ".join(steps),
                )
            )
    return results


def run() -> list[Result]:
    """Rows for bench/RESULTS.md."""
    return asyncio.run(
        _measure(
            _seconds("SIMEDGE_BENCH_E2E_SECONDS", 120), _seconds("SIMEDGE_BENCH_RAMP_SECONDS", 30)
        )
    )


if __name__ == "__main__":
    for result in run():
        print(f"{result.name}: {result.cell()} {result.unit} ({result.note})")
