"""smsd of smstools3: one main process and a forked handler per modem (64 at most).

Two configurations: the defaults (a handler looks at its modem every ``delaytime`` = 10 s
with ``AT+CPMS?``), and the fastest its manual documents: ``delaytime = 1`` (the smallest
whole second), ``check_network = 2`` ("incoming messages are processed faster") and
``check_memory_method = 31`` (one ``AT+CMGL`` lists and reads what is stored).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.peers import FolderWatcher
from bench.site import Process

FASTEST_GLOBAL = {"delaytime": "1", "delaytime_mainprocess": "1"}
FASTEST_MODEM = {"check_network": "2", "check_memory_method": "31"}


class Smstools:
    """``smsd -t -c FILE``; a stored SMS is a file in its incoming folder."""

    def __init__(self, *, fastest: bool) -> None:
        self.fastest = fastest
        self.name = "smstools3 smsd" + (" (fastest)" if fastest else " (default)")
        settings = {**FASTEST_GLOBAL, **FASTEST_MODEM}
        self.configuration = (
            ", ".join(f"{key}={value}" for key, value in settings.items())
            if fastest
            else "defaults: delaytime=10, check_memory_method=1, check_network=1"
        )
        self._process: Process | None = None
        self._watcher: FolderWatcher | None = None

    def missing(self) -> str | None:
        if shutil.which("smsd") is None:
            return "smsd not installed (as root: apt-get install smstools)"
        return None

    async def start(self, folder: Path, ports: list[str]) -> list[Process]:
        home = folder / "smstools"
        for sub in ("incoming", "outgoing", "checked", "failed"):
            (home / sub).mkdir(parents=True)
        lines = [
            "devices = " + ",".join(f"GSM{index + 1}" for index in range(len(ports))),
            *(f"{sub} = {home / sub}" for sub in ("incoming", "outgoing", "checked", "failed")),
            f"logfile = {home / 'smsd.log'}",
            f"infofile = {home / 'smsd.working'}",
            f"pidfile = {home / 'smsd.pid'}",
            "loglevel = 4",
        ]
        if self.fastest:
            lines += [f"{key} = {value}" for key, value in FASTEST_GLOBAL.items()]
        for index, port in enumerate(ports):
            lines += ["", f"[GSM{index + 1}]", f"device = {port}", "incoming = yes"]
            if self.fastest:
                lines += [f"{key} = {value}" for key, value in FASTEST_MODEM.items()]
        config = home / "smsd.conf"
        config.write_text("\n".join(lines) + "\n")
        self._process = await Process.start(
            "smsd", ["smsd", "-t", "-c", str(config)], home / "stdout.log"
        )
        self._watcher = FolderWatcher([home / "incoming"])
        self._watcher.start()
        return [self._process]

    async def receipts(self) -> dict[str, float]:
        assert self._watcher is not None
        return self._watcher.stored

    async def stop(self) -> None:
        if self._watcher is not None:
            await self._watcher.stop()
        if self._process is not None:
            await self._process.stop()
