"""Where the agent's CPU goes per forwarded SMS, in the steady state of the e2e load.

The e2e benchmark's site and load (:mod:`bench.e2e_bench`: 64 emulated SIM800 modems,
the OnlineSim stand-in, ``simedge run``, 20 SMS/s round-robin), after a warm-up, in two
measured parts of equal length:

1. **by thread**, unprofiled: the threads' CPU (``/proc/PID/task/TID/stat``, user and
   system) over the part, per SMS: the event loop's thread, and the others (the SQLite
   writer's; the I/O executor's threads idle at this rate);
2. **by function**, the event loop's thread under cProfile with the thread's CPU clock,
   switched on and off by SIGUSR2 (``bench/profile_hook``, on the agent's ``PYTHONPATH``
   only) so that only the steady state is counted, not the start-up. Reported: the Python
   function calls per SMS, which do not drift with the machine as CPU times do (this VM's
   CPU per SMS of one tree varied by a fifth from run to run), by package, and the functions
   with most CPU of their own. Under the profiler every call costs more, so its shares
   weigh small functions more heavily than the unprofiled CPU would; the call counts are
   exact.

C code that Python calls (SQLite, the loop itself, system calls) is charged to the Python
function that called it; what the loop does outside any Python function (epoll, timers)
is in part 1's total, not in part 2.

    python -m bench.cpu_anatomy [--seconds 20] [--top 25] [--keep DIR]
    python -m bench.cpu_anatomy --rates 5,20,80,160 [--seconds 20]

``--rates`` measures part 1 only, at each rate in turn on one site: the CPU an SMS costs
when it comes alone (5/s over 64 modems: a quiet loop and cold caches between two) against
when others keep the agent busy.

It takes about a minute on the 2-core VM. Run it on a quiet machine; compare trees by
running it with ``PYTHONPATH`` set to each (the agent is started from this ``.venv``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import signal
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.e2e_bench import MODEMS, RATE
from bench.site import CLOCK_TICK, SimedgeSite, simedge_load, simedge_site

HOOK = Path(__file__).with_name("profile_hook")
WARM_UP_SECONDS = 10.0
_SITE_PACKAGES = "site-packages/"


def thread_ticks(pid: int) -> dict[int, int]:
    """CPU ticks (user + system) of each thread of ``pid``, by thread id."""
    ticks: dict[int, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a thread that ended meanwhile
        ticks[int(task.name)] = int(fields[11]) + int(fields[12])
    return ticks


@dataclass(frozen=True)
class ByThread:
    loop_ms: float  # the main thread: the event loop's
    others_ms: float  # the SQLite writer's above all; the I/O executor's (idle here)
    sms: int


def by_thread(pid: int, before: dict[int, int], after: dict[int, int], sms: int) -> ByThread:
    """CPU per SMS of the event loop's thread and of the others, between two
    :func:`thread_ticks` readings. (Python 3.11 does not give the kernel its threads' names,
    so the writer cannot be told from the executor's threads by name; at 20 SMS/s the
    executor has nothing to do.)"""
    per_sms = 1000 / CLOCK_TICK / max(sms, 1)
    loop = others = 0
    for tid, ticks in after.items():
        used = ticks - before.get(tid, 0)
        if tid == pid:
            loop += used
        else:
            others += used
    return ByThread(loop * per_sms, others * per_sms, sms)


def package_of(filename: str) -> str:
    """The group a profiled function is reported in: an agent package, a library, the
    standard library's module, or C code ("built-in")."""
    if filename == "~":
        return "built-in (C)"
    if _SITE_PACKAGES in filename:
        return filename.split(_SITE_PACKAGES, 1)[1].split("/", 1)[0].removesuffix(".py")
    parts = Path(filename).parts
    if "agent" in parts:
        at = len(parts) - 1 - parts[::-1].index("agent")
        return "/".join(parts[at : at + 2]).removesuffix(".py")
    return "stdlib " + Path(filename).stem


@dataclass(frozen=True)
class ByFunction:
    calls_per_sms: float
    cpu_ms_per_sms: float  # under the profiler
    packages: list[tuple[str, float, float]]  # name, calls per SMS, share of CPU
    functions: list[tuple[str, float, float]]  # name, calls per SMS, share of CPU


def by_function(profile: Path, sms: int, top: int) -> ByFunction:
    stats = pstats.Stats(str(profile)).stats  # type: ignore[attr-defined]
    calls: Counter[str] = Counter()
    own: Counter[str] = Counter()
    functions: list[tuple[float, int, str]] = []
    for (filename, line, name), (_primitive, count, own_time, _total, _callers) in stats.items():
        package = package_of(filename)
        calls[package] += count
        own[package] += own_time
        where = name if filename == "~" else f"{Path(filename).name}:{line} {name}"
        functions.append((own_time, count, f"{package}: {where}"))
    total_calls = sum(calls.values())
    total_time = sum(own.values()) or 1.0
    packages = [
        (package, count / sms, own[package] / total_time) for package, count in calls.most_common()
    ]
    functions.sort(reverse=True)
    return ByFunction(
        total_calls / sms,
        total_time * 1000 / sms,
        packages,
        [(where, count / sms, spent / total_time) for spent, count, where in functions[:top]],
    )


def _exists(path: Path) -> bool:
    return path.exists()


async def _profiled_load(site: SimedgeSite, profile: Path, seconds: float) -> int:
    os.kill(site.agent.pid, signal.SIGUSR2)
    _latencies, _cpu, sms = await simedge_load(site, MODEMS, RATE, seconds, "profiled")
    os.kill(site.agent.pid, signal.SIGUSR2)
    deadline = time.monotonic() + 30
    while not _exists(profile):  # the hook renames it into place once written whole
        if time.monotonic() > deadline:
            raise RuntimeError(f"the agent wrote no profile to {profile}")
        await asyncio.sleep(0.2)
    return sms


async def measure(folder: Path, seconds: float, top: int) -> tuple[ByThread, ByFunction]:
    profile = folder / "steady.prof"
    environment = dict(os.environ, SIMEDGE_BENCH_PROFILE=str(profile))
    environment["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(HOOK), os.environ.get("PYTHONPATH", "")) if part
    )
    async with simedge_site(folder, MODEMS, seed=11, agent_env=environment) as site:
        await simedge_load(site, MODEMS, RATE, WARM_UP_SECONDS, "warm")
        before = thread_ticks(site.agent.pid)
        _latencies, _cpu, sms = await simedge_load(site, MODEMS, RATE, seconds, "plain")
        threads = by_thread(site.agent.pid, before, thread_ticks(site.agent.pid), sms)
        profiled_sms = await _profiled_load(site, profile, seconds)
    return threads, by_function(profile, profiled_sms, top)


async def by_rate(folder: Path, seconds: float, rates: list[float]) -> str:
    """The threads' CPU per SMS at each of ``rates`` (SMS/s over the 64 modems), one
    steady part of ``seconds`` each, unprofiled: what an SMS costs when it comes alone
    against when others keep the agent busy."""
    lines = [f"{'SMS/s':>6} {'SMS':>6} {'loop':>7} {'others':>7} {'all':>7}  ms of CPU per SMS"]
    async with simedge_site(folder, MODEMS, seed=11) as site:
        await simedge_load(site, MODEMS, RATE, WARM_UP_SECONDS, "warm")
        for rate in rates:
            before = thread_ticks(site.agent.pid)
            _latencies, _cpu, sms = await simedge_load(site, MODEMS, rate, seconds, f"r{rate:g}")
            threads = by_thread(site.agent.pid, before, thread_ticks(site.agent.pid), sms)
            all_ms = threads.loop_ms + threads.others_ms
            lines.append(
                f"{rate:6g} {sms:6d} {threads.loop_ms:7.2f} {threads.others_ms:7.2f} {all_ms:7.2f}"
            )
    return "\n".join(lines)


def report(threads: ByThread, functions: ByFunction) -> str:
    lines = [
        f"{MODEMS} SIM800 modems, {RATE:g} SMS/s; {threads.sms} SMS unprofiled, then as many "
        "profiled",
        "",
        "CPU per SMS by thread (unprofiled, /proc ticks): "
        f"event loop {threads.loop_ms:.2f} ms, the other threads (the SQLite writer's) "
        f"{threads.others_ms:.2f} ms; all {threads.loop_ms + threads.others_ms:.2f} ms",
        "",
        f"The event loop's thread under cProfile: {functions.calls_per_sms:,.0f} Python-level "
        f"calls per SMS, {functions.cpu_ms_per_sms:.2f} ms of CPU per SMS with the profiler on",
        "",
        f"{'calls/SMS':>10} {'CPU share':>10}  package",
    ]
    lines += [
        f"{count:10.1f} {share:10.1%}  {package}" for package, count, share in functions.packages
    ]
    lines += ["", f"{'calls/SMS':>10} {'CPU share':>10}  function (its own CPU, callees apart)"]
    lines += [
        f"{count:10.1f} {share:10.1%}  {where}" for where, count, share in functions.functions
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="each measured part")
    parser.add_argument("--top", type=int, default=25, help="functions listed")
    parser.add_argument("--keep", type=Path, help="a folder to keep the site and profile in")
    parser.add_argument(
        "--rates",
        type=lambda text: [float(rate) for rate in text.split(",")],
        help="instead: CPU per SMS by thread at each of these rates, e.g. 5,20,80,160",
    )
    arguments = parser.parse_args()
    if arguments.rates is not None:
        with tempfile.TemporaryDirectory(prefix="simedge-cpu-anatomy-") as directory:
            print(asyncio.run(by_rate(Path(directory), arguments.seconds, arguments.rates)))
        return
    if arguments.keep is not None:
        arguments.keep.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="cpu-anatomy-", dir=arguments.keep))
        print(report(*asyncio.run(measure(folder, arguments.seconds, arguments.top))))
        print(f"\nprofile: {folder / 'steady.prof'}")
        return
    with tempfile.TemporaryDirectory(prefix="simedge-cpu-anatomy-") as directory:
        print(report(*asyncio.run(measure(Path(directory), arguments.seconds, arguments.top))))


if __name__ == "__main__":
    main()
