"""Disk full in the data folder: the agent stops taking SMS off the modems (they stay on
the SIM), says so, and resumes when space returns.

The data folder is a 16 MiB tmpfs mounted for the run (root only: otherwise the scenario
is skipped and says why). 4 SIM800 modems (they store SMS on the SIM and announce them
with +CMTI). The agent forwards 10 SMS; then a ballast file fills the folder to the last
byte and 20 more SMS arrive. Checked: the agent logs that the data folder is full and its
modems show the fault "disk full: SMS left on the SIM" in the control snapshot; the SMS
stay on the emulated SIMs (``simedge emulate list``'s stored counts); the agent is alive.
Then the ballast is deleted: every SMS is delivered (the worker tries its sweep again
every 60 s, the agent's built-in ``disk_full_retry``, so that is the bound on resuming).

Budget: ~15 s to fill and check, at most 90 s to resume; typically ~70 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
from pathlib import Path
from typing import Any

from bench.chaos import FAIL, PASS, SKIP, Verdict
from bench.chaos.world import World, WorldError

NAME = "diskfull"
BUDGET = 120.0
MODEMS = 4
SIZE = "16m"
BEFORE, DURING = 10, 20
RESUME_WITHIN = 90.0
FULL_FAULT = "disk full"


def _fill(folder: Path) -> Path:
    """Write a ballast file until the filesystem refuses another byte."""
    ballast = folder / "ballast"
    chunk = b"\0" * (64 * 1024)
    with ballast.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        with contextlib.suppress(OSError):
            while True:
                handle.write(b"\0")
    return ballast


def _faulted(snapshot: dict[str, Any]) -> int:
    return sum(1 for m in snapshot.get("modems", ()) if FULL_FAULT in (m.get("fault") or ""))


async def run(folder: Path) -> Verdict:
    if os.geteuid() != 0:
        return Verdict(NAME, SKIP, "needs root to mount a small tmpfs as the data folder")
    data = folder / "data"
    data.mkdir()
    await _command("mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(data))
    try:
        return await _scenario(folder, data)
    finally:
        await _command("umount", "-l", str(data))


async def _command(*argv: str) -> None:
    process = await asyncio.create_subprocess_exec(*argv)
    if await process.wait() != 0:
        raise WorldError(f"{' '.join(argv)} exited {process.returncode}")


async def _scenario(folder: Path, data: Path) -> Verdict:
    started = time.monotonic()

    def fail(why: str) -> Verdict:
        return Verdict(NAME, FAIL, why, time.monotonic() - started)

    async with World(folder, modems=MODEMS, profile="sim800", seed=20, data_dir=data) as world:
        await world.start_agent()
        if await world.until_ready(MODEMS) < MODEMS:
            return fail("the modems did not all get ready")
        for n in range(BEFORE):
            await world.inject(n % MODEMS)
        if (tally := await world.until_delivered(30.0)).lost:
            return fail(f"before the disk filled: {tally.figures()}")
        ballast = _fill(data)
        for n in range(DURING):
            await world.inject(n % MODEMS)
        said = await world.agent.wait_log(lambda line: "data folder is full" in line, 20.0)
        snapshot = await world.until_snapshot(lambda s: _faulted(s) == MODEMS, 20.0)
        stored = sum(
            m["stored"].get("SM", 0) + m["stored"].get("ME", 0) for m in await world.modem_states()
        )
        tally = await world.refresh()
        if not said:
            return fail("no log line says the data folder is full")
        if _faulted(snapshot) < MODEMS:
            return fail(f"only {_faulted(snapshot)} of {MODEMS} modems show the disk-full fault")
        if stored < len(tally.lost):
            return fail(f"{len(tally.lost)} SMS not delivered but only {stored} left on the SIMs")
        if not world.agent.alive:
            return fail("the agent died when the disk filled")
        full_figures = (
            f"{stored} SMS left on the SIMs while full, {_faulted(snapshot)} modems say so"
        )
        ballast.unlink()
        freed = time.monotonic()
        tally = await world.until_delivered(RESUME_WITHIN)
        if tally.lost:
            return fail(f"after space returned: {tally.figures()}; missing: {tally.missing()}")
        return Verdict(
            NAME,
            PASS,
            f"{full_figures}; all {tally.injected} delivered {time.monotonic() - freed:.0f} s "
            f"after space returned ({tally.duplicates} duplicates)",
            time.monotonic() - started,
        )
