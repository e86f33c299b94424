"""A Pi-sized run: the agent held to a quarter of one core, as a Raspberry Pi would hold it.

A Pi's core is several times slower than this machine's and is never quiet, so the agent
runs in a cgroup allowed 0.25 of one core (:mod:`bench.cpulimit`: cgroup v1
``cpu.cfs_quota_us`` 25000 of ``cpu.cfs_period_us`` 100000, or v2 ``cpu.max``). Only the
agent goes in, or, for the backlog, the process running the outbox pump: the emulated
modems and the OnlineSim stand-in stay outside, since they stand for hardware and for
OnlineSim's servers. The rows are those of the other benches, measured by their code:

- at rest with 64 modems (``bench.idle_bench``), its CPU as a share of the limit (goal
  < 1 %);
- end to end at 20 SMS/s on 64 modems (``bench.e2e_bench``'s steady part; goal p99 <
  250 ms), with the agent's CPU per minute and per SMS;
- a backlog drained to the stand-in (``bench.backlog_bench``; goal > 150 messages/s);
- bursts (``bench.burst_bench``, see :func:`burst_rows`).

Every row's note says the limit and how often the kernel held the process back in that
row's window (``cpu.stat``'s ``nr_throttled``). Without root or a cpu controller nothing is
measured: one row says why (a run without the limit would not be Pi-sized).

Durations (about 5 minutes with the defaults, the burst rows apart):
``SIMEDGE_BENCH_PI_IDLE_SECONDS`` (default 60), ``SIMEDGE_BENCH_PI_E2E_SECONDS`` (default
60), ``SIMEDGE_BENCH_PI_BACKLOG`` (messages, default 10,000).

    python -m bench pi_bench
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
import time
from pathlib import Path

from bench import Result, backlog_bench, burst_bench, e2e_bench, idle_bench
from bench.cpulimit import DEFAULT_FRACTION, CpuLimit, cpu_limit
from bench.site import simedge_site

MODEMS = e2e_bench.MODEMS
SEED = 19
P99_GOAL_MS = 250.0
IDLE_GOAL_PERCENT = 1.0  # of the limit
DRAIN_GOAL = 150.0  # messages/s
COMMAND = "python -m bench pi_bench"


def _setting(variable: str, default: float) -> float:
    return float(os.environ.get(variable, default))


def _noted(results: list[Result], note: str) -> list[Result]:
    """``results`` with ``note`` (the limit and its throttling) added to every note."""
    return [
        dataclasses.replace(result, note=f"{result.note}; {note}" if result.note else note)
        for result in results
    ]


async def _site_rows(limit: CpuLimit, idle_seconds: float, load_seconds: float) -> list[Result]:
    """Start-up, rest and a steady stream on one site whose agent is under ``limit``."""
    agent_started: list[float] = []

    def limited(pid: int) -> None:
        limit.add(pid)
        agent_started.append(time.monotonic())

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="simedge-pi-") as directory:
        async with simedge_site(Path(directory), MODEMS, SEED, on_agent_started=limited) as site:
            results += _noted(
                [
                    Result(
                        f"agent start to {MODEMS} numbers online at the stand-in",
                        time.monotonic() - agent_started[0],
                        "s",
                        COMMAND,
                        f"{MODEMS} SIM800 modems, a fresh data folder",
                    )
                ],
                limit.describe("agent", limit.throttling()),
            )

            before = limit.throttling()
            per_minute, _rss = await idle_bench.at_rest(site, idle_seconds)
            share = per_minute / 60 / limit.fraction * 100
            results += _noted(
                [
                    Result(
                        f"agent CPU idle, {MODEMS} modems, share of the limit",
                        share,
                        "% of the limit",
                        COMMAND,
                        f"{idle_bench.window(MODEMS, idle_seconds)}; {per_minute:.2f} CPU s/min"
                        f"; goal < {IDLE_GOAL_PERCENT:g} % of the limit",
                    )
                ],
                limit.describe("agent", limit.throttling() - before),
            )

            before = limit.throttling()
            steady = await e2e_bench.steady_load(site, load_seconds)
            results += _noted(
                e2e_bench.steady_rows(steady, load_seconds, COMMAND, p99_goal_ms=P99_GOAL_MS),
                limit.describe("agent", limit.throttling() - before),
            )
    return results


def _backlog_rows(limit: CpuLimit, count: int) -> list[Result]:
    before = limit.throttling()
    rate = backlog_bench.drain(count, limit)
    return [
        Result(
            "backlog drain to the stand-in",
            rate,
            "messages/s",
            COMMAND,
            f"{backlog_bench.setup(count)}; goal > {DRAIN_GOAL:g}; "
            + limit.describe("the pump's process", limit.throttling() - before),
        )
    ]


def burst_rows(limit: CpuLimit) -> list[Result]:
    """The burst rows of :mod:`bench.burst_bench` with each fresh agent under ``limit``.
    Only the agent is limited: python-gsmmodem-new's runner, the peer beside it, is not,
    so its ratio there compares a limited simedge with an unlimited peer (said in the
    rows); the figure that matters under the limit is simedge's own."""
    before = limit.throttling()
    results = burst_bench.run(on_agent_started=limit.add, label=f"agent at {limit.fraction:g} core")
    note = limit.describe("agent", limit.throttling() - before)
    return _noted(results, note + "; the peer is not limited")


def run() -> list[Result]:
    """Rows for bench/RESULTS.md, every one measured under the same limit."""
    idle_seconds = _setting("SIMEDGE_BENCH_PI_IDLE_SECONDS", 60)
    load_seconds = _setting("SIMEDGE_BENCH_PI_E2E_SECONDS", 60)
    backlog = int(_setting("SIMEDGE_BENCH_PI_BACKLOG", 10_000))
    with cpu_limit(DEFAULT_FRACTION) as limit:
        if limit.unavailable:
            return [
                Result(
                    f"agent held to {limit.fraction:g} of one core",
                    "skipped",
                    "",
                    COMMAND,
                    f"no CPU limit could be set: {limit.unavailable}",
                )
            ]
        results = asyncio.run(_site_rows(limit, idle_seconds, load_seconds))
        results += _backlog_rows(limit, backlog)
        results += burst_rows(limit)
    return results


if __name__ == "__main__":
    for result in run():
        print(f"{result.name}: {result.cell()} {result.unit} ({result.note})")
