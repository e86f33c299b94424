"""python-gsmmodem-new, the ``+CMTI``-driven Python library: stored = its callback ran."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from bench.site import Process

RUNNER = Path(__file__).with_name("gsmmodem_runner.py")


class GsmModemLibrary:
    """One process, one ``GsmModem`` per port; receipts read from the runner's file."""

    name = "python-gsmmodem-new"
    configuration = (
        "GsmModem(port, 115200, smsReceivedCallbackFunc=cb)"
        ".connect(waitingForModemToStartInSeconds=5) per port, one process"
    )

    def __init__(self) -> None:
        self._process: Process | None = None
        self._out: Path | None = None
        self._stored: dict[str, float] = {}

    def missing(self) -> str | None:
        if importlib.util.find_spec("gsmmodem") is None:
            return "python-gsmmodem-new not installed (.venv/bin/pip install python-gsmmodem-new)"
        return None

    async def start(self, folder: Path, ports: list[str]) -> list[Process]:
        self._out = folder / "gsmmodem.tsv"
        self._out.touch()
        self._process = await Process.start(
            self.name,
            [sys.executable, str(RUNNER), str(self._out), *ports],
            folder / "gsmmodem.log",
        )
        await self._process.wait_for_line("gsmmodem ready", seconds=120)
        return [self._process]

    async def receipts(self) -> dict[str, float]:
        assert self._out is not None
        for line in self._out.read_text().splitlines():
            stamp, _, text = line.partition("\t")
            if text:
                self._stored.setdefault(text, float(stamp))
        return self._stored

    async def stop(self) -> None:
        if self._process is not None:
            await self._process.stop()
