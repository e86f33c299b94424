"""Fixtures for the store tests: a real SQLite file in tmp_path, PDUs from our encoder."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent.protocol.pdu import encode_deliver
from agent.store import IngestResult, Store

ICCID = "8970101234567890123"
OTHER_ICCID = "8970109876543210987"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MOSCOW = timezone(timedelta(hours=3))


def pdus(text: str, sender: str = "+79161234567", *, ref: int | None = None) -> list[str]:
    """The hex PDUs an SMSC would deliver for ``text`` (several when it is long)."""
    stamp = datetime(2026, 3, 1, 15, 0, 5, tzinfo=MOSCOW)
    return [part.hex() for part in encode_deliver(text, sender, timestamp=stamp, reference=ref)]


async def ingest(
    store: Store,
    pdu_hex: str,
    *,
    iccid: str = ICCID,
    index: int = 1,
    read_at: datetime = T0,
) -> IngestResult:
    return await store.ingest_pdu(
        iccid=iccid,
        imei="860000000000001",
        slot="usb-1.2",
        storage="SM",
        index=index,
        pdu_hex=pdu_hex,
        read_at=read_at,
    )


@contextmanager
def plain_connection(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection in autocommit mode, closed after use: another process."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        yield connection
    finally:
        connection.close()


def count_rows(path: Path, table: str, where: str = "1") -> int:
    """Count with a separate, plain sqlite3 connection: what another process would see."""
    with plain_connection(path) as connection:
        return connection.execute(f'SELECT COUNT(*) FROM "{table}" WHERE {where}').fetchone()[0]


def file_size(path: Path) -> int:
    return path.stat().st_size


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "simedge.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(db_path)
    yield opened
    await opened.close()


class WriterGate:
    """Holds the writer thread inside a job until released, so the test can queue many
    jobs behind it and have them run as one batch: deterministic group commit."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def job(self) -> None:
        self.entered.set()
        assert self.release.wait(timeout=10), "the test never released the writer"


@pytest.fixture
def gate() -> Iterator[WriterGate]:
    writer_gate = WriterGate()
    yield writer_gate
    writer_gate.release.set()
