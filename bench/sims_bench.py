"""`simedge sims` and the SIMs screen on a big site: the time of one ``queries.sims`` over
64 SIMs with a month of SMS (300,000 messages) and a year of daily balance answers, on a
real file. Run alone with ``python -m bench.sims_bench``.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.cli import run_on_event_loop
from agent.store import Store, queries
from agent.store.models import HISTORY_PER_SIM, db_time

COMMAND = "python -m bench.sims_bench"
SIMS = 64
MESSAGES = 300_000
NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)


def _fill(path: Path) -> None:
    """Rows written straight with SQL: the figure is the read, not the ingest."""
    iccids = [f"897010123456789{n:04d}" for n in range(SIMS)]
    with sqlite3.connect(path) as connection:
        connection.executemany(
            "INSERT INTO sim (iccid, operator, last_slot, first_seen, last_seen)"
            " VALUES (?, '25001', ?, ?, ?)",
            [(i, f"1.1.{n}", db_time(NOW - timedelta(days=60)), db_time(NOW)) for n, i in
             enumerate(iccids)],
        )  # fmt: skip
        connection.executemany(
            "INSERT INTO message (iccid, slot, sender, sender_type, text, encoding, scts,"
            " scts_offset_min, received_at, part_count, complete, missing_parts, state,"
            " attempts) VALUES (?, '1.1.1', 'VKcom', 'alphanumeric', 'code 123456', 'gsm7',"
            " ?, 180, ?, 1, 1, '', 'sent', 1)",
            (
                (iccids[n % SIMS], at, at)
                for n in range(MESSAGES)
                for at in [db_time(NOW - timedelta(seconds=30 * 86400 * n / MESSAGES))]
            ),
        )
        connection.executemany(
            "INSERT INTO sim_balance (iccid, at, slot, code, amount, currency)"
            " VALUES (?, ?, '1.1.1', '*100#', ?, 'RUB')",
            (
                (iccid, db_time(NOW - timedelta(days=day)), 100.0 - day / 10)
                for iccid in iccids
                for day in range(HISTORY_PER_SIM)
            ),
        )


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "simedge.db"
        store = await Store.open(path)
        await store.close()
        _fill(path)
        timings = []
        for _ in range(3):
            with queries.reading(path):
                started = time.perf_counter()
                rows = queries.sims(NOW.timestamp(), low_balance=10)
                timings.append(time.perf_counter() - started)
        assert len(rows) == SIMS
        assert sum(row.sms_all for row in rows) == MESSAGES
        print(
            f"queries.sims: {SIMS} SIMs, {MESSAGES:,} messages, {HISTORY_PER_SIM} balance"
            f" answers each: best of 3 {min(timings) * 1000:.0f} ms"
            f" (worst {max(timings) * 1000:.0f} ms)  [{COMMAND}]"
        )


if __name__ == "__main__":
    run_on_event_loop(main())
