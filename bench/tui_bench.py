"""The dashboard's cost on a Pi over SSH: memory, CPU per minute, bytes sent to the terminal.

``simedge tui`` runs as its own process on a pseudo-terminal of 80x24 (as over SSH),
against the stand-in site of the dashboard's tests served on a real control socket
(16 modems). Measured from /proc for the dashboard's process only: CPU seconds per minute
of wall time and terminal bytes per minute, first idle, then while 20 SMS/s arrive as
``message`` events (each bumps a slot's counters and the feed); then its resident memory.

    python -m bench.tui_bench [SECONDS]
"""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

from bench import Result

RATE = 20  # SMS per second in the busy window
SLOTS = 16


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


def _window(pid: int, terminal: _Terminal, seconds: float) -> tuple[float, float]:
    cpu, sent, start = _cpu_seconds(pid), terminal.received, time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - start
    return (
        (_cpu_seconds(pid) - cpu) * 60 / elapsed,
        (terminal.received - sent) * 60 / elapsed,
    )


def run(seconds: float = 20.0) -> list[Result]:
    from agent.status import MessageSummary
    from tests.tui.site import SiteStandIn, demo_messages, demo_site, site_in_thread

    command = f"python -m bench.tui_bench {seconds:g}"
    with tempfile.TemporaryDirectory(prefix="simedge-tui-bench-") as directory:
        socket_path = Path(directory) / "control.sock"
        now = time.time()
        site = SiteStandIn(demo_site(now, slots=SLOTS), demo_messages(now))
        with site_in_thread(socket_path, site) as loop:
            terminal = _Terminal()
            process = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("simedge")),
                    "tui",
                    "--socket",
                    str(socket_path),
                    "--db",
                    str(Path(directory) / "none.db"),
                ],
                stdin=terminal.slave,
                stdout=terminal.slave,
                stderr=terminal.slave,
                env={**os.environ, "TERM": "xterm-256color"},
                start_new_session=True,
            )
            try:
                deadline = time.monotonic() + 30
                while b"live" not in terminal.seen:  # the first live snapshot is drawn
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError("the dashboard never showed the live site")
                    time.sleep(0.1)
                time.sleep(2)  # start-up work (CSS, first layout) is not "idle"
                idle_cpu, idle_bytes = _window(process.pid, terminal, seconds)

                stop = threading.Event()

                def sms_feed() -> None:
                    n = 0
                    while not stop.wait(1 / RATE):
                        n += 1
                        message = MessageSummary(
                            id=1000 + n,
                            sender="Bank",
                            text=f"code {n:06d}",
                            state="pending",
                            received_at=time.time(),
                            slot=f"1-1.{n % SLOTS + 1}",
                        )
                        loop.call_soon_threadsafe(site.receive, message)

                feeder = threading.Thread(target=sms_feed, daemon=True)
                feeder.start()
                busy_cpu, busy_bytes = _window(process.pid, terminal, seconds)
                stop.set()
                feeder.join()
                rss = _status_kib(process.pid, "VmRSS") / 1024
                peak = _status_kib(process.pid, "VmHWM") / 1024
            finally:
                process.terminate()
                process.wait(10)
                os.close(terminal.slave)
                os.close(terminal.master)
    return [
        Result(
            "dashboard memory (RSS after the busy window)",
            rss,
            "MiB",
            command,
            f"peak {peak:.0f} MiB; {SLOTS} modems",
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
