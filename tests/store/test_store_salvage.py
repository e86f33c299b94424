"""A readable SMS with a faulty field is forwarded, marked, and its raw PDU kept (issue 15)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from agent.protocol.pdu import encode_deliver
from agent.store import Store
from agent.store.queries import message_detail
from tests.store.conftest import T0, count_rows, ingest, pdus, plain_connection
from tui.offline import read_message_detail
from tui.screens.messages import detail_text

STAMP_AT = 38  # hex digit where the SCTS starts: SMSC 8 octets, first octet, 8-octet TP-OA


def with_zone(pdu_hex: str, zone: str) -> str:
    """The PDU with its SCTS time-zone octet (the 7th) replaced."""
    at = STAMP_AT + 12
    return pdu_hex[:at] + zone + pdu_hex[at + 2 :]


async def test_a_bad_time_zone_is_forwarded_at_the_read_time(store: Store, db_path: Path) -> None:
    (good,) = pdus("Your code: 5120")
    faulty = with_zone(good.upper(), "C2")
    result = await ingest(store, faulty)

    assert result.message_id is not None
    assert not result.error
    (due,) = await store.due_messages(T0.replace(year=2027), 10)
    assert due.text == "Your code: 5120"
    assert due.scts == T0  # the SCTS was unusable: the time the agent read it
    with plain_connection(db_path) as other:
        pdu_row = other.execute(
            "SELECT pdu_hex, status, error FROM received_pdu WHERE id = ?", (result.pdu_id,)
        ).fetchone()
        problems = other.execute(
            "SELECT problems FROM message WHERE id = ?", (result.message_id,)
        ).fetchone()[0]
    expected = "service centre timestamp at octet 25: time zone octet C2 is not decimal"
    assert pdu_row == (faulty, "salvaged", expected)
    assert problems == expected
    assert count_rows(db_path, "event", "kind = 'pdu_salvaged' AND level = 'warning'") == 1

    detail = await store.read(lambda: message_detail(result.message_id))
    assert detail is not None
    assert detail.message.problems == expected
    shown = detail_text(detail).plain
    assert f"salvaged  {expected}" in shown
    assert faulty in shown  # the raw PDU, on the dashboard too
    await store.close()
    offline = read_message_detail(db_path, result.message_id)
    assert offline.message.problems == expected


async def test_a_sound_sms_has_no_problems(store: Store, db_path: Path) -> None:
    result = await ingest(store, pdus("all fine")[0])
    with plain_connection(db_path) as other:
        row = other.execute(
            "SELECT m.problems, p.status, p.error FROM message m JOIN received_pdu p"
            " ON p.message_id = m.id WHERE m.id = ?",
            (result.message_id,),
        ).fetchone()
    assert row == (None, "ok", None)


async def test_multipart_problems_are_named_by_part(store: Store, db_path: Path) -> None:
    stamp = datetime(2026, 3, 1, 11, 59, tzinfo=UTC)
    first, second = (
        part.hex().upper()
        for part in encode_deliver("x" * 200, "+79161234567", timestamp=stamp, reference=9)
    )
    waiting = await ingest(store, first, index=1)
    assert waiting.waiting
    # The second part's SCTS all zero: salvaged, joined to the first by its header.
    result = await ingest(store, second[:STAMP_AT] + "00" * 7 + second[STAMP_AT + 14 :], index=2)

    assert result.message_id is not None
    (due,) = await store.due_messages(T0.replace(year=2027), 10)
    assert due.text == "x" * 200
    assert due.scts == stamp  # the first part's SCTS stands for the message
    with plain_connection(db_path) as other:
        problems = other.execute(
            "SELECT problems FROM message WHERE id = ?", (result.message_id,)
        ).fetchone()[0]
    assert problems == (
        "part 2: service centre timestamp at octet 19: all zero: the network sent no time"
    )


async def test_no_readable_text_stays_undecodable(store: Store, db_path: Path) -> None:
    (good,) = pdus("gone")
    cut = good.upper()[: STAMP_AT + 16]  # ends after the user data length: no text
    result = await ingest(store, with_zone(cut, "C2"))
    assert result.message_id is None
    assert result.error is not None
    assert "no readable text is left" in result.error
    assert count_rows(db_path, "received_pdu", "status = 'undecodable'") == 1
    assert count_rows(db_path, "message") == 0
