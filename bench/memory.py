"""Where the idle agent's resident memory goes: ``python -m bench.memory [MODEMS]``.

The site of :mod:`bench.idle_bench` (``simedge run`` over emulated SIM800 modems, an
operator's configuration), read after the same settling and window (70 s after the last
number went online), from the agent's ``/proc/PID/smaps``: resident memory by mapping,
anonymous memory (Python's objects, malloc's heaps, thread stacks) apart from the shared
libraries' pages, and the threads. Not a row of bench/RESULTS.md: a tool for finding
what to cut (bench/RESULTS.md, "Issue 19: memory", says what was found with it).
"""

from __future__ import annotations

import asyncio
import collections
import os
import sys
import tempfile
from pathlib import Path

from bench.site import simedge_site

SETTLE = 70.0  # idle_bench's 10 s settling and 60 s window
SHOWN = 12  # mappings listed by name; the rest are summed


def resident_by_mapping(pid: int) -> collections.Counter[str]:
    """KiB resident per mapping name: a file's path, ``[heap]``, ``[stack]``, or
    ``[anonymous]`` (pymalloc's arenas, malloc's mmapped chunks and thread arenas,
    thread stacks)."""
    resident: collections.Counter[str] = collections.Counter()
    name = "[anonymous]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if not fields[0].endswith(":"):  # a mapping's header: range, perms, ..., path
            name = fields[5] if len(fields) > 5 else "[anonymous]"
        elif fields[0] == "Rss:":
            resident[name] += int(fields[1])
    return resident


def status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def report(pid: int) -> str:
    facts = status(pid)
    resident = resident_by_mapping(pid)
    lines = [
        f"VmRSS {facts['VmRSS']}: anonymous {facts['RssAnon']}, files {facts['RssFile']}; "
        f"{facts['Threads']} threads, {len(os.listdir(f'/proc/{pid}/fd'))} open files",
        "",
        "| MiB | mapping |",
        "| --- | --- |",
    ]
    for name, kib in resident.most_common(SHOWN):
        lines.append(f"| {kib / 1024:.2f} | {Path(name).name if name[0] == '/' else name} |")
    rest = sum(kib for _, kib in resident.most_common()[SHOWN:])
    lines.append(f"| {rest / 1024:.2f} | {len(resident) - SHOWN} other mappings |")
    return "\n".join(lines)


async def measure(modems: int) -> str:
    with tempfile.TemporaryDirectory(prefix="simedge-memory-") as directory:
        async with simedge_site(Path(directory), modems, seed=5) as site:
            await asyncio.sleep(SETTLE)
            return report(site.agent.pid)


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    print(f"simedge run, {count} idle SIM800 modems, {SETTLE:g} s after all were online\n")
    print(asyncio.run(measure(count)))
