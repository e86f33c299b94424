"""The agent-down reader: the real store writes a database, tui.offline reads it back."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.errors import StoreError
from agent.protocol.pdu import encode_deliver
from agent.store.store import Store
from tests.tui.site import NOW
from tui.offline import read_message_detail, read_offline_messages, read_offline_snapshot


async def make_database(path: Path) -> Path:
    """Two modems, a SIM with its number, two SMS (one sent), an event."""
    store = await Store.open(path)
    try:
        await store.upsert_modem(
            imei="860000000000001",
            slot="1-1.1",
            model="EC25",
            manufacturer="Quectel",
            port="/dev/ttyUSB2",
            seen_at=NOW - 600,
        )
        await store.upsert_modem(
            imei="860000000000002", slot="1-1.2", model="EC25", seen_at=NOW - 600
        )
        await store.upsert_sim(
            iccid="8970100000000000000",
            imsi="250020000000000",
            number="+79161234500",
            number_source="ussd",
            operator="25002",
            slot="1-1.1",
            seen_at=NOW - 600,
        )
        for index, text in enumerate(("Your code: 4821", "[red]x[/] \x1b[2J")):
            (pdu,) = encode_deliver(text, "VKcom", timestamp=datetime.fromtimestamp(NOW - 900, UTC))
            await store.ingest_pdu(
                iccid="8970100000000000000",
                imei="860000000000001",
                slot="1-1.1",
                storage="SM",
                index=index,
                pdu_hex=pdu.hex().upper(),
                read_at=NOW - 800 + index,
            )
        await store.log_event("modem", "modem ready", level="info", slot="1-1.1", at=NOW - 700)
    finally:
        await store.close()
    return path


async def test_reads_the_last_known_state(tmp_path: Path) -> None:
    path = await make_database(tmp_path / "simedge.db")
    before = path.stat().st_mtime_ns
    snapshot = read_offline_snapshot(path, now=NOW)
    messages = read_offline_messages(path)
    assert [m.slot for m in snapshot.modems] == ["1-1.1", "1-1.2"]
    first = snapshot.modems[0]
    assert (first.number, first.iccid, first.model) == (
        "+79161234500",
        "8970100000000000000",
        "EC25",
    )
    assert first.fault
    assert first.fault.startswith("agent down: last seen")
    assert snapshot.modems[1].iccid is None
    assert snapshot.outbox.pending == 2
    assert snapshot.activity["1-1.1"].last_sms_at == pytest.approx(NOW - 800)
    assert [e.text for e in snapshot.events] == ["modem ready"]
    assert [m.text for m in messages] == ["[red]x[/] \x1b[2J", "Your code: 4821"]
    assert path.stat().st_mtime_ns == before  # opened read-only: nothing written

    detail = read_message_detail(path, messages[0].id)
    assert len(detail.pdus) == 1
    assert detail.pdus[0].storage == "SM"
    assert read_offline_messages(path, query="nobody") == ()


def test_a_missing_database_says_which(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"missing\.db: cannot read the agent's database"):
        read_offline_snapshot(tmp_path / "missing.db")
    assert not os.path.exists(tmp_path / "missing.db")


async def test_readings_at_once_each_see_the_file_and_leave_the_models_unbound(
    tmp_path: Path,
) -> None:
    """The dashboard's worker threads may read a snapshot and a message list at the same
    time; binding the models is process-wide, so readings take turns (queries.reading)."""
    from agent.store.models import Message

    path = await make_database(tmp_path / "simedge.db")
    unbound = Message._meta.database
    with ThreadPoolExecutor(max_workers=8) as pool:
        snapshots = [pool.submit(read_offline_snapshot, path, now=NOW) for _ in range(8)]
        lists = [pool.submit(read_offline_messages, path) for _ in range(8)]
        assert {len(s.result(timeout=60).modems) for s in snapshots} == {2}
        assert {len(m.result(timeout=60)) for m in lists} == {2}
    assert Message._meta.database is unbound


async def test_offline_and_the_running_agent_say_the_same(tmp_path: Path) -> None:
    """One reader: what the agent answers over its socket for these rows is what the
    dashboard reads from the file when the agent is down."""
    from agent.store import queries

    path = await make_database(tmp_path / "simedge.db")
    store = await Store.open(path)
    try:
        live_messages = await store.read(lambda: queries.messages(200))
        live_outbox = await store.read(lambda: queries.outbox_status(NOW))
    finally:
        await store.close()
    offline = read_offline_snapshot(path, now=NOW)
    assert read_offline_messages(path) == tuple(live_messages)
    assert offline.outbox == live_outbox
