"""A SIM's history by ICCID (schema version 8): slots across swaps, SMS per day that
outlive the pruning of their messages, balance answers and keep-alives, each bounded."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from agent.status import BalanceAnswer, KeepaliveAction
from agent.store import Store, queries
from agent.store.models import HISTORY_PER_SIM
from tests.store.conftest import ICCID, OTHER_ICCID, T0, count_rows, ingest, pdus

DAY = timedelta(days=1)


async def test_slots_sms_balance_and_keepalive_per_sim_across_a_swap_and_a_prune(
    db_path: Path,
) -> None:
    store = await Store.open(db_path, retention_days=30)
    try:
        await store.upsert_sim(ICCID, operator="25001", slot="1.1.1", seen_at=T0)
        await store.upsert_sim(ICCID, slot="1.1.1", seen_at=T0 + DAY)
        # Swapped: the card goes to 1.1.2, another takes 1.1.1.
        await store.upsert_sim(ICCID, slot="1.1.2", seen_at=T0 + 2 * DAY)
        await store.upsert_sim(OTHER_ICCID, operator="25099", slot="1.1.1", seen_at=T0 + 2 * DAY)
        old = [await ingest(store, pdus(f"old {n}")[0], index=n, read_at=T0) for n in range(3)]
        for result in old:
            await store.mark_sent(result.message_id, T0, 200, "{}")
        recent = T0 + 40 * DAY
        await ingest(store, pdus("today")[0], index=10, read_at=recent)
        await ingest(store, pdus("other")[0], iccid=OTHER_ICCID, index=11, read_at=recent)
        await store.prune(T0 + 31 * DAY)  # the three old messages go
        at = recent.timestamp()
        await store.record_balance(
            BalanceAnswer(ICCID, at, "1.1.2", "*100#", 12.5, "RUB", "Баланс:12,50р", None)
        )
        await store.record_balance(
            BalanceAnswer(
                ICCID, at + 3600, "1.1.2", "*100#", None, None, "Сервис недоступен",
                "no amount in the answer to *100#",
            )
        )  # fmt: skip
        await store.record_keepalive(KeepaliveAction(ICCID, at, "1.1.2", "ussd *321#", "ok", None))
        now = (recent + timedelta(hours=2)).timestamp()
        rows = await store.read(
            lambda: queries.sims(
                now, in_slots={ICCID: "1.1.2"}, low_balance=20, keepalive_days={"25001": 30}
            )
        )
    finally:
        await store.close()

    assert count_rows(db_path, "message", f"iccid = '{ICCID}'") == 1
    by_iccid = {row.iccid: row for row in rows}
    sim = by_iccid[ICCID]
    assert [(stay.slot, stay.since, stay.until) for stay in sim.stays] == [
        ("1.1.1", T0.timestamp(), (T0 + DAY).timestamp()),
        ("1.1.2", (T0 + 2 * DAY).timestamp(), (T0 + 2 * DAY).timestamp()),
    ]
    assert sim.swaps == 1
    assert (sim.slot, sim.in_slot) == ("1.1.2", True)
    assert (sim.sms_today, sim.sms_7d, sim.sms_all) == (1, 1, 4)  # 3 pruned, still counted
    assert (sim.balance, sim.balance_currency, sim.balance_low) == (12.5, "RUB", True)
    assert sim.balance_error == "no amount in the answer to *100#"  # newer than the amount
    assert sim.active_until == (recent + 30 * DAY).timestamp()
    other = by_iccid[OTHER_ICCID]
    assert (other.slot, other.in_slot) == ("usb-1.2", False)  # where its SMS was read
    assert (other.sms_all, other.balance, other.active_until) == (1, None, None)


async def test_history_tables_are_bounded_per_sim(db_path: Path) -> None:
    store = await Store.open(db_path)
    try:
        days = [T0 + n * DAY for n in range(HISTORY_PER_SIM + 25)]
        # Submitted in order, so the writer takes them in order (and in few transactions).
        await asyncio.gather(
            *(
                store.upsert_sim(ICCID, slot=f"1.1.{n % 2 + 1}", seen_at=at)  # a swap a day
                for n, at in enumerate(days)
            )
        )
        await asyncio.gather(
            *(
                store.record_balance(
                    BalanceAnswer(
                        ICCID, at.timestamp(), "1.1.1", "*100#", float(n), "RUB", None, None
                    )
                )
                for n, at in enumerate(days)
            ),
            *(
                store.record_keepalive(
                    KeepaliveAction(ICCID, at.timestamp(), "1.1.1", "ussd *321#", None, None)
                )
                for at in days
            ),
        )
        newest = await store.read(lambda: queries.sims((T0 + 1000 * DAY).timestamp()))
    finally:
        await store.close()
    for table in ("sim_stay", "sim_balance", "sim_keepalive"):
        assert count_rows(db_path, table) == HISTORY_PER_SIM, table
    assert newest[0].balance == HISTORY_PER_SIM + 24  # the oldest went, not the newest


async def test_a_slots_activity_is_its_card_now_not_the_swapped_out_ones(db_path: Path) -> None:
    """The Charts and Overview count per slot: after a swap the slot's row starts from the
    new card's SMS; the old card's stay with it (issue 17)."""
    store = await Store.open(db_path)
    try:
        await store.upsert_sim(ICCID, operator="25001", slot="usb-1.2", seen_at=T0)
        for n in range(3):
            await ingest(store, pdus(f"first card {n}")[0], index=n, read_at=T0)
        before = await store.read(lambda: queries.activity(T0.timestamp() + 60))
        # The card leaves; another is put in the same slot and gets one SMS.
        later = T0 + timedelta(minutes=10)
        await store.upsert_sim(OTHER_ICCID, operator="25099", slot="usb-1.2", seen_at=later)
        await ingest(store, pdus("second card")[0], iccid=OTHER_ICCID, index=9, read_at=later)
        after = await store.read(lambda: queries.activity(later.timestamp() + 60))
        rows = await store.read(lambda: queries.sims(later.timestamp() + 60))
    finally:
        await store.close()

    assert before[0]["usb-1.2"].sms_today == 3
    assert after[0]["usb-1.2"].sms_today == 1
    assert sum(after[0]["usb-1.2"].sms_per_hour) == 1
    assert after[0]["usb-1.2"].last_sms_at == later.timestamp()
    by_iccid = {row.iccid: row for row in rows}
    assert by_iccid[ICCID].sms_all == 3  # the first card keeps its own
    assert by_iccid[OTHER_ICCID].sms_all == 1
