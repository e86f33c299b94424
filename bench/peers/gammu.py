"""gammu-smsd, Debian's SMS daemon: one process per modem, files backend.

Two configurations: Debian's defaults (only the device and the folders are set), where
incoming SMS are looked for every ``CommTimeout`` (30 s); and the fastest one its manual
allows without a busy loop: ``CommTimeout = 0``, ``ReceiveFrequency = 0`` and
``LoopSleep = 1`` (a look every second), ``StatusFrequency = 0`` and the security,
battery, signal and network checks off. ``LoopSleep = 0`` would poll the modem without
pause ("effectively do busy loop", gammu-smsdrc(5)).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.peers import FolderWatcher
from bench.site import Process

FASTEST = {
    "CommTimeout": "0",
    "ReceiveFrequency": "0",
    "LoopSleep": "1",
    "StatusFrequency": "0",
    "CheckSecurity": "0",
    "CheckBattery": "0",
    "CheckSignal": "0",
    "CheckNetwork": "0",
}


class GammuSmsd:
    """``gammu-smsd -c FILE`` per port; a stored SMS is a file in that port's inbox."""

    def __init__(self, *, fastest: bool) -> None:
        self.fastest = fastest
        self.name = "gammu-smsd" + (" (fastest)" if fastest else " (default)")
        self.configuration = (
            ", ".join(f"{key}={value}" for key, value in FASTEST.items())
            if fastest
            else "Debian defaults: CommTimeout=30, ReceiveFrequency=15, LoopSleep=1"
        )
        self._processes: list[Process] = []
        self._watcher: FolderWatcher | None = None

    def missing(self) -> str | None:
        if shutil.which("gammu-smsd") is None:
            return "gammu-smsd not installed (as root: apt-get install gammu-smsd)"
        return None

    async def start(self, folder: Path, ports: list[str]) -> list[Process]:
        inboxes = []
        for index, port in enumerate(ports):
            home = folder / f"gammu{index:03d}"
            for sub in ("inbox", "outbox", "sent", "error"):
                (home / sub).mkdir(parents=True)
            tuning = "".join(f"{key} = {value}\n" for key, value in FASTEST.items())
            config = home / "smsdrc"
            config.write_text(
                f"[gammu]\ndevice = {port}\nconnection = at\n"
                f"[smsd]\nservice = files\nlogfile = {home / 'smsd.log'}\n"
                f"inboxpath = {home / 'inbox'}/\noutboxpath = {home / 'outbox'}/\n"
                f"sentsmspath = {home / 'sent'}/\nerrorsmspath = {home / 'error'}/\n"
                + (tuning if self.fastest else "")
            )
            self._processes.append(
                await Process.start(
                    f"gammu-smsd {index}", ["gammu-smsd", "-c", str(config)], home / "stdout.log"
                )
            )
            inboxes.append(home / "inbox")
        self._watcher = FolderWatcher(inboxes)
        self._watcher.start()
        return list(self._processes)

    async def receipts(self) -> dict[str, float]:
        assert self._watcher is not None
        return self._watcher.stored

    async def stop(self) -> None:
        if self._watcher is not None:
            await self._watcher.stop()
        for process in self._processes:
            await process.stop()
