"""Block rules and the store side of the outbox: order per SIM, retries, dead letters."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from agent.errors import BlockRuleError, StoreError
from agent.store import BlockRule, Store
from agent.store.models import DeliveryAttempt
from tests.store.conftest import ICCID, OTHER_ICCID, T0, count_rows, ingest, pdus

RULES = [
    BlockRule("operator account", sender=r"^Tele2$", text=r"(?i)password"),
    BlockRule("any sender's access code", text=r"(?i)access code \d+"),
    BlockRule("bank", sender=r"(?i)^sberbank$"),
]


@pytest.fixture
async def blocking_store(db_path: Path) -> Store:
    store = await Store.open(db_path, block_rules=RULES)
    yield store
    await store.close()


@pytest.mark.parametrize(
    ("sender", "text", "rule"),
    [
        ("Tele2", "Your password: 1234", "operator account"),  # sender and text
        ("Tele2", "Balance 10 RUB", None),  # sender alone is not enough for that rule
        ("+79161234567", "Your password: 1234", None),  # nor the text alone
        ("+79161234567", "Access code 5678", "any sender's access code"),  # text-only rule
        ("SberBank", "Transfer received", "bank"),  # sender-only rule
        ("VKcom", "VK code 111111", None),
    ],
)
async def test_block_rules(
    blocking_store: Store, db_path: Path, sender: str, text: str, rule: str | None
) -> None:
    woken: list[str | None] = []
    blocking_store.on_message_ready(woken.append)
    result = await ingest(blocking_store, pdus(text, sender)[0])

    assert result.blocked is (rule is not None)
    due = await blocking_store.due_messages(T0, 10)
    counts = await blocking_store.outbox_counts(T0)
    if rule:
        # Kept and shown, never uploaded, and the uplink is not woken for it.
        assert due == []
        assert woken == []
        assert counts.blocked == 1
        where = f"state = 'blocked' AND blocked_rule = '{rule}'"
        assert count_rows(db_path, "message", where.replace("'s", "''s")) == 1
    else:
        assert [message.text for message in due] == [text]
        assert woken == [ICCID]


async def test_a_rule_added_at_run_time_blocks_and_survives_a_restart(db_path: Path) -> None:
    store = await Store.open(db_path, block_rules=RULES[:1])
    try:
        await store.add_block_rule(BlockRule("lottery", text=r"(?i)you won"))
        with pytest.raises(StoreError, match="'lottery' exists already"):
            await store.add_block_rule(BlockRule("lottery", sender="x"))
        assert (await ingest(store, pdus("You WON a prize")[0])).blocked
    finally:
        await store.close()
    store = await Store.open(db_path, block_rules=RULES[:1])
    try:
        assert [rule.name for rule in store.block_rules] == ["operator account", "lottery"]
        assert (await ingest(store, pdus("you won again")[0], index=2)).blocked
        assert not (await ingest(store, pdus("VK code 1")[0], index=3)).blocked
    finally:
        await store.close()


def test_a_bad_pattern_names_the_rule() -> None:
    with pytest.raises(BlockRuleError, match="block rule 'broken' text: is not a regular"):
        BlockRule("broken", text="([a-z")
    with pytest.raises(BlockRuleError, match="give a sender or a text pattern"):
        BlockRule("empty")


async def _three_from_two_sims(store: Store) -> list[int]:
    ids = []
    for n, (iccid, text) in enumerate([(ICCID, "A1"), (OTHER_ICCID, "B1"), (ICCID, "A2")]):
        result = await ingest(store, pdus(text)[0], iccid=iccid, read_at=T0 + timedelta(n))
        assert result.message_id is not None
        ids.append(result.message_id)
    return ids


async def test_each_sim_goes_in_order(store: Store) -> None:
    a1, b1, a2 = await _three_from_two_sims(store)
    await store.set_sim_number(ICCID, "+79160000001")

    due = await store.due_messages(T0, 10)
    assert [(m.id, m.number) for m in due] == [(a1, "+79160000001"), (b1, None)]

    # A1 backs off: A2 must wait behind it, B1 is unaffected.
    await store.schedule_retry(a1, 1, T0 + timedelta(minutes=5), "HTTP 503", status=503)
    assert [m.id for m in await store.due_messages(T0, 10)] == [b1]
    assert [m.id for m in await store.due_messages(T0 + timedelta(minutes=5), 10)] == [a1, b1]

    await store.mark_sent(a1, T0 + timedelta(minutes=5), 200, '{"response": 1}')
    assert [m.id for m in await store.due_messages(T0 + timedelta(minutes=5), 10)] == [b1, a2]
    assert [m.id for m in await store.due_messages(T0, 1)] == [b1]


async def test_a_retry_schedule_survives_a_restart(db_path: Path) -> None:
    store = await Store.open(db_path)
    (a1, _b1, _a2) = await _three_from_two_sims(store)
    await store.schedule_retry(a1, 3, T0 + timedelta(minutes=5), "timeout")
    await store.close()

    store = await Store.open(db_path)
    try:
        assert a1 not in [m.id for m in await store.due_messages(T0, 10)]
        (first, _) = await store.due_messages(T0 + timedelta(minutes=5), 10)
        counts = await store.outbox_counts(T0)
        depth = await store.outbox_depth()
    finally:
        await store.close()

    assert (first.id, first.attempts) == (a1, 3)
    assert (counts.pending, counts.backing_off, counts.last_error) == (2, 1, "timeout")
    assert depth == 3  # what the outbox-depth gauge shows: due and backing off alike


async def test_dead_letters_free_the_line_and_can_be_retried(store: Store, db_path: Path) -> None:
    a1, b1, a2 = await _three_from_two_sims(store)
    await store.dead_letter(a1, "NUMBER_FORMAT_ERROR", 400, '{"response": "NUMBER_FORMAT_ERROR"}')
    await store.dead_letter(b1, "ERROR_PARAMS", 400, '{"response": "ERROR_PARAMS"}')

    assert [m.id for m in await store.due_messages(T0, 10)] == [a2]
    counts = await store.outbox_counts(T0)
    assert (counts.dead, counts.pending, counts.last_error) == (2, 1, "ERROR_PARAMS")

    await store.retry(a1)
    assert [m.id for m in await store.due_messages(T0, 10)] == [a1]  # back in its place
    assert await store.retry_all_dead() == 1
    assert [m.id for m in await store.due_messages(T0, 10)] == [a1, b1]

    history = await store.read(
        lambda: list(
            DeliveryAttempt.select(DeliveryAttempt.outcome, DeliveryAttempt.http_status)
            .where(DeliveryAttempt.message == a1)
            .tuples()
        )
    )
    assert history == [("dead", 400)]
    assert count_rows(db_path, "event", "kind = 'message_retry'") == 2


async def test_sent_messages_cannot_be_retried(store: Store) -> None:
    (message_id,) = (await _three_from_two_sims(store))[:1]
    await store.mark_sent(message_id, T0, 200, "{}")
    with pytest.raises(StoreError, match=f"message #{message_id} is sent"):
        await store.retry(message_id)
    with pytest.raises(StoreError, match="message #999 does not exist"):
        await store.mark_sent(999, T0, 200, "{}")


async def test_counts_and_history_of_a_sent_message(store: Store) -> None:
    message_id = (await ingest(store, pdus("hello")[0])).message_id
    assert message_id is not None
    await store.schedule_retry(message_id, 1, T0, "connect timeout")
    await store.mark_sent(message_id, T0 + timedelta(seconds=30), 200, '{"response": 1}')

    counts = await store.outbox_counts(T0)
    assert (counts.pending, counts.backing_off, counts.dead) == (0, 0, 0)
    assert counts.last_success_at == (T0 + timedelta(seconds=30)).timestamp()
    outcomes = await store.read(
        lambda: [row.outcome for row in DeliveryAttempt.select().order_by(DeliveryAttempt.id)]
    )
    assert outcomes == ["retry", "sent"]


async def test_sims_and_modems_are_upserted(store: Store, db_path: Path) -> None:
    await store.upsert_modem("860000000000001", "usb-1.2", "EC25", firmware="EC25EFAR06A01M4G")
    await store.upsert_modem("860000000000001", "usb-1.2", "EC25", firmware="EC25EFAR06A02M4G")
    await store.upsert_sim(
        ICCID, imsi="250011234567890", number="+79160000001", number_source="ussd"
    )
    await store.set_sim_number(ICCID, "+79160000002")
    await store.upsert_sim(ICCID, number="+79160000003", number_source="ussd", operator="MTS")

    assert count_rows(db_path, "modem", "firmware = 'EC25EFAR06A02M4G'") == 1
    # The number set by hand wins over what the agent discovers later.
    where = "number = '+79160000002' AND number_source = 'manual' AND operator = 'MTS'"
    assert count_rows(db_path, "sim", where) == 1


async def test_outbox_reads_never_scan_the_message_table(store: Store) -> None:
    await _three_from_two_sims(store)
    connection = store._database.connection()  # the event loop's own read connection
    statements: list[str] = []
    connection.set_trace_callback(statements.append)
    try:
        await store.due_messages(T0, 10)
        await store.outbox_counts(T0)
    finally:
        connection.set_trace_callback(None)

    plans = [
        detail
        for statement in statements
        for *_, detail in connection.execute("EXPLAIN QUERY PLAN " + statement)
    ]
    full_scans = [d for d in plans if d.startswith("SCAN") and "INDEX" not in d]
    assert len(statements) >= 4
    assert full_scans == []
