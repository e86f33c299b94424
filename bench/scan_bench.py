"""How long ``simedge scan`` takes over 64 emulated modems plus 64 silent ports.

Goal: under 3 s for the whole command. Silent ports cost the most: each must go
unanswered three times before it can be called silent, so probing is concurrent and the
modems that answer are identified (ICCID, IMSI, number by CNUM or USSD, signal) while the
silent ones still wait out their probe.

The modems run in a hub process of their own (``simedge emulate modems``), as on a test
bench; the silent ports are ptys this process opens and never reads, behind by-path style
links. The scan is the real command in a fresh process, timed from outside (Python's
start-up included); the figure it prints itself is given too.

    python -m bench.scan_bench [RUNS]
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import tty
from collections.abc import Iterator
from pathlib import Path

from bench import Result

MODEMS = 64
SILENT = 64
PROFILES = ("sim800", "mixed")
GOAL_SECONDS = 3.0
PI4 = "platform-fd500000.pcie-pci-0000:01:00.0"


@contextlib.contextmanager
def modem_hub(directory: Path, profile: str) -> Iterator[None]:
    """``simedge emulate modems`` in its own process, until the block ends."""
    command = [sys.executable, "-m", "agent.cli", "emulate", "modems"]
    command += ["--dir", str(directory), "--count", str(MODEMS), "--profile", profile]
    hub = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert hub.stdout is not None
        line = hub.stdout.readline()  # blocks until the hub says it is ready (or dies)
        if not line.startswith("modem hub ready"):
            raise RuntimeError(f"modem hub did not start: {line!r}")
        yield
    finally:
        hub.terminate()
        hub.wait(timeout=10)


@contextlib.contextmanager
def silent_ports(directory: Path) -> Iterator[None]:
    """SILENT ptys nobody answers on, linked like /dev/serial/by-path entries."""
    directory.mkdir()
    fds: list[int] = []
    try:
        for index in range(SILENT):
            master, slave = os.openpty()
            fds += [master, slave]
            tty.setraw(slave)
            chain = f"2.{index // 8 + 1}.{index % 8 + 1}"
            (directory / f"{PI4}-usb-0:{chain}:1.0-port0").symlink_to(os.ttyname(slave))
        yield
    finally:
        for fd in fds:
            os.close(fd)


def scan_once(globs: list[str]) -> tuple[float, float, dict[str, object]]:
    """(wall seconds of the command, seconds it reports, its JSON)."""
    command = [sys.executable, "-m", "agent.cli", "scan", "--no-auto", "--json"]
    for pattern in globs:
        command += ["--port", pattern]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    wall = time.monotonic() - started
    reported = re.search(r"in ([\d.]+)s", done.stderr)
    return wall, float(reported.group(1)) if reported else float("nan"), json.loads(done.stdout)


def run(runs: int = 3) -> list[Result]:
    results = []
    for profile in PROFILES:
        with tempfile.TemporaryDirectory(prefix="simedge-scan-bench-") as folder:
            hub_dir, silent_dir = Path(folder) / "hub", Path(folder) / "silent"
            with modem_hub(hub_dir, profile), silent_ports(silent_dir):
                timings = [scan_once([f"{hub_dir}/*", f"{silent_dir}/*"]) for _ in range(runs)]
        worst_wall = max(wall for wall, _, _ in timings)
        worst_own = max(own for _, own, _ in timings)
        found = min(len(result["modems"]) for _, _, result in timings)  # type: ignore[arg-type]
        silent = min(
            sum(port["role"] == "silent" for port in result["ignored"])  # type: ignore[index,union-attr]
            for _, _, result in timings
        )
        results.append(
            Result(
                name=f"simedge scan, {MODEMS} {profile} modems + {SILENT} silent ports",
                value=worst_wall,
                unit=f"s (worst of {runs}, whole command)",
                command=f"python -m bench.scan_bench {runs}",
                note=(
                    f"goal < {GOAL_SECONDS:g}; {worst_own:.2f} s inside the scan; "
                    f"found {found}/{MODEMS} modems, {silent} ports silent"
                ),
            )
        )
    return results


if __name__ == "__main__":
    for result in run(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
        print(f"{result.name}: {result.cell()} {result.unit} ({result.note})")
