"""The durable store: SQLite in WAL mode, one writer thread, group commit.

A received SMS is committed (``synchronous=FULL``) before its modem may delete it; parts of
multipart messages are kept until complete or timed out; the outbox hands messages to the
uplink in receipt order per SIM; old delivered messages are pruned so the database stays
bounded on an SD card. See ``store.py`` for the API, ``db.py`` for the writer and pragmas.
"""

from agent.store.blocking import BlockRule
from agent.store.ingest import IngestResult
from agent.store.migrations import LATEST_VERSION
from agent.store.outbox import OutboxMessage
from agent.store.store import PruneResult, Store

__all__ = [
    "LATEST_VERSION",
    "BlockRule",
    "IngestResult",
    "OutboxMessage",
    "PruneResult",
    "Store",
]
