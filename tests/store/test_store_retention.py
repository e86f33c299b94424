"""Retention: old delivered messages go, the file shrinks, the rest stays."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from agent.store import Store
from tests.store.conftest import T0, count_rows, file_size, ingest, pdus


async def test_prune_bounds_the_file(db_path: Path) -> None:
    store = await Store.open(db_path, retention_days=30, event_cap=10)
    try:
        results = await asyncio.gather(
            *(ingest(store, pdus(f"message {n:05d} " + "x" * 140)[0], index=n) for n in range(1500))
        )
        ids = [result.message_id for result in results]
        old, recent, unsent = ids[:1200], ids[1200:1400], ids[1400:]
        await asyncio.gather(*(store.mark_sent(i, T0, 200, '{"response": 1}') for i in old))
        sent_lately = T0 + timedelta(days=29)
        await asyncio.gather(*(store.mark_sent(i, sent_lately, 200, "{}") for i in recent))
        long_parts = pdus("a long message " * 20, ref=9)
        for n, part in enumerate(long_parts):
            long_message = await ingest(store, part, index=2000 + n)
        await store.mark_sent(long_message.message_id, T0, 200, "{}")
        parts_before = count_rows(db_path, "part")
        await asyncio.gather(*(store.log_event("test", f"event {n}") for n in range(50)))
        await store.checkpoint()
        size_before = file_size(db_path)

        result = await store.prune(T0 + timedelta(days=31))
        size_after = file_size(db_path)
        due = await store.due_messages(T0, 1000)
    finally:
        await store.close()

    assert parts_before == len(long_parts) == 2
    assert (result.messages, result.pdus) == (1201, 0)
    assert result.pages_freed > 0
    assert size_after < size_before * 0.5
    assert count_rows(db_path, "message") == 300
    assert count_rows(db_path, "received_pdu") == 300  # parts and PDUs went with them
    assert count_rows(db_path, "part") == 0  # one-part messages have none
    assert count_rows(db_path, "delivery_attempt") == 200
    assert count_rows(db_path, "event") == 10
    # One SIM: only its oldest pending message is due, and it is one of the unsent ones.
    assert [message.id for message in due] == unsent[:1]
