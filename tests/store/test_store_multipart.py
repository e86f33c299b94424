"""Multipart messages: parts in any order, twice, across a restart, and the timeout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.clock import WallClockWatch
from agent.store import Store
from agent.store.blocking import BlockRule
from agent.store.models import Message
from tests.store.conftest import T0, count_rows, ingest, pdus

LONG = "".join(f"word{n:03d} " for n in range(60))  # 480 characters: 4 GSM 7-bit parts


async def test_parts_out_of_order_make_one_message(store: Store, db_path: Path) -> None:
    parts = pdus(LONG, ref=42)
    assert len(parts) == 4
    results = [await ingest(store, parts[n], index=n) for n in (2, 0, 3, 1)]

    assert [result.waiting for result in results] == [True, True, True, False]
    message_id = results[-1].message_id
    assert message_id is not None
    (due,) = await store.due_messages(T0, 10)
    assert (due.id, due.text, due.complete, due.missing_parts) == (message_id, LONG, True, ())
    assert count_rows(db_path, "part", f"message_id = {message_id}") == 4


async def test_a_repeated_part_is_a_duplicate(store: Store, db_path: Path) -> None:
    parts = pdus(LONG, ref=43)
    await ingest(store, parts[0])
    # The SMSC sends part 1 again with another SMSC address: different bytes, same part.
    resent = "07919761989901F1" + parts[0][16:]
    assert resent != parts[0]
    again = await ingest(store, resent, index=5)
    assert again.duplicate
    for n, part in enumerate(parts[1:], start=1):
        last = await ingest(store, part, index=n)

    assert last.message_id is not None
    assert count_rows(db_path, "part") == 4
    assert count_rows(db_path, "received_pdu") == 5  # every PDU read is kept
    assert count_rows(db_path, "message") == 1


async def test_a_part_repeated_after_completion_starts_nothing(store: Store, db_path: Path) -> None:
    parts = pdus(LONG, ref=44)
    for n, part in enumerate(parts):
        await ingest(store, part, index=n)
    late_copy = "07919761989901F1" + parts[2][16:]
    result = await ingest(store, late_copy, read_at=T0 + timedelta(minutes=1))

    assert result.duplicate
    assert count_rows(db_path, "message") == 1
    assert await store.expire_partials(T0 + timedelta(hours=1)) == []


async def test_partial_messages_survive_a_restart(db_path: Path) -> None:
    parts = pdus(LONG, ref=45)
    # Read "now": open() delivers partials whose timeout passed by the real clock.
    now = datetime.now(UTC)
    store = await Store.open(db_path)
    await ingest(store, parts[3], index=3, read_at=now)
    await ingest(store, parts[1], index=1, read_at=now)
    await store.close()

    store = await Store.open(db_path)
    try:
        again = await ingest(store, parts[1], index=1, read_at=now)  # re-read after the crash
        await ingest(store, parts[0], index=0, read_at=now)
        last = await ingest(store, parts[2], index=2, read_at=now)
        due = await store.due_messages(now, 10)
    finally:
        await store.close()

    assert again.duplicate
    assert last.message_id is not None
    assert [(message.id, message.text) for message in due] == [(last.message_id, LONG)]


async def test_the_timeout_delivers_what_arrived_marked_incomplete(
    store: Store, db_path: Path
) -> None:
    parts = pdus(LONG, ref=46)
    await ingest(store, parts[0], index=0)
    await ingest(store, parts[2], index=2, read_at=T0 + timedelta(minutes=3))
    ready: list[str | None] = []
    store.on_message_ready(ready.append)

    assert await store.expire_partials(T0 + timedelta(minutes=9)) == []  # default: 10 minutes
    assert await store.due_messages(T0 + timedelta(minutes=9), 10) == []
    (expired,) = await store.expire_partials(T0 + timedelta(minutes=10))

    (due,) = await store.due_messages(T0 + timedelta(minutes=10), 10)
    assert due.id == expired
    assert (due.complete, due.missing_parts) == (False, (2, 4))
    assert due.text == "".join(f"word{n:03d} " for n in range(60))[:153] + LONG[306:459]
    assert ready == [None]  # given up on by time, not by a SIM: any SIM may have one due
    assert count_rows(db_path, "event", "kind = 'message_incomplete'") == 1
    # A part arriving after the timeout starts a new message; it is not lost either.
    late = await ingest(store, parts[1], index=1, read_at=T0 + timedelta(minutes=11))
    assert late.waiting


async def test_what_expired_while_the_agent_was_down_is_delivered_at_open(
    db_path: Path,
) -> None:
    parts = pdus(LONG, ref=47)
    store = await Store.open(db_path)
    await ingest(store, parts[0], read_at=T0 - timedelta(days=1))
    await store.close()

    store = await Store.open(db_path, multipart_timeout=60)
    try:
        rows = await store.read(lambda: list(Message.select()))
    finally:
        await store.close()

    (row,) = rows
    assert (row.state, row.complete, row.missing_parts) == ("pending", False, "2,3,4")


async def test_a_wall_clock_jump_moves_the_timeout_with_it(store: Store) -> None:
    """NTP sets the clock an hour back after the first part came: the timeout still
    counts from its arrival (10 minutes), neither an hour and 10 minutes later nor at once
    when the clock jumps forward."""
    parts = pdus(LONG, ref=47)
    await ingest(store, parts[0], index=0)
    back = T0 - timedelta(hours=1)
    assert await store.shift_partials(-3600) == 1
    assert await store.expire_partials(back + timedelta(minutes=9)) == []
    assert len(await store.expire_partials(back + timedelta(minutes=10))) == 1

    await ingest(store, pdus(LONG, ref=48)[0], index=5, read_at=back)
    assert await store.shift_partials(+3600) == 1  # and forward again: nothing early
    assert await store.expire_partials(T0 + timedelta(minutes=9)) == []
    assert len(await store.expire_partials(T0 + timedelta(minutes=10))) == 1


def test_the_watch_reports_a_jump_until_it_is_settled() -> None:
    wall, monotonic = [1000.0], [5.0]
    watch = WallClockWatch(lambda: wall[0], lambda: monotonic[0])
    wall[0] += 10.0
    monotonic[0] += 10.0  # both moved alike: no jump
    assert watch.jumped() == 0.0
    wall[0] += 1.0  # within the tolerance (NTP slewing, a late wake-up)
    assert watch.jumped() == 0.0
    wall[0] -= 3601.0  # an hour back
    assert watch.jumped() == -3600.0
    assert watch.jumped() == -3600.0  # still pending: the caller could not move its times
    watch.settle(-3600.0)
    assert watch.jumped() == 0.0
    wall[0] += 3600.0
    assert watch.jumped() == 3600.0


async def test_every_sms_made_whole_is_told_once_blocked_or_not(store: Store) -> None:
    """The agent's simedge_sms_received/blocked counters listen here (docs/metrics.md)."""
    await store.add_block_rule(BlockRule("bank", text="^SECRET"))
    stored: list[bool] = []
    store.on_message_stored(stored.append)
    parts = pdus(LONG, ref=47)
    for index, part in enumerate(parts[:3]):
        await ingest(store, part, index=index)
    assert stored == []  # parts waiting are not a message yet
    await ingest(store, parts[3], index=3)
    (secret,) = pdus("SECRET 1234", ref=None)
    await ingest(store, secret, index=10)
    await ingest(store, secret, index=10)  # read twice: a duplicate, not a message
    await ingest(store, pdus(LONG, ref=48)[0], index=11)
    assert stored == [False, True]
    assert len(await store.expire_partials(T0 + timedelta(minutes=10))) == 1
    assert stored == [False, True, False]  # delivered incomplete at its timeout
