"""Where simedge's time goes in a burst: each SMS's steps, the last one's above all.

One simedge block of :mod:`bench.burst_bench` (a hub, the agent warmed up, bursts of one
SMS on every modem at once) with the agent's log at TRACE, which stamps every AT line it writes
and reads. Per SMS, each step's moment since the hub's ``injected`` stamp:

- ``on SIM``: the hub stored it and printed ``+CMTI`` (the hub's ``stored`` event);
- ``+CMTI read``: the agent read that line off its port;
- ``AT+CMGR sent`` and ``+CMGR answered``: the worker asked for it and got the PDU;
- ``AT+CMGD sent``: the store's commit returned (the worker deletes right after it);
- ``at OnlineSim``: the stand-in received addMessage.

Log lines carry the wall clock to the millisecond; they are put on the monotonic clock
with ``time.time() - time.monotonic()`` read by this process (one offset for the
machine), so those steps are good to about 1 ms. The hub's and the stand-in's stamps are
exact. TRACE itself costs the agent a log line per AT line, so these times are a little
longer than :mod:`bench.burst_bench`'s; the shape is what this is for.

Every mode prints the latencies and the CPU the agent, the stand-in and the hub used
per SMS during the bursts. ``--mode``:

- ``trace`` (the default): the steps above;
- ``plain``: the agent at its usual log level (WARNING), nothing else: the figures
  without TRACE's cost;
- ``commits``: the store's writer thread under ``strace -T -e trace=fsync,fdatasync``
  (that thread only: the event loop is not slowed) during the bursts: how many durable
  commits a burst takes and how long their syncs take;
- ``profile-all`` / ``profile-gil``: the agent at WARNING under py-spy (``--rate 500
  --nonblocking --threads``, and ``--idle`` or ``--gil``; run as root; py-spy on PATH or
  named in ``SIMEDGE_PY_SPY``) during the bursts:
  how busy each thread was, or how long it held the GIL, and the functions the event
  loop's busy samples were in.

    python -m bench.burst_anatomy [--modems 64] [--bursts 5] [--mode MODE] [--keep DIR]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from agent.errors import PduError
from agent.protocol.pdu import decode
from bench.burst_bench import Block, side
from bench.peers_bench import Simedge
from bench.site import cpu_seconds, percentiles

# py-spy is a profiler for the person measuring, not a dependency of simedge: found on
# PATH, or where SIMEDGE_PY_SPY says (`pip install py-spy` in a venv of its own will do).
PY_SPY = os.environ.get("SIMEDGE_PY_SPY") or shutil.which("py-spy") or "py-spy"
RATE = 500  # py-spy's samples per second
STEPS = ("on SIM", "+CMTI read", "AT+CMGR sent", "+CMGR answered", "AT+CMGD sent", "at OnlineSim")
# "2026-12-02 14:10:55,450 TRACE simedge.trace.1_1_1: <- b'...'"
TRACE_LINE = re.compile(
    r"^(?P<when>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) TRACE simedge\.trace\.(?P<port>\S+): "
    r"(?P<way><-|->) (?P<data>b.*)$"
)
CMGR_ANSWER = re.compile(r"\+CMGR: [^\r\n]*\r\n([0-9A-Fa-f]+)\r\n")


@dataclass
class Steps:
    """One SMS's steps on the monotonic clock, by name (see STEPS)."""

    text: str
    injected: float
    at: dict[str, float]

    def since_injected_ms(self, step: str) -> float | None:
        moment = self.at.get(step)
        return None if moment is None else (moment - self.injected) * 1000


def _monotonic(stamp: str, offset: float) -> float:
    # logging's asctime is the local time, cut (not rounded) to the millisecond: +0.5 ms
    wall = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp() + 0.0005
    return wall - offset


def agent_steps(log: Path, offset: float) -> dict[str, dict[str, float]]:
    """Per SMS text, the agent's AT steps read from its TRACE log (see the docstring)."""
    found: dict[str, dict[str, float]] = {}
    # Per port: the +CMTI read and the AT+CMGR sent that await the next +CMGR answer, and
    # the text of the last answer, which the next AT+CMGD deletes.
    waiting: dict[str, dict[str, float]] = defaultdict(dict)
    answered: dict[str, str] = {}
    answering: dict[str, str] = {}  # per port: a +CMGR answer read so far
    for line in log.read_text(errors="replace").splitlines():
        match = TRACE_LINE.match(line)
        if match is None:
            continue
        port, at = match["port"], _monotonic(match["when"], offset)
        data = ast.literal_eval(match["data"]).decode("ascii", "replace")
        if match["way"] == "<-":
            if "+CMTI:" in data:
                waiting[port] = {"+CMTI read": at}
            if "+CMGR:" in data:
                answering[port] = data
            elif port in answering:
                answering[port] += data
            if "\r\nOK\r\n" in answering.get(port, ""):
                answer = CMGR_ANSWER.search(answering.pop(port))
                if answer is None:
                    continue
                try:
                    text = decode(answer[1]).text
                except PduError:
                    continue
                found[text] = {**waiting.pop(port, {}), "+CMGR answered": at}
                answered[port] = text
        elif data.startswith("AT+CMGR="):
            waiting[port]["AT+CMGR sent"] = at
        elif data.startswith("AT+CMGD=") and port in answered:
            found[answered.pop(port)]["AT+CMGD sent"] = at
    return found


def steps_of(measured: Block, log: Path, offset: float) -> list[list[Steps]]:
    """Per burst, every SMS's steps (hub, agent log and stand-in together)."""
    from_log = agent_steps(log, offset)
    bursts = []
    for burst in measured.bursts:
        each = []
        for text, injected in burst.injected.items():
            at = dict(from_log.get(text, {}))
            if text in burst.on_sim:
                at["on SIM"] = burst.on_sim[text]
            if text in burst.stored:
                at["at OnlineSim"] = burst.stored[text]
            each.append(Steps(text, injected, at))
        bursts.append(each)
    return bursts


def _table(title: str, chosen: list[Steps]) -> str:
    lines = [title, "  " + " ".join(f"{step:>15}" for step in STEPS)]
    for steps in chosen:
        cells = []
        for step in STEPS:
            value = steps.since_injected_ms(step)
            cells.append(f"{'-' if value is None else f'{value:.1f}':>15}")
        lines.append("  " + " ".join(cells) + f"   {steps.text}")
    medians = []
    for step in STEPS:
        values = [v for s in chosen if (v := s.since_injected_ms(step)) is not None]
        medians.append(f"{statistics.median(values):>15.1f}" if values else f"{'-':>15}")
    lines.append("  " + " ".join(medians) + "   median of the rows above")
    return "\n".join(lines)


def _spread(bursts: list[list[Steps]]) -> str:
    """Per step: when the burst's first, median and last SMS reached it (medians over
    bursts), ms since the burst's first injection: how the steps queue up."""
    lines = [
        "Each step's first, median and last SMS of a burst, ms since its first injection "
        "(median over bursts):",
        f"  {'step':>15} {'first':>8} {'median':>8} {'last':>8}",
    ]
    for step in STEPS:
        firsts, middles, lasts = [], [], []
        for each in bursts:
            start = min(s.injected for s in each)
            moments = sorted((s.at[step] - start) * 1000 for s in each if step in s.at)
            if moments:
                firsts.append(moments[0])
                middles.append(moments[len(moments) // 2])
                lasts.append(moments[-1])
        if firsts:
            figures = (statistics.median(v) for v in (firsts, middles, lasts))
            lines.append(f"  {step:>15} " + " ".join(f"{v:8.1f}" for v in figures))
    return "\n".join(lines)


def report_steps(bursts: list[list[Steps]]) -> str:
    """The last SMS of each burst (the latest at OnlineSim) and each burst's median SMS."""
    last, middle = [], []
    for each in bursts:
        done = sorted(
            (s for s in each if "at OnlineSim" in s.at), key=lambda s: s.at["at OnlineSim"]
        )
        if done:
            last.append(done[-1])
            middle.append(done[len(done) // 2])
    return "\n\n".join(
        (
            _table("The LAST SMS of each burst, ms since injected:", last),
            _table("The MEDIAN SMS of each burst, ms since injected:", middle),
            _spread(bursts),
        )
    )


@contextlib.asynccontextmanager
async def syncs_traced(pid: int, output: Path) -> AsyncIterator[None]:
    """strace on the store's writer thread of agent ``pid`` (found with py-spy's dump)."""
    dump = await asyncio.create_subprocess_exec(
        PY_SPY, "dump", "--pid", str(pid), "--nonblocking", stdout=asyncio.subprocess.PIPE
    )
    listing = (await dump.communicate())[0].decode(errors="replace")
    found = re.search(r'^Thread (\d+) \([^)]*\): "store-writer"', listing, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no store-writer thread in py-spy's dump of {pid}")
    strace = await asyncio.create_subprocess_exec(
        "strace",
        "-T",
        "-e",
        "trace=fsync,fdatasync",
        "-o",
        str(output),
        "-p",
        found[1],
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        strace.send_signal(signal.SIGINT)
        await strace.wait()


def report_syncs(output: Path, bursts: int, sms: int) -> str:
    """Syncs the writer made: how many per burst and per SMS, and how long they took."""
    took = [
        float(found[1]) * 1000
        for line in output.read_text().splitlines()
        if (found := re.search(r"<([\d.]+)>$", line))
    ]
    if not took:
        return "no fsync/fdatasync by the writer during the bursts"
    median, p99, worst = percentiles(took)
    return (
        f"store writer: {len(took)} syncs (fsync/fdatasync) in {bursts} bursts, "
        f"{len(took) / bursts:.1f} a burst, {len(took) / sms:.2f} per SMS; "
        f"each took median {median:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms, "
        f"{sum(took):.0f} ms in all ({sum(took) / bursts:.0f} ms a burst)"
    )


@contextlib.asynccontextmanager
async def profiled(pid: int, output: Path, *, gil: bool) -> AsyncIterator[None]:
    """py-spy recording ``pid`` while the block inside runs its bursts; ``gil``: only the
    thread holding the GIL is sampled (else every thread, idle or not)."""
    spy = await asyncio.create_subprocess_exec(
        PY_SPY,
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(RATE),
        "--nonblocking",
        "--gil" if gil else "--idle",
        "--threads",
        "--format",
        "raw",
        "-o",
        str(output),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        await spy.wait()


# A sample whose innermost frame is one of these is a thread waiting for work: the event
# loop in epoll, the store's writer in its queue's get, an executor thread in its own.
# Frames on every sample of the event loop: the entry point and the loop's own.
LOOP_FRAMES = (
    "<module> (simedge)",
    "run (asyncio/",
    "Runner.run (",
    "BaseEventLoop.",
    "Handle._run (",
)
IDLE_LEAVES = ("EpollSelector.select (", "Writer._run (", "_worker (concurrent/futures/thread.py")


def report_profile(raw: Path, seconds: float, gil: bool) -> str:
    """Per thread, its busy samples as a share of the ``seconds`` profiled; for the event
    loop, the functions its busy samples were in (inclusive: a function counts once per
    sample, wherever it is on the stack)."""
    samples: Counter[str] = Counter()
    busy: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count, frames = int(count_text), stack.split(";")
        thread = frames[0].split(": ", 1)[-1]
        samples[thread] += count
        if frames[-1].startswith(IDLE_LEAVES):
            continue
        busy[thread] += count
        if thread == "MainThread":
            for frame in {frame.rsplit(":", 1)[0] + ")" for frame in frames[1:]}:
                inclusive[frame] += count
    what = "holding the GIL" if gil else "busy (on the CPU, or waiting for it or the GIL)"
    lines = [f"py-spy, {seconds:.1f} s of bursts at {RATE}/s: per thread, the share {what}"]
    for thread, _ in samples.most_common(4):
        lines.append(f"  {busy[thread] / (seconds * RATE):6.1%}  {thread}")
    main_busy = busy["MainThread"] or 1
    lines.append(
        f"the event loop's {busy['MainThread']} busy samples, by function (inclusive), "
        "the agent's and the libraries' that matter:"
    )
    shown = 0
    for frame, count in inclusive.most_common():
        if frame.startswith(LOOP_FRAMES) or "(agent/cli/" in frame:
            continue  # the loop's own frames and the entry point: on every sample
        lines.append(f"  {count / main_busy:6.1%}  {frame}")
        shown += 1
        if shown == 30:
            break
    return "\n".join(lines)


async def anatomy(modems: int, bursts: int, folder: Path, mode: str) -> str:
    """One block in ``folder``; ``mode``: see the module docstring."""
    pids: list[int] = []
    receiver = Simedge(
        on_agent_started=pids.append, log_level="TRACE" if mode == "trace" else "WARNING"
    )
    offset = time.time() - time.monotonic()
    spy_output = folder / "py-spy.txt"
    async with side(receiver, modems, folder) as warmed:
        assert receiver.standin is not None
        parts = {
            "agent": pids[0],
            "stand-in": receiver.standin.process.pid,
            "modem hub": warmed.hub.pid,
        }
        cpu = {name: cpu_seconds(pid) for name, pid in parts.items()}
        began = time.monotonic()
        if mode.startswith("profile-"):
            async with profiled(pids[0], spy_output, gil=mode == "profile-gil"):
                measured = await warmed.block(bursts)
        elif mode == "commits":
            async with syncs_traced(pids[0], folder / "syncs.txt"):
                measured = await warmed.block(bursts)
        else:
            measured = await warmed.block(bursts)
        seconds = time.monotonic() - began
        cpu = {name: cpu_seconds(pid) - cpu[name] for name, pid in parts.items()}
    latencies = sorted(measured.latencies_ms)
    sms = len(latencies)
    header = (
        f"{modems} modems, {bursts} bursts, mode {mode}: injected -> at OnlineSim median "
        f"{statistics.median(latencies):.1f} ms, p99 {percentiles(latencies)[1]:.1f} ms, "
        f"max {latencies[-1]:.1f} ms\n"
        f"CPU during the bursts ({seconds:.1f} s), per SMS: "
        + ", ".join(f"{name} {used / sms * 1000:.1f} ms" for name, used in cpu.items())
    )
    if mode.startswith("profile-"):
        return header + "\n\n" + report_profile(spy_output, seconds, mode == "profile-gil")
    if mode == "commits":
        return header + "\n\n" + report_syncs(folder / "syncs.txt", bursts, sms)
    if mode == "trace":
        return header + "\n\n" + report_steps(steps_of(measured, folder / "agent.log", offset))
    return header


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.burst_anatomy", description=__doc__)
    parser.add_argument("--modems", type=int, default=64)
    parser.add_argument("--bursts", type=int, default=5)
    parser.add_argument(
        "--mode",
        choices=("trace", "plain", "commits", "profile-all", "profile-gil"),
        default="trace",
    )
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args(argv)
    needs_py_spy = args.mode.startswith("profile-") or args.mode == "commits"
    if needs_py_spy and shutil.which(PY_SPY) is None:
        print(
            f"burst_anatomy: --mode {args.mode} needs py-spy ({PY_SPY!r} not found): install "
            "it (pip install py-spy) and put it on PATH or name it in SIMEDGE_PY_SPY",
            file=sys.stderr,
        )
        return 2
    with contextlib.ExitStack() as stack:
        if args.keep is not None:
            shutil.rmtree(args.keep, ignore_errors=True)
            args.keep.mkdir(parents=True)
            folder = args.keep
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="simedge-")))
        print(asyncio.run(anatomy(args.modems, args.bursts, folder, args.mode)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
