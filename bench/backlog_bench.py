"""The outbox pump draining a backlog: 100,000 queued SMS to the stand-in on loopback.

A site back from a long outage: the messages are already committed (inserted in one
transaction, 8 SIMs), the stand-in listens on 127.0.0.1 in a process of its own (OnlineSim
is another machine), and the real pump sends them with addMessage and marks each sent with
``synchronous=FULL``; the figure counts until the pump has recorded the last one sent.
Target: > 500 messages/s.
Run alone with ``python -m bench backlog_bench`` (``BACKLOG=N`` for a smaller run).

The Pi-sized run (``bench.pi_bench``) calls :func:`drain` with a CPU limit: the pump then
runs in a child process (``python -m bench.backlog_bench --pump ...``) inside the limit,
and the stand-in stays outside it. The pump runs on the agent's event loop (uvloop where
installed, ``agent.cli.new_event_loop``), as in the agent.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from agent.cli import run_on_event_loop
from agent.store import Store
from agent.store.models import PENDING, Sim, db_time
from agent.uplink import NumberItem, OnlineSimClient, UplinkSettings
from agent.uplink.pump import OutboxPump
from bench import Result
from bench.cpulimit import CpuLimit

COMMAND = "python -m bench backlog_bench"
ROOT = Path(__file__).resolve().parents[1]  # where `python -m bench...` finds the package
PUMP = "--pump"  # the argument that makes this module the pump's child process
DRAIN_WITHIN = 3600.0  # seconds: a drain slower than this is a failure, not a figure
KEY = "bench-key-0123456789"
ICCIDS = [f"89701012345678900{n:02d}" for n in range(8)]
IN_FLIGHT = 8  # addMessage requests at once, the agent's default max_in_flight


def _seed(store: Store, count: int) -> None:
    now = datetime.now(UTC)
    stamp = db_time(now)
    for n, iccid in enumerate(ICCIDS):
        Sim.insert(
            iccid=iccid, number=f"+791612300{n:02d}", first_seen=now, last_seen=now
        ).execute()
    rows = [
        (ICCIDS[n % len(ICCIDS)], "usb-1", "VKcom", "alphanumeric", f"code {n:06d}", "gsm7",
         stamp, 180, stamp, stamp, n + 1, 1, 1, "", PENDING, 0)
        for n in range(count)
    ]  # fmt: skip
    store._database.cursor().executemany(
        'INSERT INTO "message" ("iccid", "slot", "sender", "sender_type", "text", "encoding",'
        ' "scts", "scts_offset_min", "received_at", "ready_at", "seq", "part_count",'
        ' "complete", "missing_parts", "state", "attempts")'
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


async def _standin_process() -> tuple[asyncio.subprocess.Process, str, str]:
    """The stand-in in its own process, as OnlineSim is on its own machine: its CPU is not
    the pump's. Returns the process, its API URL and its control URL."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", "emulate", "onlinesim", "--listen", "127.0.0.1:0",
        "--key", KEY, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    async with asyncio.timeout(30):
        ready = (await process.stdout.readline()).decode()
    fields = dict(part.split("=", 1) for part in ready.split() if "=" in part)
    return process, fields["url"], fields["control"]


async def _received(control: httpx.AsyncClient, since: int) -> int:
    answer = await control.get("/_standin/messages", params={"since": since})
    return len(answer.json()["messages"])


async def _seed_file(database: Path, count: int) -> None:
    store = await Store.open(database)
    try:
        await store.writer.submit(lambda: _seed(store, count), "seed the backlog")
    finally:
        await store.close()


async def pump_backlog(database: Path, url: str, count: int) -> float:
    """The real pump over a seeded ``database`` to the stand-in at ``url`` until it has
    recorded ``count`` messages sent; messages per second, from the pump's start."""
    store = await Store.open(database)
    client = OnlineSimClient(
        UplinkSettings(base_url=f"{url}/api/resellers", api_key=KEY, max_connections=IN_FLIGHT)
    )
    try:
        await client.send_numbers_online(
            [NumberItem(number=f"+791612300{n:02d}", country_id=7, date_start=1) for n in range(8)]
        )
        done = asyncio.Event()
        pump = OutboxPump(
            client,
            store,
            max_in_flight=IN_FLIGHT,
            on_outcome=lambda _id, _outcome: done.set() if pump.forwarded >= count else None,
        )
        started = time.perf_counter()
        task = asyncio.create_task(pump.run())
        async with asyncio.timeout(DRAIN_WITHIN):
            await done.wait()
        elapsed = time.perf_counter() - started
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return count / elapsed
    finally:
        await client.aclose()
        await store.close()


async def _pump_in_child(database: Path, url: str, count: int, limit: CpuLimit) -> float:
    """:func:`pump_backlog` in a process of its own, put under ``limit`` as soon as it
    exists (its interpreter is still starting: the timed part comes much later)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.backlog_bench", PUMP, str(database), url, str(count),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    try:
        limit.add(child.pid)
        async with asyncio.timeout(DRAIN_WITHIN):
            out, err = await child.communicate()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    if child.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-1:]
        raise RuntimeError(f"the pump's process exited {child.returncode}: {tail}")
    return float(out.split()[-1])


async def _drain(folder: Path, count: int, limit: CpuLimit | None) -> float:
    standin, url, control_url = await _standin_process()
    control = httpx.AsyncClient(base_url=control_url)
    database = folder / "backlog.db"
    try:
        await _seed_file(database, count)
        if limit is None:
            rate = await pump_backlog(database, url, count)
        else:
            rate = await _pump_in_child(database, url, count, limit)
        received = await _received(control, 0)
        if received != count:
            raise RuntimeError(f"the stand-in received {received} of {count} messages")
        return rate
    finally:
        await control.aclose()
        standin.terminate()
        await standin.wait()


def drain(count: int, limit: CpuLimit | None = None) -> float:
    """Messages/s of a backlog of ``count`` drained; with ``limit``, the pump runs in a
    child process under it, the stand-in (OnlineSim) stays outside."""
    with tempfile.TemporaryDirectory() as folder:
        return run_on_event_loop(_drain(Path(folder), count, limit))


def setup(count: int) -> str:
    """What a drain of ``count`` messages was, for a row's note."""
    return (
        f"{count:,} queued SMS, {len(ICCIDS)} SIMs, {IN_FLIGHT} in flight, loopback, "
        "synchronous=FULL"
    )


def run() -> list[Result]:
    count = int(os.environ.get("BACKLOG", "100000"))
    return [
        Result(
            "backlog drain to the stand-in",
            drain(count),
            "messages/s",
            COMMAND,
            setup(count),
        )
    ]


if __name__ == "__main__":
    if sys.argv[1:2] == [PUMP]:  # the child of _pump_in_child: DATABASE URL COUNT
        database, url, count = sys.argv[2:5]
        print(run_on_event_loop(pump_backlog(Path(database), url, int(count))))
    else:
        for result in run():
            print(result)
