"""The store: durable ingests per second, and the database's size per 100,000 messages.

Real files in a temporary folder, ``synchronous=FULL`` as in production: every figure is
for SMS that would survive a power cut. Run alone with ``python -m bench store_bench``.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.cli import run_on_event_loop
from agent.protocol.pdu import encode_deliver
from agent.store import Store
from bench import Result

COMMAND = "python -m bench store_bench"
ICCIDS = [f"89701012345678901{n:02d}" for n in range(8)]  # an 8-modem site


def _pdus(count: int) -> list[tuple[str, str]]:
    """(ICCID, hex PDU) of ``count`` distinct one-part SMS, typical verification codes."""
    stamp = datetime(2026, 3, 1, 15, 0, tzinfo=UTC)
    return [
        (
            ICCIDS[n % len(ICCIDS)],
            encode_deliver(
                f"Your verification code is {n:06d}. Do not share it with anyone.",
                "VKcom" if n % 2 else "+79161234567",
                timestamp=stamp + timedelta(seconds=n),
            )[0].hex(),
        )
        for n in range(count)
    ]


async def _ingest(store: Store, iccid: str, pdu_hex: str, index: int) -> int | None:
    result = await store.ingest_pdu(
        iccid=iccid,
        imei=None,
        slot="usb-1",
        storage="SM",
        index=index,
        pdu_hex=pdu_hex,
        read_at=time.time(),
    )
    return result.message_id


async def _sequential(folder: Path, pdus: list[tuple[str, str]]) -> float:
    """One modem, one SMS at a time: every ingest waits for its own fsync."""
    store = await Store.open(folder / "sequential.db")
    try:
        started = time.perf_counter()
        for index, (iccid, pdu_hex) in enumerate(pdus):
            await _ingest(store, iccid, pdu_hex, index)
        return len(pdus) / (time.perf_counter() - started)
    finally:
        await store.close()


async def _concurrent(folder: Path, pdus: list[tuple[str, str]], wave: int) -> tuple[float, int]:
    """A pool sweeping its SIMs at start: ``wave`` ingests in flight, group commit."""
    store = await Store.open(folder / "concurrent.db")
    try:
        before = store.writer.transactions
        started = time.perf_counter()
        for start in range(0, len(pdus), wave):
            chunk = pdus[start : start + wave]
            await asyncio.gather(
                *(_ingest(store, iccid, hex_, start + n) for n, (iccid, hex_) in enumerate(chunk))
            )
        rate = len(pdus) / (time.perf_counter() - started)
        return rate, store.writer.transactions - before
    finally:
        await store.close()


def _user_system(native_id: int) -> tuple[float, float]:
    """A thread's user and system CPU seconds so far, from /proc (clock ticks)."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


async def _writer_cpu(
    folder: Path, pdus: list[tuple[str, str]]
) -> tuple[float, float, tuple[float, float]]:
    """CPU time of the writer thread per SMS, its commits per SMS, and its user and system
    time per SMS, in the e2e load's pattern: one SMS at a time, each waiting for its
    commit, and the previous message's "sent" riding with it (Store.mark_sent_soon), as
    the pump does when OnlineSim accepts it. The thread's own CPU clock, fsyncs included;
    the system part (mostly the fsync) is the noisier on a busy machine."""
    store = await Store.open(folder / "writer.db")
    try:
        (thread,) = [t for t in threading.enumerate() if t.ident == store.writer.thread_id]
        assert thread.native_id is not None
        clock = time.pthread_getcpuclockid(store.writer.thread_id)
        before, commits = time.clock_gettime(clock), store.writer.transactions
        user_before, system_before = _user_system(thread.native_id)
        sent: list[asyncio.Future[None]] = []
        for index, (iccid, pdu_hex) in enumerate(pdus):
            message_id = await _ingest(store, iccid, pdu_hex, index)
            assert message_id is not None
            sent.append(store.mark_sent_soon(message_id, time.time(), 200, None))
        store.writer.commit_riders_now()
        await asyncio.gather(*sent)
        cpu = time.clock_gettime(clock) - before
        user, system = _user_system(thread.native_id)
        count = len(pdus)
        split = ((user - user_before) / count, (system - system_before) / count)
        return cpu / count, (store.writer.transactions - commits) / count, split
    finally:
        await store.close()


async def _size(folder: Path, pdus: list[tuple[str, str]]) -> tuple[float, float, float]:
    """Bytes per message once sent (message, raw PDU, one delivery attempt), and how
    long pruning them all takes and what is left."""
    path = folder / "size.db"
    store = await Store.open(path, retention_days=1)
    try:
        sent_at = datetime.now(UTC) - timedelta(days=2)
        for start in range(0, len(pdus), 1000):
            ids = await asyncio.gather(
                *(
                    _ingest(store, iccid, hex_, start + n)
                    for n, (iccid, hex_) in enumerate(pdus[start : start + 1000])
                )
            )
            await asyncio.gather(
                *(store.mark_sent(i, sent_at, 200, '{"response": 1}') for i in ids if i)
            )
        await store.checkpoint()
        size = path.stat().st_size
        started = time.perf_counter()
        await store.prune(datetime.now(UTC))
        prune_seconds = time.perf_counter() - started
        return size, prune_seconds, path.stat().st_size
    finally:
        await store.close()


async def _run(sequential: int, concurrent: int, sized: int, steady: int) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="simedge-bench-") as name:
        folder = Path(name)
        pdus = _pdus(max(sequential, concurrent, sized, steady))
        writer_cpu, commits, (user, system) = await _writer_cpu(folder, pdus[:steady])
        one_by_one = await _sequential(folder, pdus[:sequential])
        grouped, transactions = await _concurrent(folder, pdus[:concurrent], wave=1000)
        size, prune_seconds, after = await _size(folder, pdus[:sized])
    per_100k = size / sized * 100_000
    return [
        Result(
            "writer CPU per SMS (ingest + mark sent)",
            writer_cpu * 1000,
            "ms",
            COMMAND,
            f"{steady} one-part SMS one at a time, each one's sent mark riding with the next"
            f" commit; {commits:.2f} commits per SMS; user {user * 1000:.2f} ms,"
            f" system {system * 1000:.2f} ms",
        ),
        Result(
            "durable ingests, one at a time (an fsync each)",
            one_by_one,
            "SMS/s",
            COMMAND,
            f"{sequential} one-part SMS",
        ),
        Result(
            "durable ingests, 1000 in flight (group commit)",
            grouped,
            "SMS/s",
            COMMAND,
            f"{concurrent} SMS in {transactions} transactions",
        ),
        Result(
            "database size per 100,000 sent messages",
            per_100k / 1e6,
            "MB",
            COMMAND,
            f"measured on {sized} one-part SMS; message, raw PDU, delivery attempt each",
        ),
        Result(
            f"prune {sized} sent messages + incremental vacuum",
            prune_seconds,
            "s",
            COMMAND,
            f"file {size / 1e6:.1f} MB -> {after / 1e6:.2f} MB",
        ),
    ]


def run(
    sequential: int = 300, concurrent: int = 10_000, sized: int = 100_000, steady: int = 2_000
) -> list[Result]:
    return run_on_event_loop(_run(sequential, concurrent, sized, steady))


if __name__ == "__main__":
    for result in run():
        print(f"{result.name}: {result.cell()} {result.unit} ({result.note})")
