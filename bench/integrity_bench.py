"""The cost of the database checks on a 100,000-message database (about 78 MB).

``quick_check`` runs at every start of the agent (cut short after
``integrity.QUICK_CHECK_BUDGET``); ``integrity_check`` is ``simedge db check``; the
recovery is ``simedge db recover`` of the same file with one page of the message table
overwritten. Run alone with ``python -m bench integrity_bench`` (``SIZED=N`` for a
smaller database).
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.cli import run_on_event_loop
from agent.store import Store, integrity
from bench import Result
from bench.store_bench import _ingest, _pdus

COMMAND = "python -m bench integrity_bench"


async def _build(path: Path, count: int) -> None:
    """``count`` sent messages with their raw PDUs and delivery attempts, as a site keeps."""
    store = await Store.open(path)
    try:
        sent_at = datetime.now(UTC) - timedelta(days=1)
        pdus = _pdus(count)
        for start in range(0, count, 1000):
            ids = await asyncio.gather(
                *(
                    _ingest(store, iccid, hex_, start + n)
                    for n, (iccid, hex_) in enumerate(pdus[start : start + 1000])
                )
            )
            await asyncio.gather(
                *(store.mark_sent(i, sent_at, 200, '{"response": 1}') for i in ids if i)
            )
        await store.checkpoint()
    finally:
        await store.close()


def _damage_one_message_page(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        size = connection.execute("PRAGMA page_size").fetchone()[0]
        leaves = [
            page
            for (page,) in connection.execute(
                "SELECT pageno FROM dbstat WHERE name = 'message' AND pagetype = 'leaf'"
            )
        ]
    page = sorted(leaves)[len(leaves) // 2]
    with path.open("r+b") as file:
        file.seek((page - 1) * size)
        file.write(random.Random(1).randbytes(size))


def run(sized: int | None = None) -> list[Result]:
    count = sized or int(os.environ.get("SIZED", "100000"))
    with tempfile.TemporaryDirectory(prefix="simedge-bench-") as name:
        path = Path(name) / "simedge.db"
        run_on_event_loop(_build(path, count))
        megabytes = path.stat().st_size / 1e6
        quick = integrity.run_check(path, thorough=False)
        full = integrity.run_check(path, thorough=True)
        _damage_one_message_page(path)
        started = time.perf_counter()
        report = integrity.recover(path)
        recover_seconds = time.perf_counter() - started
    note = f"{count:,} messages, {megabytes:.0f} MB"
    return [
        Result("quick_check at every start", quick.seconds, "s", COMMAND, note),
        Result("simedge db check (integrity_check)", full.seconds, "s", COMMAND, note),
        Result(
            "simedge db recover, one bad page of the message table",
            recover_seconds,
            "s",
            COMMAND,
            f"{note}; {report.rows.get('message', 0):,} messages saved",
        ),
    ]


if __name__ == "__main__":
    for result in run():
        print(f"{result.name}: {result.cell()} {result.unit} ({result.note})")
