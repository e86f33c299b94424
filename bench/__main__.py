"""``python -m bench [NAME ...]``: run the benchmarks, write bench/RESULTS.md, print it."""

from __future__ import annotations

import importlib
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from bench import Result

# module under bench/ -> what it measures; run in this order.
BENCHES: dict[str, str] = {
    "decode_bench": "PDUs decoded per second on one core, ours beside independent decoders",
    "emulator_idle": "CPU of 128 idle emulated modems in one process",
    "store_bench": "writer CPU per SMS, durable ingests per second, size per 100,000 messages",
    "integrity_bench": "quick_check at start, db check and db recover, 100,000 messages",
    "scan_bench": "simedge scan of 64 emulated modems plus 64 silent ports",
    "cmti_latency": "+CMTI to PDU handed to the store, 64 modems under load",
    "hotplug_bench": "a replugged modem back in service, with the real agent",
    "backlog_bench": "100,000 queued messages drained to the stand-in",
    "tui_bench": "the dashboard's memory, and its CPU idle and at 20 SMS/s",
    "e2e_bench": "injected SMS to addMessage at the stand-in, 64 modems, 20/s; rate ramp",
    "idle_bench": "agent CPU per minute and RSS at rest, 64 and 128 modems",
    "uplink_bench": "CPU per addMessage call: the client, 8 in flight, bare httpcore, bare h11",
    "peers_bench": "simedge beside gammu-smsd, smstools3, python-gsmmodem-new: latency, CPU",
    "burst_bench": "one SMS at once on each of 8 and 64 modems: simedge beside python-gsmmodem-new",
    "pi_bench": "the agent held to a quarter of one core (cgroup): start, idle, 20 SMS/s, backlog, "
    "bursts",
}

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    commit = (
        subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        or "unknown"
    )
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; simedge commit {commit}"
    )


def invocation() -> str:
    """How this run was asked for: ``make bench``, or the names and the settings given."""
    settings = " ".join(
        f"{name}={value}"
        for name, value in sorted(os.environ.items())
        if name == "BACKLOG" or name.startswith("SIMEDGE_BENCH_")
    )
    names = " ".join(sys.argv[1:])
    command = f"python -m bench {names}".strip() if names else "make bench"
    return f"{settings} {command}".strip()


def render(rows: list[tuple[str, Result]], took: float) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {machine()}.",
        f"Run: `{invocation()}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{took:.0f} s in all.",
        "",
        "| benchmark | measure | value | unit | command | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for bench, result in rows:
        lines.append(
            f"| {bench} | {result.name} | {result.cell()} | {result.unit} | "
            f"`{result.command}` | {result.note} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    chosen = argv or list(BENCHES)
    unknown = [name for name in chosen if name not in BENCHES]
    if unknown:
        print(
            f"bench: unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHES)}",
            file=sys.stderr,
        )
        return 2
    started = time.monotonic()
    rows: list[tuple[str, Result]] = []
    for name in chosen:
        print(f"bench: {name}: {BENCHES[name]} ...", file=sys.stderr, flush=True)
        module = importlib.import_module(f"bench.{name}")
        rows.extend((name, result) for result in module.run())
    text = render(rows, time.monotonic() - started)
    RESULTS.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
