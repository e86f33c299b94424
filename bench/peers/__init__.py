"""The field's veterans as benchmark peers: each reads SMS off the same emulated modems.

A peer is started on the AT ports of a fresh hub, and tells the bench which injected
texts it has stored and when (``time.monotonic()``, one clock for all processes):

- ``gammu-smsd`` (one daemon per modem, files backend): a file in its inbox folder;
- ``smsd`` of smstools3 (one process per modem under one main process): a file in its
  incoming folder;
- python-gsmmodem-new (one ``GsmModem`` per port in one process, ``+CMTI`` driven): its
  ``smsReceivedCallbackFunc`` call, stamped in that process.

Folders are polled every 10 ms by the bench, so a file is seen at most that much late.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Protocol

from bench.site import Process, cpu_seconds

POLL = 0.01  # seconds between looks at the peers' output folders
TEXT_SUFFIX = " code 4711"  # every injected text ends so (bench.site.inject_steadily)


class Peer(Protocol):
    """What the peer bench needs from one receiver of SMS."""

    name: str
    configuration: str

    def missing(self) -> str | None:
        """Why this peer cannot run here (not installed), or None."""

    async def start(self, folder: Path, ports: list[str]) -> list[Process]:
        """Start reading the modems at ``ports``; the processes whose CPU is the peer's."""

    async def receipts(self) -> dict[str, float]:
        """Every injected text stored so far -> when it was stored."""

    async def stop(self) -> None:
        """Stop every process and watcher started."""


class FolderWatcher:
    """Stamps each new file of some folders whose last line is an injected text."""

    def __init__(self, folders: list[Path]) -> None:
        self.folders = folders
        self.stored: dict[str, float] = {}
        self._done: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while True:
            for folder in self.folders:
                with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
                    for entry in entries:
                        if entry.path not in self._done:
                            self._look(entry.path)
            await asyncio.sleep(POLL)

    def _look(self, path: str) -> None:
        seen = time.monotonic()
        try:
            text = Path(path).read_text(errors="replace").rstrip("\n")
        except OSError:
            return
        last = text.rsplit("\n", 1)[-1]
        if last.endswith(TEXT_SUFFIX):  # else still being written: look again next round
            self.stored.setdefault(last, seen)
            self._done.add(path)


def tree_cpu(processes: list[Process]) -> float:
    """CPU seconds of every process tree of a peer."""
    return sum(cpu_seconds(process.pid) for process in processes)
