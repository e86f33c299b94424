"""The dashboard's cost on a Pi over SSH: memory, CPU per minute, bytes sent to the terminal.

``simedge tui`` runs as its own process on a pseudo-terminal of 80x24 (as over SSH),
attached to the real agent of a site of 64 emulated modems and the OnlineSim stand-in
(:mod:`bench.site`). Measured from /proc for the dashboard's process only: CPU seconds per
minute of wall time and terminal bytes per minute, first idle, then while 20 SMS/s are
injected into the modems (each one read, stored, uploaded, and shown as it goes); then
its resident memory.

    python -m bench.tui_bench [SECONDS]
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import struct
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

from bench import Result
from bench.site import inject_steadily, simedge_site

RATE = 20  # SMS per second in the busy window
MODEMS = 64


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


class _Terminal:
    """A pty of 80x24 whose output is read and counted, as an SSH client would."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.received = 0
        self.seen = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.received += len(chunk)
            if len(self.seen) < 1 << 20:
                self.seen += chunk


async def _window(pid: int, terminal: _Terminal, seconds: float) -> tuple[float, float]:
    cpu, sent, start = _cpu_seconds(pid), terminal.received, time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - start
    return (
        (_cpu_seconds(pid) - cpu) * 60 / elapsed,
        (terminal.received - sent) * 60 / elapsed,
    )


async def _measure(folder: Path, seconds: float) -> dict[str, float]:
    async with simedge_site(folder, MODEMS, seed=9) as site:
        terminal = _Terminal()
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("simedge")),
            "tui",
            "--socket",
            str(folder / "agent.sock"),
            "--db",
            str(folder / "data" / "simedge.db"),
            stdin=terminal.slave,
            stdout=terminal.slave,
            stderr=terminal.slave,
            env={**os.environ, "TERM": "xterm-256color"},
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 30
            while b"live" not in terminal.seen:  # the first live snapshot is drawn
                if time.monotonic() > deadline or process.returncode is not None:
                    raise RuntimeError("the dashboard never showed the live site")
                await asyncio.sleep(0.1)
            await asyncio.sleep(2)  # start-up work (CSS, first layout) is not "idle"
            idle_cpu, idle_bytes = await _window(process.pid, terminal, seconds)
            # Real SMS through the real agent: each one is a message and an outbox event
            # on the control socket, and a row in the dashboard's feed.
            feeding = asyncio.create_task(
                inject_steadily(site.control, MODEMS, RATE, seconds + 5, "tui", site.next_event)
            )
            busy_cpu, busy_bytes = await _window(process.pid, terminal, seconds)
            await feeding
            return {
                "idle_cpu": idle_cpu,
                "idle_bytes": idle_bytes,
                "busy_cpu": busy_cpu,
                "busy_bytes": busy_bytes,
                "rss": _status_kib(process.pid, "VmRSS") / 1024,
                "peak": _status_kib(process.pid, "VmHWM") / 1024,
            }
        finally:
            process.terminate()
            async with asyncio.timeout(10):
                await process.wait()
            os.close(terminal.slave)
            os.close(terminal.master)


def run(seconds: float = 20.0) -> list[Result]:
    command = f"python -m bench.tui_bench {seconds:g}"
    with tempfile.TemporaryDirectory(prefix="simedge-tui-bench-") as directory:
        figures = asyncio.run(_measure(Path(directory), seconds))
    rss, peak = figures["rss"], figures["peak"]
    idle_cpu, idle_bytes = figures["idle_cpu"], figures["idle_bytes"]
    busy_cpu, busy_bytes = figures["busy_cpu"], figures["busy_bytes"]
    return [
        Result(
            "dashboard memory (RSS after the busy window)",
            rss,
            "MiB",
            command,
            f"peak {peak:.0f} MiB; the real agent with {MODEMS} emulated modems",
        ),
        Result(
            "dashboard CPU, idle",
            idle_cpu,
            "CPU s per minute",
            command,
            f"{100 * idle_cpu / 60:.2g}% of one core",
        ),
        Result(
            f"dashboard CPU, {RATE} SMS/s arriving",
            busy_cpu,
            "CPU s per minute",
            command,
            f"{100 * busy_cpu / 60:.2g}% of one core",
        ),
        Result(
            "terminal output, idle",
            idle_bytes / 1024,
            "KiB per minute",
            command,
            "what a slow SSH link carries",
        ),
        Result(
            f"terminal output, {RATE} SMS/s arriving",
            busy_bytes / 1024,
            "KiB per minute",
            command,
            "at most 4 redraws/s, changed cells only",
        ),
    ]


if __name__ == "__main__":
    for result in run(float(sys.argv[1]) if len(sys.argv) > 1 else 20.0):
        print(f"{result.name}: {result.cell()} {result.unit} ({result.note})")
