"""Durability, idempotence and the single writer, on real SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from agent.errors import DiskFull, StoreDamaged, StoreError
from agent.store import Store
from agent.store.models import Event
from tests.store.conftest import (
    ICCID,
    OTHER_ICCID,
    T0,
    WriterGate,
    count_rows,
    file_size,
    ingest,
    pdus,
    plain_connection,
)


async def test_the_pragmas_are_in_effect(store: Store, db_path: Path) -> None:
    values = await store.read(
        lambda: {
            name: store._database.execute_sql(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "synchronous", "foreign_keys", "auto_vacuum")
        }
    )
    # synchronous 2 = FULL, auto_vacuum 2 = INCREMENTAL
    assert values == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "auto_vacuum": 2}


async def test_an_ingest_is_committed_when_it_returns(store: Store, db_path: Path) -> None:
    result = await ingest(store, pdus("Your code is 4711")[0])

    # Another connection (another process after a power cut) sees the PDU and the message.
    where = f"id = {result.pdu_id} AND message_id = {result.message_id}"
    assert count_rows(db_path, "received_pdu", where) == 1
    with plain_connection(db_path) as other:
        text, state = other.execute(
            "SELECT text, state FROM message WHERE id = ?", (result.message_id,)
        ).fetchone()
    assert (text, state) == ("Your code is 4711", "pending")


async def trace_writer(store: Store, statements: list[str]) -> None:
    """Collect every statement the writer's connection runs from now on."""

    def trace() -> None:
        store._database.connection().set_trace_callback(statements.append)

    await store.writer.submit(trace, "trace the writer's statements", bare=True)


async def test_a_one_part_sms_writes_its_pdu_row_once(store: Store, db_path: Path) -> None:
    statements: list[str] = []
    await trace_writer(store, statements)
    result = await ingest(store, pdus("Your code is 4712")[0])

    assert result.message_id is not None
    # The message first, then its PDU already pointing at it: no UPDATE of the PDU row.
    writes = [s.split("(")[0].strip() for s in statements if s.startswith(("INSERT", "UPDATE"))]
    assert writes == ['INSERT INTO "sim"', 'INSERT INTO "message"', 'INSERT INTO "received_pdu"']


async def test_the_same_pdu_twice_makes_one_message(store: Store, db_path: Path) -> None:
    hex_pdu = pdus("once")[0]
    first = await ingest(store, hex_pdu)
    # A modem printing the same PDU in lower case and wrapped is still the same PDU.
    again = await ingest(store, hex_pdu.lower()[:20] + "\n" + hex_pdu.lower()[20:], index=7)

    assert not first.duplicate
    assert first.message_id is not None
    assert again.duplicate
    assert again.message_id is None
    assert again.pdu_id == first.pdu_id
    assert count_rows(db_path, "message") == 1


async def test_a_duplicate_leaves_nothing_behind(store: Store, db_path: Path) -> None:
    statements: list[str] = []
    first = await ingest(store, pdus("the first")[0])
    await trace_writer(store, statements)
    again = await ingest(store, pdus("the first")[0], index=2)
    following = await ingest(store, pdus("the next")[0], index=3)

    assert again.duplicate
    assert again.pdu_id == first.pdu_id
    assert first.message_id is not None
    # The message made before the PDU's INSERT found its twin was deleted again.
    assert f'DELETE FROM "message" WHERE "id" = {first.message_id + 1}' in statements
    with plain_connection(db_path) as other:
        rows = other.execute("SELECT id, seq, text FROM message ORDER BY seq").fetchall()
        pdu_rows = other.execute("SELECT id, message_id FROM received_pdu ORDER BY id").fetchall()
    assert rows == [(first.message_id, 1, "the first"), (following.message_id, 2, "the next")]
    assert pdu_rows == [(first.pdu_id, first.message_id), (following.pdu_id, following.message_id)]


async def test_the_same_pdu_on_another_sim_is_another_message(store: Store, db_path: Path) -> None:
    hex_pdu = pdus("broadcast")[0]
    await ingest(store, hex_pdu)
    other = await ingest(store, hex_pdu, iccid=OTHER_ICCID)

    assert not other.duplicate
    assert count_rows(db_path, "message") == 2


async def test_reading_again_after_a_crash_before_delete_is_idempotent(db_path: Path) -> None:
    hex_pdu = pdus("survives a crash")[0]
    store = await Store.open(db_path)
    await ingest(store, hex_pdu)
    await store.close()  # the agent died before AT+CMGD: the SMS is still on the SIM

    store = await Store.open(db_path)
    try:
        again = await ingest(store, hex_pdu)
    finally:
        await store.close()

    assert again.duplicate
    assert count_rows(db_path, "message") == 1


async def test_an_undecodable_pdu_is_kept_with_its_error(store: Store, db_path: Path) -> None:
    broken = "07919761989901F0040B919761214365F7000862"  # cut inside the timestamp
    result = await ingest(store, broken)

    assert result.error
    assert "octet" in result.error
    assert result.message_id is None
    assert not result.duplicate
    with plain_connection(db_path) as other:
        row = other.execute(
            "SELECT pdu_hex, status, error FROM received_pdu WHERE id = ?", (result.pdu_id,)
        ).fetchone()
    assert row == (broken, "undecodable", result.error)
    assert count_rows(db_path, "event", "kind = 'pdu_undecodable'") == 1
    assert count_rows(db_path, "message") == 0  # never uploaded
    assert (await ingest(store, broken)).duplicate  # and idempotent like any PDU


async def test_concurrent_ingests_share_one_commit(
    store: Store, db_path: Path, gate: WriterGate
) -> None:
    gate_done = asyncio.ensure_future(store.writer.submit(gate.job, "gate"))
    assert await asyncio.to_thread(gate.entered.wait, 5)
    before = store.writer.transactions
    texts = [f"message number {n}" for n in range(200)]
    ingests = [
        asyncio.ensure_future(ingest(store, pdus(text)[0], index=n)) for n, text in enumerate(texts)
    ]
    await asyncio.sleep(0)  # one loop turn: every task runs up to its await (not a wait)
    assert store.writer.backlog == 200

    gate.release.set()
    results = await asyncio.gather(*ingests)
    await gate_done

    assert all(result.message_id for result in results)
    assert count_rows(db_path, "message") == 200
    # the gate's transaction, then ONE for all 200 ingests
    assert store.writer.transactions - before == 2


async def test_a_failing_job_rolls_back_only_itself(
    store: Store, db_path: Path, gate: WriterGate
) -> None:
    def failing_job() -> None:
        Event.create(at=T0, level="info", kind="half-done", text="must not survive")
        raise ValueError("this job breaks")

    gate_done = asyncio.ensure_future(store.writer.submit(gate.job, "gate"))
    assert await asyncio.to_thread(gate.entered.wait, 5)
    before = store.writer.transactions
    first = asyncio.ensure_future(ingest(store, pdus("before the failure")[0]))
    broken = asyncio.ensure_future(store.writer.submit(failing_job, "a broken job"))
    last = asyncio.ensure_future(ingest(store, pdus("after the failure")[0]))
    await asyncio.sleep(0)  # one loop turn: all three are queued behind the gate
    gate.release.set()
    await gate_done

    assert (await first).message_id
    assert (await last).message_id
    with pytest.raises(StoreError, match="a broken job: ValueError: this job breaks"):
        await broken
    assert count_rows(db_path, "event", "kind = 'half-done'") == 0
    assert count_rows(db_path, "message") == 2
    assert store.writer.transactions - before == 2


async def test_a_batch_runs_without_savepoints_until_a_job_fails(
    store: Store, db_path: Path, gate: WriterGate
) -> None:
    statements: list[str] = []
    await trace_writer(store, statements)

    async def batch(*jobs: asyncio.Future[object]) -> list[object]:
        gate_done = asyncio.ensure_future(store.writer.submit(gate.job, "gate"))
        assert await asyncio.to_thread(gate.entered.wait, 5)
        queued = [asyncio.ensure_future(job) for job in jobs]
        await asyncio.sleep(0)  # one loop turn: all are queued behind the gate
        statements.clear()
        gate.release.set()
        await gate_done
        gate.entered.clear()
        gate.release.clear()
        return await asyncio.gather(*queued, return_exceptions=True)

    results = await batch(*(ingest(store, pdus(f"plain {n}")[0], index=n) for n in range(3)))
    assert all(result.message_id for result in results)  # type: ignore[attr-defined]
    assert not [s for s in statements if "SAVEPOINT" in s.upper()], statements
    # The gate's transaction ends, then ONE transaction holds the three ingests.
    assert [s for s in statements if s.startswith(("BEGIN", "COMMIT"))] == [
        "COMMIT",
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]

    def failing_job() -> None:
        raise ValueError("this job breaks")

    results = await batch(
        ingest(store, pdus("with a failure")[0], index=7),
        store.writer.submit(failing_job, "a broken job"),
    )
    assert results[0].message_id  # type: ignore[union-attr]
    assert isinstance(results[1], StoreError)
    # The plain run was rolled back; the run again put each job in a savepoint.
    assert "ROLLBACK" in statements
    assert statements.count('SAVEPOINT "job"') == 2
    assert count_rows(db_path, "message") == 4


async def test_a_batch_wakes_the_event_loop_once(
    store: Store, gate: WriterGate, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    wakeups_by_writer: list[int] = []
    call_soon_threadsafe = loop.call_soon_threadsafe

    def counting(*args: object, **kwargs: object) -> object:
        if threading.current_thread().name == "store-writer":
            wakeups_by_writer.append(1)
        return call_soon_threadsafe(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "call_soon_threadsafe", counting)
    gate_done = asyncio.ensure_future(store.writer.submit(gate.job, "gate"))
    assert await asyncio.to_thread(gate.entered.wait, 5)
    ingests = [
        asyncio.ensure_future(ingest(store, pdus(f"SMS {n}")[0], index=n)) for n in range(50)
    ]
    await asyncio.sleep(0)  # one loop turn: all 50 are queued behind the gate
    wakeups_by_writer.clear()
    gate.release.set()
    await gate_done
    results = await asyncio.gather(*ingests)

    assert all(result.message_id for result in results)
    # The gate's own outcome, then the batch's 50 outcomes: one wake-up each, not 51.
    assert len(wakeups_by_writer) == 2


async def test_a_full_disk_raises_disk_full_and_spares_the_batch(
    store: Store, db_path: Path, gate: WriterGate
) -> None:
    # A real SQLITE_FULL: cap the writer connection's file at its size plus a few pages.
    database = store._database

    def cap_file(extra_pages: int) -> None:
        pages = database.execute_sql("PRAGMA page_count").fetchone()[0]
        database.execute_sql(f"PRAGMA max_page_count = {pages + extra_pages}")

    await store.writer.submit(lambda: cap_file(8), "cap", bare=True)

    def too_big() -> None:
        Event.create(at=T0, level="info", kind="huge", text="x" * 200_000)

    gate_done = asyncio.ensure_future(store.writer.submit(gate.job, "gate"))
    assert await asyncio.to_thread(gate.entered.wait, 5)
    first = asyncio.ensure_future(ingest(store, pdus("fits before")[0]))
    huge = asyncio.ensure_future(store.writer.submit(too_big, "a huge event"))
    last = asyncio.ensure_future(ingest(store, pdus("fits after")[0]))
    await asyncio.sleep(0)  # one loop turn: all three are queued behind the gate
    gate.release.set()
    await gate_done

    with pytest.raises(DiskFull, match="a huge event"):
        await huge
    # SQLite rolled the whole transaction back; the writer ran the others again.
    assert (await first).message_id
    assert (await last).message_id
    assert count_rows(db_path, "message") == 2

    # Now fill the file to its cap: ingest raises DiskFull, and stores nothing of that SMS.
    await store.writer.submit(lambda: cap_file(0), "no more pages", bare=True)
    stored = 2
    with pytest.raises(DiskFull):  # noqa: PT012 - the loop runs until the file is full
        for n in range(1000):
            await ingest(store, pdus(f"filling the disk, message {n}")[0])
            stored += 1
    assert count_rows(db_path, "message") == stored
    refused = pdus(f"filling the disk, message {stored - 2}")[0]

    await store.writer.submit(lambda: cap_file(10_000), "room again", bare=True)
    result = await ingest(store, refused)
    assert result.message_id
    assert not result.duplicate


async def test_a_commit_does_not_block_the_event_loop(store: Store) -> None:
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()
    seen_by_loop: list[int] = []
    loop_ran = threading.Event()

    def read_on_loop() -> None:
        # A read on the loop's own connection while the writer holds an open transaction
        # with 5000 uncommitted rows: WAL readers neither wait nor see them.
        seen_by_loop.append(Event.select().count())
        loop_ran.set()

    def big_job() -> tuple[int, bool]:
        Event.insert_many(
            [{"at": T0, "level": "info", "kind": "bulk", "text": "x" * 100}] * 5000
        ).execute()
        loop.call_soon_threadsafe(read_on_loop)
        return threading.get_ident(), loop_ran.wait(timeout=10)

    writer_thread, loop_was_free = await store.writer.submit(big_job, "big batch")

    assert loop_was_free, "the loop could not run a callback while the writer worked"
    assert writer_thread != loop_thread
    assert seen_by_loop == [0]
    assert (await store.read(lambda: Event.select().count())) == 5000


async def test_a_closed_store_refuses_writes(db_path: Path) -> None:
    store = await Store.open(db_path)
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await ingest(store, pdus("too late")[0])


async def test_only_one_store_per_process(store: Store, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="already open"):
        await Store.open(tmp_path / "second.db")


async def test_a_naive_time_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="naive datetime"):
        await store.ingest_pdu(
            iccid=ICCID,
            imei=None,
            slot="s",
            storage="SM",
            index=1,
            pdu_hex=pdus("x")[0],
            read_at=T0.replace(tzinfo=None),
        )


@pytest.fixture
def not_a_database(db_path: Path) -> Path:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is a text file, not SQLite " * 100)
    return db_path


async def test_a_file_that_is_not_a_database_is_a_store_error(not_a_database: Path) -> None:
    with pytest.raises(StoreDamaged, match=f"{not_a_database}: .*file is not a database"):
        await Store.open(not_a_database)
    assert file_size(not_a_database) == 3200  # left as it was
    # the failed open released the process's one store
    other = await Store.open(not_a_database.with_name("other.db"))
    await other.close()


async def test_ready_callbacks_fire_after_commit_and_can_be_removed(
    store: Store, db_path: Path
) -> None:
    seen: list[int] = []
    remove = store.on_message_ready(lambda _iccid: seen.append(count_rows(db_path, "message")))
    await ingest(store, pdus("first")[0])
    remove()
    await ingest(store, pdus("second")[0])

    assert seen == [1]  # called once, and the message was already visible to others


# --- writes that ride with the next commit (Writer.submit_soon) -------------------------------


async def test_a_rider_waits_for_the_next_commit_and_goes_in_it(
    store: Store, db_path: Path
) -> None:
    before = store.writer.transactions
    first = await ingest(store, pdus("first")[0], index=1)
    assert first.message_id is not None
    riding = store.writer.submit_soon(
        lambda: Event.create(at=T0, kind="rider", level="info", text="rode along"),
        "a rider",
        within=60,  # the deadline is far: only another commit can take it
    )
    await asyncio.sleep(0)  # one loop turn (not a wait): nothing woke the writer for it
    assert not riding.done()
    assert count_rows(db_path, "event", "kind = 'rider'") == 0
    await ingest(store, pdus("second")[0], index=2)
    await riding  # settled with the commit that took it
    assert count_rows(db_path, "event", "kind = 'rider'") == 1
    # One transaction per ingest; the rider took none of its own.
    assert store.writer.transactions - before == 2


async def test_a_rider_alone_is_committed_at_its_deadline(store: Store, db_path: Path) -> None:
    before = store.writer.transactions
    riding = store.writer.submit_soon(
        lambda: Event.create(at=T0, kind="rider", level="info", text="alone"),
        "a lone rider",
        within=0.01,
    )
    async with asyncio.timeout(5):
        await riding
    assert count_rows(db_path, "event", "kind = 'rider'") == 1
    assert store.writer.transactions - before == 1


async def test_a_rider_someone_waits_for_goes_at_once(store: Store, db_path: Path) -> None:
    riding = store.writer.submit_soon(
        lambda: Event.create(at=T0, kind="rider", level="info", text="waited for"),
        "a rider",
        within=3600,
    )
    store.writer.commit_riders_now()
    async with asyncio.timeout(5):
        await riding
    assert count_rows(db_path, "event", "kind = 'rider'") == 1


async def test_a_riders_failure_reaches_its_future_and_spares_the_batch(store: Store) -> None:
    def broken() -> None:
        raise sqlite3.IntegrityError("a rider that fails")

    riding = store.writer.submit_soon(broken, "a failing rider", within=3600)
    result = await ingest(store, pdus("carrier")[0], index=1)
    assert result.message_id is not None  # the ingest it rode with committed
    with pytest.raises(StoreError, match="a failing rider"):
        await riding


async def test_closing_the_store_commits_the_riders(db_path: Path) -> None:
    store = await Store.open(db_path)
    riding = store.writer.submit_soon(
        lambda: Event.create(at=T0, kind="rider", level="info", text="at the stop"),
        "a rider at the stop",
        within=3600,
    )
    await store.close()
    assert riding.done()
    assert riding.exception() is None
    assert count_rows(db_path, "event", "kind = 'rider'") == 1
