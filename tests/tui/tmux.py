"""Run ``simedge tui`` in a real terminal (tmux) and read the screen as a person sees it.

``python -m tests.tui.tmux`` serves the demo site and prints the 80x24 overview; its
output is docs/dashboard-80x24.txt and the README's picture.
"""

from __future__ import annotations

import os
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tests.tui.site import SiteStandIn, demo_messages, demo_site, site_in_thread

SIMEDGE = Path(sys.executable).with_name("simedge")


class Tmux:
    """One detached tmux session running a command in a terminal of a fixed size."""

    def __init__(self, command: list[str], *, width: int = 80, height: int = 24) -> None:
        self.name = f"simedge-{uuid.uuid4().hex[:8]}"
        environment = {**os.environ, "TERM": "xterm-256color", "TZ": "UTC"}
        subprocess.run(
            [
                "tmux",
                "new-session",
                "-d",
                "-s",
                self.name,
                "-x",
                str(width),
                "-y",
                str(height),
                *command,
            ],
            check=True,
            env=environment,
            timeout=10,
        )
        # tmux has no event for "the screen changed", but it copies whatever the program
        # writes to its terminal into a command (pipe-pane): here into a FIFO, whose
        # readiness is that event. Opened first, non-blocking, so the writer never waits.
        self._folder = Path(tempfile.mkdtemp(prefix="simedge-tmux-"))
        fifo = self._folder / "output"
        os.mkfifo(fifo)
        self._output = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        subprocess.run(
            ["tmux", "pipe-pane", "-O", "-t", self.name, f"cat > {shlex.quote(str(fifo))}"],
            check=True,
            timeout=10,
        )

    def capture(self) -> str:
        return subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.name],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout

    def send(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True, timeout=10)

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        """The screen once it shows ``text``: read again each time the program has written
        to the terminal, until the text is there or ``timeout`` seconds have passed."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.capture()
            if text in screen:
                return screen
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{text!r} never appeared; the screen:\n{screen}")
            readable, _, _ = select.select([self._output], [], [], remaining)
            if readable and not os.read(self._output, 1 << 16):
                raise AssertionError(f"the program ended before {text!r}; the screen:\n{screen}")

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], check=False, timeout=10)
        os.close(self._output)
        shutil.rmtree(self._folder, ignore_errors=True)


def available() -> bool:
    return shutil.which("tmux") is not None


def tui_command(socket_path: Path, db_path: Path) -> list[str]:
    return [str(SIMEDGE), "tui", "--socket", str(socket_path), "--db", str(db_path)]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="simedge-tmux-") as directory:
        socket_path = Path(directory) / "control.sock"
        now = time.time()
        with site_in_thread(socket_path, SiteStandIn(demo_site(now), demo_messages(now))):
            session = Tmux(tui_command(socket_path, Path(directory) / "none.db"))
            try:
                print(session.wait_for("● live").rstrip("\n"))
            finally:
                session.close()


if __name__ == "__main__":
    main()
