"""The outbox pump draining a backlog: 100,000 queued SMS to the stand-in on loopback.

A site back from a long outage: the messages are already committed (inserted in one
transaction, 8 SIMs), the stand-in listens on 127.0.0.1 in a process of its own (OnlineSim
is another machine), and the real pump sends them with addMessage and marks each sent with
``synchronous=FULL``; the figure counts until the pump has recorded the last one sent.
Target: > 500 messages/s.
Run alone with ``python -m bench backlog_bench`` (``BACKLOG=N`` for a smaller run).
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

from agent.store import Store
from agent.store.models import PENDING, Sim, db_time
from agent.uplink import NumberItem, OnlineSimClient, UplinkSettings
from agent.uplink.pump import OutboxPump
from bench import Result

COMMAND = "python -m bench backlog_bench"
KEY = "bench-key-0123456789"
ICCIDS = [f"89701012345678900{n:02d}" for n in range(8)]


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


async def _drain(folder: Path, count: int) -> float:
    standin, url, control_url = await _standin_process()
    store = await Store.open(folder / "backlog.db")
    client = OnlineSimClient(
        UplinkSettings(base_url=f"{url}/api/resellers", api_key=KEY, max_connections=8)
    )
    control = httpx.AsyncClient(base_url=control_url)
    try:
        await store.writer.submit(lambda: _seed(store, count), "seed the backlog")
        await client.send_numbers_online(
            [NumberItem(number=f"+791612300{n:02d}", country_id=7, date_start=1) for n in range(8)]
        )
        done = asyncio.Event()
        pump = OutboxPump(
            client,
            store,
            max_in_flight=8,
            on_outcome=lambda _id, _outcome: done.set() if pump.forwarded >= count else None,
        )
        started = time.perf_counter()
        task = asyncio.create_task(pump.run())
        async with asyncio.timeout(3600):
            await done.wait()
        elapsed = time.perf_counter() - started
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        received = await _received(control, 0)
        if received != count:
            raise RuntimeError(f"the stand-in received {received} of {count} messages")
        return count / elapsed
    finally:
        await control.aclose()
        await client.aclose()
        await store.close()
        standin.terminate()
        await standin.wait()


def run() -> list[Result]:
    count = int(os.environ.get("BACKLOG", "100000"))
    with tempfile.TemporaryDirectory() as folder:
        rate = asyncio.run(_drain(Path(folder), count))
    return [
        Result(
            "backlog drain to the stand-in",
            rate,
            "messages/s",
            COMMAND,
            f"{count:,} queued SMS, 8 SIMs, 8 in flight, loopback, synchronous=FULL",
        )
    ]


if __name__ == "__main__":
    for result in run():
        print(result)
