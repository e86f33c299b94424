"""The store cannot write while SMS wait to be uploaded: first a full disk, then an ext4
file system that turned read-only. OnlineSim accepts an SMS, recording it as sent fails:
the agent must stop sending ("paused: store not writable"), not send it again and again.

Both phases, each with its own world: 4 modems; OnlineSim down while 8 SMS (2 per modem)
are stored; then the store is made unwritable and OnlineSim comes back. Checked while the
store cannot write (``OBSERVE`` seconds): the agent's health says
``store_not_writable`` and the addMessage calls stay at most 2 per pending SMS. Then the
store is fixed and every SMS must be delivered, with at most 2 calls per SMS in all.

- full: the data folder is a 16 MiB tmpfs filled to the last byte by a ballast file;
  fixed by deleting it (the agent resumes by itself: its store probe).
- read-only: the data folder is an ext4 on a loop device mounted errors=remount-ro;
  ext4's own ``trigger_fs_error`` makes it read-only as a failing SD card does. Fixed as
  a person would: stop the agent, unmount, fsck, mount, start the agent (an SMS
  accepted but not recorded before the stop is then sent once more: the promise's
  "duplicates only after a crash", counted in the calls).

Root only (mounts); skipped otherwise. Budget: 2 x (~25 s setup + 30 s + ~30 s).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.chaos import FAIL, PASS, SKIP, Verdict
from bench.chaos.diskfull import _command, _fill
from bench.chaos.world import World, WorldError

NAME = "storefull"
BUDGET = 300.0
MODEMS = 4
BACKLOG = 8
OBSERVE = 15.0  # seconds of "cannot write" watched after the agent says so
MAX_CALLS_PER_SMS = 2


def _pending(snapshot: dict[str, Any]) -> int:
    outbox = snapshot.get("outbox") or {}
    return int(outbox.get("pending", 0)) + int(outbox.get("backing_off", 0))


async def _until_paused(world: World, seconds: float) -> dict[str, Any] | None:
    """The agent's health once it says the store cannot write (None if it never does).
    The stand-in offers no event stream of the agent's health: polled every 0.25 s."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        health = await world.agent_health()
        if health is not None and health["uplink"]["state"] == "store_not_writable":
            return health
        await asyncio.sleep(0.25)
    return None


async def _phase(folder: Path, data: Path, how: str) -> tuple[bool, str]:
    """One world: backlog, unwritable, observe, fix, deliver. (passed, figures)."""
    async with World(folder, modems=MODEMS, profile="sim800", seed=51, data_dir=data) as world:
        if not await world.start_ready():
            return False, f"{how}: the modems did not all get ready"
        await world.standin_faults(down=True)
        for n in range(BACKLOG):
            await world.inject(n % MODEMS)
        snapshot = await world.until_snapshot(lambda s: _pending(s) >= BACKLOG, 30.0)
        if _pending(snapshot) < BACKLOG:
            return False, f"{how}: only {_pending(snapshot)} of {BACKLOG} SMS stored"
        before = len(await world.add_message_calls())
        if how == "full":
            ballast = _fill(data)
        else:
            source = (await _output("findmnt", "-no", "SOURCE", str(data))).strip()
            _make_read_only(source)
        await world.standin_faults(clear=True)
        health = await _until_paused(world, 30.0)
        if health is None:
            return False, f"{how}: the agent never said the store cannot write"
        await asyncio.sleep(OBSERVE)  # the window in which the old agent sent hundreds
        during = len(await world.add_message_calls()) - before
        still = await world.agent_health()
        if still is None or still["uplink"]["state"] != "store_not_writable":
            return False, f"{how}: the pause ended while the store could not write"
        fixed = time.monotonic()
        if how == "full":
            ballast.unlink()
        else:
            await world.agent.stop()
            await _remount(data)
            await world.start_agent()
        tally = await world.until_delivered(60.0)
        calls = len(await world.add_message_calls()) - before
        figures = (
            f"{how}: {during} addMessage calls in {OBSERVE:.0f} s paused "
            f"(health {health['agent']}, uplink {health['uplink']['state']}), "
            f"{calls} calls for {BACKLOG} SMS in all, delivered "
            f"{time.monotonic() - fixed:.1f} s after the fix, {tally.duplicates} duplicates"
        )
        if tally.lost:
            return False, f"{figures}; lost {len(tally.lost)}"
        if calls > MAX_CALLS_PER_SMS * BACKLOG:
            return False, f"{figures}: more than {MAX_CALLS_PER_SMS} calls per SMS"
        return True, figures


def _make_read_only(device: str) -> None:
    """An ext4 error on purpose: mounted errors=remount-ro, the file system turns
    read-only at once (and reports I/O errors to writers), as on a failing card."""
    Path(f"/sys/fs/ext4/{Path(device).name}/trigger_fs_error").write_text("chaos\n")


async def _output(*argv: str) -> str:
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    return out.decode()


async def _remount(data: Path) -> None:
    """Unmount the read-only ext4, fsck it, mount it again read-write; WorldError when it
    does not come back read-write (the run then says nothing about the agent)."""
    source = (await _output("findmnt", "-no", "SOURCE", str(data))).strip()
    await _command("umount", str(data))
    process = await asyncio.create_subprocess_exec(
        "fsck.ext4", "-fy", source, stdout=asyncio.subprocess.DEVNULL
    )
    checked = await process.wait()  # 1: errors corrected, as expected after the error
    await _command("mount", "-o", "errors=remount-ro", source, str(data))
    options = (await _output("findmnt", "-no", "SOURCE,OPTIONS", str(data))).strip()
    if not options.startswith(source) or ",rw" not in f",{options.split()[-1]}":
        raise WorldError(f"{data} not back read-write after fsck ({checked}): {options!r}")


async def run(folder: Path) -> Verdict:
    import os

    started = time.monotonic()
    if os.geteuid() != 0:
        return Verdict(NAME, SKIP, "needs root to mount a tmpfs and a loop ext4 as data folders")
    results = []
    full = folder / "full"
    (full / "data").mkdir(parents=True)
    await _command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(full / "data"))
    try:
        results.append(await _phase(full, full / "data", "full"))
    finally:
        await _command("umount", "-l", str(full / "data"))
    ro = folder / "ro"
    (ro / "data").mkdir(parents=True)
    image = ro / "ext4.img"
    with image.open("wb") as handle:
        handle.truncate(64 * 1024 * 1024)
    device = (await _output("losetup", "-f", "--show", str(image))).strip()
    try:
        await _command("mkfs.ext4", "-q", device)
        await _command("mount", "-o", "errors=remount-ro", device, str(ro / "data"))
        try:
            results.append(await _phase(ro, ro / "data", "read-only"))
        finally:
            await _command("umount", "-l", str(ro / "data"))
    finally:
        await _command("losetup", "-d", device)
    passed = all(ok for ok, _ in results)
    detail = "; ".join(figures for _, figures in results)
    return Verdict(NAME, PASS if passed else FAIL, detail, time.monotonic() - started)
