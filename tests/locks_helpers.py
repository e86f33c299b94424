"""Other processes that hold a lock, for the lock tests: each is a real child process that
takes its lock, says ``held`` on stdout and keeps it until its stdin closes (or SIGKILL)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HOLD_DATA_DIR = """
import sys
from pathlib import Path
from agent.locking import DataDirLock
lock = DataDirLock.acquire(Path(sys.argv[1]))
print("held", flush=True)
sys.stdin.read()
"""

HOLD_PORT_FLOCK = """
import sys
import serial
port = serial.Serial(sys.argv[1], exclusive=True)  # as picocom and other pyserial users do
print("held", flush=True)
sys.stdin.read()
"""

HOLD_NOTHING = """
import sys
print("held", flush=True)
sys.stdin.read()
"""


@contextmanager
def holder(script: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """Run ``script`` in a child process until it says ``held``; close its stdin after."""
    child = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held", "the holder did not take its lock"
        yield child
    finally:
        assert child.stdin is not None
        assert child.stdout is not None
        child.stdin.close()
        child.wait(timeout=10)
        child.stdout.close()
