"""A damaged database stops the store at open with the way out, never later in a prune.

Real SQLite files, damaged the way a failed copy or a worn SD card damages them: cut to
0 bytes, or one page mid-file overwritten with garbage.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.errors import StoreDamaged
from agent.store import Store, integrity
from tests.store.conftest import T0, count_rows, ingest, pdus

MESSAGES = 400


def fill(path: Path, count: int = MESSAGES) -> None:
    """A store of ``count`` messages, half of them sent, closed cleanly."""
    asyncio.run(_fill(path, count))


def open_and_close(path: Path) -> None:
    async def work() -> None:
        store = await Store.open(path)
        await store.close()

    asyncio.run(work())


def refusal(path: Path) -> str:
    """What the store says when it refuses to open ``path``."""
    with pytest.raises(StoreDamaged) as caught:
        open_and_close(path)
    return str(caught.value)


async def _fill(path: Path, count: int) -> None:
    store = await Store.open(path)
    try:
        results = await asyncio.gather(
            *(ingest(store, pdus(f"code {n:05d} " + "x" * 120)[0], index=n) for n in range(count))
        )
        for result in results[: count // 2]:
            assert result.message_id is not None
            await store.mark_sent(result.message_id, T0, 200, '{"response":1}')
    finally:
        await store.close()


def page_size(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return int(connection.execute("PRAGMA page_size").fetchone()[0])


def damage_page(path: Path, table: str = "message", *, at: float = 0.25, seed: int = 7) -> int:
    """Overwrite with random bytes a leaf page of ``table``, ``at`` of the way into it (a
    quarter: among the sent messages, which the prune deletes); return its number."""
    with sqlite3.connect(path) as connection:
        size = int(connection.execute("PRAGMA page_size").fetchone()[0])
        leaves = [
            page
            for (page,) in connection.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY path",
                (table,),
            )
        ]
    page = leaves[min(len(leaves) - 1, int(len(leaves) * at))]
    with path.open("r+b") as file:
        file.seek((page - 1) * size)  # SQLite counts pages from 1
        file.write(random.Random(seed).randbytes(size))
        file.flush()
        os.fsync(file.fileno())
    return page


def test_a_new_database_is_created_whole(db_path: Path) -> None:
    open_and_close(db_path)
    assert db_path.stat().st_size > 0
    assert not db_path.with_name("simedge.db.new").exists()
    assert count_rows(db_path, "schema_version") >= 1


def test_a_zero_byte_database_is_refused_with_the_way_out(db_path: Path) -> None:
    fill(db_path, 10)
    db_path.write_bytes(b"")  # a restore that failed half-way

    message = refusal(db_path)
    assert str(db_path) in message
    assert "0 bytes" in message
    assert "simedge db recover" in message
    assert db_path.stat().st_size == 0, "the file was replaced by a new database"


def test_a_zero_byte_database_is_refused_even_beside_a_wal(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"")
    db_path.with_name("simedge.db-wal").write_bytes(b"")
    with pytest.raises(StoreDamaged, match="0 bytes"):
        open_and_close(db_path)


def test_a_corrupt_page_mid_file_stops_the_open_not_the_prune(db_path: Path) -> None:
    fill(db_path)
    page = damage_page(db_path)

    message = refusal(db_path)
    assert str(db_path) in message
    assert "damaged" in message
    assert "simedge db check" in message
    assert "simedge db recover" in message
    # SQLite names the page it could not read, or says the b-tree will not parse.
    assert f"Page {page}:" in message or "malformed" in message, message


def test_quick_check_is_cut_short_by_its_budget(db_path: Path) -> None:
    fill(db_path, 50)
    started = time.monotonic()
    result = integrity.run_check(db_path, thorough=True, budget=0.0)
    assert not result.finished
    assert not result.problems
    assert time.monotonic() - started < 1.0
    finished = integrity.run_check(db_path, thorough=True, budget=30.0)
    assert finished.ok


def test_damage_met_while_running_stops_with_the_way_out(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file too large to check in the budget starts unchecked; the prune that meets the
    bad page raises StoreDamaged (which stops the agent), not a bare sqlite3 error."""
    fill(db_path)
    damage_page(db_path)
    monkeypatch.setattr(integrity, "QUICK_CHECK_BUDGET", 0.0)

    async def prune() -> None:
        store = await Store.open(db_path)
        try:
            await store.prune(datetime.now(UTC))
        finally:
            await store.close()

    with pytest.raises(StoreDamaged) as caught:
        asyncio.run(prune())
    assert str(db_path) in str(caught.value)
    assert "simedge db recover" in str(caught.value)


def test_recover_saves_what_reads_and_keeps_the_damaged_file(db_path: Path) -> None:
    fill(db_path)
    damage_page(db_path)
    damaged_bytes = db_path.read_bytes()

    report = integrity.recover(db_path, now=datetime(2026, 12, 2, 8, 30, tzinfo=UTC))

    assert report.kept == db_path.with_name("simedge.db.damaged-20261202T083000Z")
    assert report.kept.read_bytes() == damaged_bytes, "the damaged file was changed"
    assert integrity.run_check(db_path, thorough=True).ok
    (messages,) = [table for table in report.tables if table.table == "message"]
    assert messages.unreadable, "the bad page cost no rows?"
    lost = sum(last - first + 1 for first, last in messages.unreadable)
    assert MESSAGES * 0.8 <= messages.saved < MESSAGES, report
    assert messages.saved + lost >= MESSAGES, "rows lost beyond the ranges reported"
    assert report.rows["received_pdu"] == MESSAGES  # other tables whole
    # The raw PDU of each lost message is kept, unattached; nothing refers to a lost row.
    assert count_rows(db_path, "received_pdu", "message_id IS NULL") == MESSAGES - messages.saved
    assert (
        count_rows(db_path, "delivery_attempt", "message_id NOT IN (SELECT id FROM message)") == 0
    )
    with sqlite3.connect(db_path) as connection:
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
    assert report.rows["schema_version"] >= 1
    # The agent opens the recovered file and keeps working on it.

    async def work_on() -> int | None:
        store = await Store.open(db_path)
        try:
            result = await ingest(store, pdus("after the recovery")[0], index=999)
            await store.prune(datetime.now(UTC))
            return result.message_id
        finally:
            await store.close()

    assert asyncio.run(work_on()) is not None


@pytest.mark.parametrize("at", [0.0, 1.0], ids=["first-page", "last-page"])
def test_recover_past_a_bad_first_or_last_page(db_path: Path, at: float) -> None:
    fill(db_path)
    damage_page(db_path, at=at)
    report = integrity.recover(db_path)
    (messages,) = [table for table in report.tables if table.table == "message"]
    (first, last) = messages.unreadable[0]
    assert len(messages.unreadable) == 1
    assert MESSAGES * 0.8 <= messages.saved < MESSAGES
    if at == 1.0:
        assert last == 2**63 - 1  # nothing read after it: the table's end
    else:
        assert first == 0  # nothing read before it: from the table's start
    assert integrity.run_check(db_path, thorough=True).ok


def test_recover_of_a_zero_byte_file_moves_it_aside_for_a_new_start(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"")
    report = integrity.recover(db_path)
    assert report.rows == {}
    assert report.kept.exists()
    assert report.kept.stat().st_size == 0
    assert not db_path.exists()
    open_and_close(db_path)  # a new database, since a person chose it
    assert count_rows(db_path, "message") == 0


def test_a_new_database_takes_nothing_from_the_log_of_a_deleted_one(db_path: Path) -> None:
    """simedge.db deleted by hand (to start afresh), its -wal left behind: SQLite would
    replay that log's pages into the new file and damage it. The new database starts
    sound and empty; the old log is kept aside, never deleted (SMS may be in it)."""
    left_log = db_path.with_name(db_path.name + "-wal")

    async def log_left_by_a_running_agent() -> bytes:
        store = await Store.open(db_path)
        try:
            for n in range(100):
                await ingest(store, pdus(f"code {n:05d} " + "x" * 100)[0], index=n)
            await store.checkpoint()
            for n in range(100, 110):
                await ingest(store, pdus(f"code {n:05d} " + "y" * 100)[0], index=n)
            return left_log.read_bytes()  # what a power cut leaves beside the file
        finally:
            await store.close()

    kept = asyncio.run(log_left_by_a_running_agent())
    assert len(kept) > 0
    db_path.unlink()
    left_log.write_bytes(kept)

    open_and_close(db_path)

    assert count_rows(db_path, "message") == 0
    with contextlib.closing(sqlite3.connect(db_path)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    (aside,) = db_path.parent.glob("simedge.db-wal.orphaned-*")
    assert aside.read_bytes() == kept
