"""Opening the SQLite file, its pragmas, and the single writer.

Every write goes through :class:`Writer`: one thread owns the write connection and runs
write jobs from a queue, so a commit's fsync never blocks the event loop, and SQLite's one
write lock is never contended inside the agent. The writer practises *group commit*: it
takes every job waiting (up to ``max_batch``) and runs them in ONE transaction, then
resolves their futures only after COMMIT returned, so ``await`` means "durable on disk".
Under a burst (a pool of modems sweeping their SIMs at start) many ingests share one fsync.
A write nobody waits on may *ride* (:meth:`Writer.submit_soon`): it does not wake the
writer, but goes in the next transaction anyone starts, or at its deadline; a message's
"sent" rides with the next SMS's commit this way (docs/uplink.md, "The delivery promise").

A job that raises rolls back only its own writes and gets its exception (translated into
:class:`~agent.errors.StoreError` or :class:`~agent.errors.DiskFull`); the others in the
batch commit. Jobs almost never raise, so a batch first runs plainly, with no SAVEPOINT
around each job (they cost two statements per job, a quarter of an SMS's statements);
when one raises, the transaction is rolled back and the batch runs again with each job
inside its own SAVEPOINT. Some SQLite errors (SQLITE_FULL, SQLITE_IOERR) roll back the
whole transaction even then; the writer notices, fails the job that hit it and runs the
batch's other jobs again in a new transaction, so "awaited" still means "committed". Jobs
are therefore plain functions of the database with no side effects outside it (they may
run twice, or more).

Outcomes go back to the event loop as one wake-up per batch, not one per job: each is a
write to the loop's self-pipe and a turn of the loop (issue 19).

Reads use peewee's per-thread connections: the event loop thread reads on its own
connection (WAL readers never wait for the writer); heavier reads run in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from peewee import DatabaseError, SqliteDatabase

from agent.errors import DiskFull, StoreDamaged, StoreError, StoreNotWritable
from agent.store.integrity import way_out

T = TypeVar("T")

# Properties of the FILE, set once by the writer before the first table exists (see
# `prepare_file`). Not per-connection pragmas: setting auto_vacuum takes the write lock, so
# every reader connection would queue behind the writer just to open.
FILE_PRAGMAS: tuple[tuple[str, object], ...] = (
    # Free pages are returned to the file system by `PRAGMA incremental_vacuum` after a
    # prune, so the file shrinks without a full VACUUM (which rewrites the whole file,
    # needs twice the space and holds the write lock for seconds on an SD card). SQLite
    # only honours this on a database that has no tables yet, so it must come first.
    ("auto_vacuum", "incremental"),
    # WAL: readers (the dashboard, the outbox queries) never wait for the writer and the
    # writer never waits for them; a commit appends to one file sequentially, which an SD
    # card's controller handles better than the rollback journal's scattered writes.
    # Persistent: stored in the file, every later connection is in WAL mode.
    ("journal_mode", "wal"),
)

# Why each per-connection pragma is what it is. peewee applies them to every connection.
PRAGMAS: tuple[tuple[str, object], ...] = (
    # FULL: fsync the WAL at every commit. The modem deletes an SMS from the SIM right after
    # our commit returns; with NORMAL a power cut could lose the last commits and the SMS
    # would be gone from both places. The cost (one fsync per commit) is amortised by the
    # writer's group commit.
    ("synchronous", "full"),
    # Parts, PDUs and delivery attempts belong to their message: the foreign keys keep
    # them consistent and let the retention prune delete by cascade.
    ("foreign_keys", 1),
    # Only a second process (an operator's sqlite3 shell, a backup) can hold the write
    # lock: wait up to 5 s for it rather than failing an ingest at once.
    ("busy_timeout", 5000),
    # Checkpoint the WAL into the database every 1000 pages (~4 MB, SQLite's default, kept
    # explicit), and after a checkpoint cut the WAL file back to 4 MB, so a burst does not
    # leave a large WAL on the card for good.
    ("wal_autocheckpoint", 1000),
    ("journal_size_limit", 4 * 1024 * 1024),
    # 2 MB of page cache per connection (negative = KiB): the Pi has little RAM and the
    # agent aims at < 60 MB RSS; the hot working set (recent messages, indexes) is small.
    ("cache_size", -2048),
    # Sorting and temporary indexes stay in memory: small here, and no temp files on the card.
    ("temp_store", "memory"),
)

DEFAULT_MAX_BATCH = 256


def prepare_file(database: SqliteDatabase) -> None:
    """Set the file's own properties (auto_vacuum, WAL). Run by the writer, outside any
    transaction, before the migrations create the first table; harmless afterwards."""
    for name, value in FILE_PRAGMAS:
        database.execute_sql(f"PRAGMA {name} = {value}")


def open_database(path: str | Path) -> SqliteDatabase:
    """A peewee database for ``path`` with the store's pragmas, not yet connected."""
    database = SqliteDatabase(None)
    database.init(str(path), pragmas=list(PRAGMAS))
    return database


def open_read_only(path: str | Path) -> SqliteDatabase:
    """A connected peewee database for the agent's file at ``path`` that cannot write to
    it nor hold its write lock (``mode=ro``; no pragma is set, since setting one writes).
    StoreError names the file when it is missing or not the agent's database."""
    uri = f"file:{quote(str(Path(path).resolve()))}?mode=ro"
    database = SqliteDatabase(uri, uri=True, timeout=2.0)
    try:
        database.connect()
        database.execute_sql("SELECT 1 FROM schema_version LIMIT 1")
    except (sqlite3.Error, DatabaseError) as exc:
        database.close()
        raise StoreError(f"{path}: cannot read the agent's database: {exc}") from exc
    return database


def _walk_causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if any(current is known for known in seen):
            continue
        seen.append(current)
        # peewee wraps sqlite3 errors with the original as args[0] and as __context__.
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
        stack.extend(link for link in (current.__cause__, current.__context__) if link)
    return seen


def is_disk_full(exc: BaseException) -> bool:
    """True when SQLite or the OS says the disk (or the database's page limit) is full."""
    for cause in _walk_causes(exc):
        if isinstance(cause, sqlite3.Error):
            code = getattr(cause, "sqlite_errorcode", None)
            if code == sqlite3.SQLITE_FULL or "database or disk is full" in str(cause):
                return True
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            return True
    return False


#: SQLite's primary result codes that say "nothing can be written here now", whatever
#: the statement: a read-only file or file system, an I/O error, a file that vanished.
_UNWRITABLE_CODES = frozenset(
    {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM}
)
_UNWRITABLE_ERRNOS = frozenset({errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM})


def is_unwritable(exc: BaseException) -> bool:
    """True when SQLite or the OS says the store cannot write at all (not full)."""
    for cause in _walk_causes(exc):
        if isinstance(cause, sqlite3.Error):
            code = getattr(cause, "sqlite_errorcode", None)
            # Extended codes (SQLITE_IOERR_WRITE...) carry the primary one in the low byte.
            if code is not None and code & 0xFF in _UNWRITABLE_CODES:
                return True
            if "readonly database" in str(cause) or "disk I/O error" in str(cause):
                return True
        if isinstance(cause, OSError) and cause.errno in _UNWRITABLE_ERRNOS:
            return True
    return False


def is_damaged(exc: BaseException) -> bool:
    """True when SQLite says the file is corrupt or not a database at all."""
    damaged = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
    return any(
        isinstance(cause, sqlite3.DatabaseError)
        and (
            getattr(cause, "sqlite_errorcode", None) in damaged
            or "database disk image is malformed" in str(cause)
        )
        for cause in _walk_causes(exc)
    )


def translate(exc: BaseException, what: str, path: str | Path = "") -> StoreError:
    """The one place where peewee/sqlite3/OS errors become our exception tree."""
    if isinstance(exc, StoreError):
        return exc
    if is_disk_full(exc):
        return DiskFull(f"{what}: the data folder is full ({exc})")
    if is_damaged(exc):
        # Found while running (a card that wore out under the agent): stop, and say how
        # out. The check at the next open refuses the file with the same advice.
        where = Path(path) if path else Path("the database")
        return StoreDamaged(f"{what}: {where}: the database is damaged ({exc}); {way_out(where)}")
    if is_unwritable(exc):
        return StoreNotWritable(f"{what}: the store cannot write ({type(exc).__name__}: {exc})")
    return StoreError(f"{what}: {type(exc).__name__}: {exc}")


@dataclass
class _Job:
    function: Callable[[], Any]
    what: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    bare: bool = False  # runs alone, outside a transaction (checkpoint, incremental vacuum)
    outcome: tuple[bool, Any] = field(default=(False, None))
    wrote: bool = False  # it changed rows and they were committed: proof the store writes


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the awaiting task was cancelled; the job ran (or failed) anyway
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class _Nudge:
    """Wakes the writer for the riders alone (see Writer.submit_soon)."""


_NUDGE = _Nudge()


class _TransactionLost(Exception):
    """SQLite rolled back the whole batch transaction because of one job's error."""


class _JobFailed(Exception):
    """A job raised in a batch run without savepoints: roll the batch back, run it again."""


class Writer:
    """The single writer thread with group commit. See the module docstring."""

    def __init__(self, database: SqliteDatabase, *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self._database = database
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | _Nudge | None] = queue.SimpleQueue()
        # Jobs that wait for the next transaction rather than wake the writer (see
        # submit_soon), and the event-loop timer that wakes it for them at the latest.
        self._riders: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._nudge: asyncio.TimerHandle | None = None
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._closed = False
        # Counters for tests and `simedge status`: jobs run vs transactions committed.
        self.jobs_done = 0
        self.transactions = 0
        # Whether the store can write, judged from real writes (see `writable`).
        self.unwritable: StoreNotWritable | None = None
        self._writable_listeners: list[Callable[[StoreNotWritable | None], None]] = []
        self._thread.start()

    @property
    def writable(self) -> bool:
        """False from a write that failed with :class:`StoreNotWritable` (full, read-only,
        I/O error) until a write that changed rows commits again. A job that changed
        nothing proves nothing (a commit without changes writes no page), so only the
        ones that did count."""
        return self.unwritable is None

    def on_writable_change(
        self, listener: Callable[[StoreNotWritable | None], None]
    ) -> Callable[[], None]:
        """Call ``listener`` with the error when the store stops writing, with None when
        it writes again; returns a function that removes it."""
        self._writable_listeners.append(listener)
        return lambda: self._writable_listeners.remove(listener)

    def _judge(self, job: _Job) -> None:
        """On the event loop, as each job's outcome arrives: track whether writes work."""
        ok, value = job.outcome
        if not ok and isinstance(value, StoreNotWritable):
            changed = self.unwritable is None
            self.unwritable = value
        elif ok and job.wrote and self.unwritable is not None:
            changed, self.unwritable = True, None
        else:
            return
        if changed:
            for listener in list(self._writable_listeners):
                listener(self.unwritable)

    @property
    def thread_id(self) -> int | None:
        return self._thread.ident

    @property
    def backlog(self) -> int:
        """Jobs queued and not yet taken by the writer (a health figure for status)."""
        return self._queue.qsize()

    async def submit(self, function: Callable[[], T], what: str, *, bare: bool = False) -> T:
        """Run ``function`` in the writer's transaction; return once it is committed.

        ``what`` names the operation in the error message (e.g. "ingest PDU from 8970...").
        ``bare`` jobs run on their own outside any transaction, for the few statements
        SQLite refuses inside one (``wal_checkpoint``) or runs better alone; they run
        after the batch they were queued with.
        """
        if self._closed:
            raise StoreError(f"{what}: the store is closed")
        loop = asyncio.get_running_loop()
        job = _Job(function, what, loop, loop.create_future(), bare)
        self._queue.put(job)
        return await job.future

    def submit_soon(
        self, function: Callable[[], T], what: str, *, within: float
    ) -> asyncio.Future[T]:
        """Run ``function`` in the next transaction the writer commits anyway, or after
        ``within`` seconds at the latest, without waking the writer for it; returns the
        future that is done once it is committed (or failed, as :meth:`submit` raises).

        For a write nobody waits on whose loss in a crash costs little: the "sent" mark of
        a message OnlineSim accepted rides with the next SMS's commit, saving a thread
        hand-off, a transaction and an fsync per message (issue 19)."""
        if self._closed:
            raise StoreError(f"{what}: the store is closed")
        loop = asyncio.get_running_loop()
        job = _Job(function, what, loop, loop.create_future())
        self._riders.put(job)
        if self._nudge is None:
            self._nudge = loop.call_later(within, self._wake_for_riders)
        return job.future

    def commit_riders_now(self) -> None:
        """Someone waits for a rider: wake the writer for them now, not at the deadline."""
        if not self._riders.empty():
            self._queue.put(_NUDGE)

    def _wake_for_riders(self) -> None:
        """The riders' deadline: wake the writer unless a transaction took them already."""
        self._nudge = None
        self.commit_riders_now()

    async def close(self) -> None:
        """Finish every job already queued, then stop the thread and close its connection."""
        if self._closed:
            return
        self._closed = True
        if self._nudge is not None:
            self._nudge.cancel()
            self._nudge = None
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)

    # --- the writer thread ----------------------------------------------------------------

    def _take_riders(self) -> list[_Job]:
        riders: list[_Job] = []
        while True:
            try:
                riders.append(self._riders.get_nowait())
            except queue.Empty:
                return riders

    def _run(self) -> None:
        try:
            while True:
                first = self._queue.get()
                stop = first is None
                batch = [first] if isinstance(first, _Job) else []
                while not stop and len(batch) < self._max_batch:
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                    elif isinstance(job, _Job):
                        batch.append(job)
                # Riders were queued before the jobs that found them here: they go first.
                batch = self._take_riders() + batch
                self._run_batch([job for job in batch if not job.bare])
                for job in batch:
                    if job.bare:
                        self._run_bare(job)
                if stop:
                    return
        finally:
            self._database.close()

    def _deliver(self, jobs: list[_Job]) -> None:
        """Hand the outcomes to the jobs' event loops (from the writer thread), in order,
        with one wake-up of each loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        for job in jobs:
            by_loop.setdefault(job.loop, []).append(job)
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits now
                loop.call_soon_threadsafe(self._settle_all, settled)

    def _settle_all(self, jobs: list[_Job]) -> None:
        """On the event loop: judge each outcome, then resolve its future."""
        for job in jobs:
            self._judge(job)
            _settle(job.future, *job.outcome)

    def _run_bare(self, job: _Job) -> None:
        try:
            job.outcome = (True, job.function())
        except Exception as exc:
            job.outcome = (False, translate(exc, job.what, self._database.database))
        self.jobs_done += 1
        self._deliver([job])

    def _run_batch(self, batch: list[_Job]) -> None:
        if not batch:
            return
        todo = list(batch)
        finished: list[_Job] = []
        while todo:
            try:
                done, todo = self._transaction(todo)
            except Exception as exc:  # BEGIN or COMMIT failed: nothing of the batch is durable
                for job in todo:
                    job.outcome = (False, translate(exc, job.what, self._database.database))
                finished.extend(todo)
                break
            finished.extend(done)
        self.jobs_done += len(batch)
        self._deliver(finished)

    def _transaction(self, jobs: list[_Job]) -> tuple[list[_Job], list[_Job]]:
        """Run ``jobs`` in one transaction. Returns (settled jobs, jobs to run again)."""
        if self._plain_transaction(jobs):
            return jobs, []
        return self._savepoint_transaction(jobs)

    def _plain_transaction(self, jobs: list[_Job]) -> bool:
        """Run ``jobs`` in one transaction with no SAVEPOINT between them. False when one
        raised: the whole transaction was rolled back, and the caller runs them again."""
        database = self._database
        try:
            with database.atomic("IMMEDIATE"):
                connection = database.connection()
                for job in jobs:
                    changes = connection.total_changes
                    try:
                        result = job.function()
                    except Exception as exc:
                        raise _JobFailed from exc
                    job.outcome = (True, result)
                    job.wrote = connection.total_changes > changes
        except _JobFailed:
            return False
        self.transactions += 1
        return True

    def _savepoint_transaction(self, jobs: list[_Job]) -> tuple[list[_Job], list[_Job]]:
        """Run ``jobs`` in one transaction, each in its own SAVEPOINT so that one that
        raises loses only its own writes. Returns (settled jobs, jobs to run again)."""
        database = self._database
        settled: list[_Job] = []
        again: list[_Job] = []
        try:
            with database.atomic("IMMEDIATE"):
                for index, job in enumerate(jobs):
                    database.execute_sql('SAVEPOINT "job"')
                    changes = database.connection().total_changes
                    try:
                        result = job.function()
                    except Exception as exc:
                        job.wrote = False  # it may have written in the plain run, now undone
                        if not database.connection().in_transaction:
                            job.outcome = (False, translate(exc, job.what, self._database.database))
                            # The jobs before this one lost their writes with the
                            # transaction; the ones after have not run: all run again.
                            settled = [job]
                            again = jobs[:index] + jobs[index + 1 :]
                            raise _TransactionLost from exc
                        database.execute_sql('ROLLBACK TO "job"')
                        database.execute_sql('RELEASE "job"')
                        job.outcome = (False, translate(exc, job.what, self._database.database))
                    else:
                        database.execute_sql('RELEASE "job"')
                        job.outcome = (True, result)
                        job.wrote = database.connection().total_changes > changes
                    settled.append(job)
        except _TransactionLost:
            return settled, again
        self.transactions += 1
        return settled, []
