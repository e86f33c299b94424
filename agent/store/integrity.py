"""Is the database file whole? Checked at every open, and by ``simedge db check|recover``.

A site's database can go bad without the agent's doing: a copy or restore that failed
half-way leaves a 0-byte file, an SD card that wears out returns garbage for one page, a
person edits the file by hand. Opening such a file and carrying on is worse than stopping:
an empty file would silently become a new empty database (the site's history gone without
a word), and a corrupt page is found hours later by the prune, which crashes the agent
into a restart loop. So :func:`check_before_open` runs before the store opens the file and
raises :class:`~agent.errors.StoreDamaged`, naming the file, what is wrong and the way out.

- **0 bytes.** Refused, whatever lies beside it. The agent never leaves a 0-byte database
  of its own: :func:`create_atomically` builds a new database under a temporary name and
  renames it into place only when it holds its schema, so a 0-byte ``simedge.db`` was
  made by something else and may have held a site's messages. Starting afresh is one
  command (``simedge db recover`` moves it aside), but a person decides it.
- **A corrupt page.** ``PRAGMA quick_check`` at open (every page of every b-tree read and
  checked; not the index-against-table cross-check of ``integrity_check``), interrupted
  after :data:`QUICK_CHECK_BUDGET` seconds so that a large file on a slow card cannot hold
  the start for ever: then the agent starts, and says the check did not finish.
- **Not a database at all** (a header of garbage): refused.

``simedge db recover`` copies, row by row, what still reads into a new database with the
agent's schema, and keeps the damaged file renamed with a timestamp (docs/database.md).
Each table is read in rowid order; where a read fails, the copy seeks past the bad page
(probing rowids further on, doubling the step, then narrowing back) and goes on, so one
bad page costs the rows on it, not the rest of the table; indexes are not read at all,
the new file builds its own. Why not SQLite's own tools: ``VACUUM INTO`` stops at the
first bad page and saves nothing; the ``sqlite3`` shell's ``.recover`` (which also reads
orphaned pages) needs the ``sqlite_dbpage`` table, which Debian 12's and Raspberry Pi
OS's ``sqlite3`` 3.40 are built without ("no such table: sqlite_dbpage"), and Python's
``sqlite3`` module does not expose the recovery API. The copy needs nothing installed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from agent.errors import StoreDamaged, StoreError
from agent.logs import get_logger

log = get_logger("store.integrity")

#: Seconds ``quick_check`` may take at open before it is cut short (and the agent starts
#: anyway, saying so). Measured with ``python -m bench integrity_bench``: 0.29 s for a
#: 100,000-message database (78 MB) on the 2-core EPYC of bench/RESULTS.md, shared with
#: other work (``integrity_check``, the ``simedge db check``, 1.15 s). A Pi 4 reading an SD
#: card is some ten times slower: about 3 s, well inside this budget, and systemd's
#: TimeoutStartSec (180 s, which also covers discovery) is never at risk.
QUICK_CHECK_BUDGET = 20.0
#: Problems a check reports at most: the first few say what is wrong, more say no more.
MAX_PROBLEMS = 20
_MAX_ROWID = 2**63 - 1
_BATCH = 500  # rows read per query while copying
_PROGRESS_STEPS = 1_000  # SQLite VM steps between looks at the clock (some µs)
_COMPANIONS = ("-wal", "-shm", "-journal")  # SQLite's files that belong to a database


def way_out(path: Path) -> str:
    return (
        f"stop the agent, then `simedge db check` shows the damage and `simedge db recover` "
        f"saves what still reads into a new {path.name}, keeping the damaged file beside it "
        "(docs/database.md)"
    )


@dataclass(frozen=True)
class CheckResult:
    """What a check found. ``finished`` is False when its time budget ran out first;
    ``unchecked`` says why the file could not be checked at all (not readable, locked by
    another program): that is not damage, and says nothing about the file."""

    path: Path
    problems: tuple[str, ...]
    finished: bool
    seconds: float
    unchecked: str | None = None

    @property
    def ok(self) -> bool:
        return self.finished and not self.problems and self.unchecked is None


# SQLite's answers that are about access to the file, not its contents.
_NOT_DAMAGE = ("unable to open", "locked", "busy", "readonly", "permission")


def _read_only(path: Path) -> sqlite3.Connection:
    # mode=ro: a check never writes, and never checkpoints a WAL into a damaged file.
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=5.0, isolation_level=None)


def run_check(path: Path, *, thorough: bool, budget: float | None = None) -> CheckResult:
    """``PRAGMA integrity_check`` (``thorough``) or ``quick_check`` on ``path``, read-only;
    with ``budget``, interrupted after that many seconds."""
    pragma = "integrity_check" if thorough else "quick_check"
    started = time.monotonic()
    if path.stat().st_size == 0:
        return CheckResult(path, ("the file is 0 bytes: no database in it",), True, 0.0)
    try:
        connection = _read_only(path)
    except sqlite3.Error as exc:
        return CheckResult(path, (), False, 0.0, unchecked=f"cannot open it: {exc}")
    if budget is not None:
        deadline = started + budget
        connection.set_progress_handler(lambda: time.monotonic() > deadline, _PROGRESS_STEPS)
    try:
        rows = connection.execute(f"PRAGMA {pragma}({MAX_PROBLEMS})").fetchall()
    except sqlite3.OperationalError as exc:
        seconds = time.monotonic() - started
        if "interrupted" in str(exc):
            return CheckResult(path, (), False, seconds)
        if any(words in str(exc).lower() for words in _NOT_DAMAGE):
            return CheckResult(path, (), False, seconds, unchecked=f"{exc}")
        problems: tuple[str, ...] = (f"{exc}",)  # "disk I/O error": a bad sector
    except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed"
        problems = (f"{exc}",)
    else:
        # Each row is one problem; a header line names the schema ("*** in database main
        # ***") before them, which says nothing to a person.
        problems = tuple(
            line.strip()
            for (text,) in rows
            for line in str(text).splitlines()
            if line.strip() and text != "ok" and not line.startswith("***")
        )
    finally:
        connection.close()
    return CheckResult(path, problems, True, time.monotonic() - started)


def check_before_open(path: Path, *, budget: float | None = None) -> CheckResult | None:
    """Refuse a damaged database file (StoreDamaged); None when there is no file yet.
    ``budget`` defaults to :data:`QUICK_CHECK_BUDGET`."""
    if not path.exists():
        return None
    if path.stat().st_size == 0:
        raise StoreDamaged(
            f"{path}: the database file is 0 bytes, so its messages are not in it (a copy "
            "or restore that failed, a full or damaged card?); the agent does not start "
            "on it as if it were new. Restore the file from a backup, or run "
            "`simedge db recover` to move it aside and start with a new database"
        )
    if not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(
            f"{path}: the agent cannot read and write its database file (mode "
            f"{path.stat().st_mode & 0o777:04o}, owner uid {path.stat().st_uid}); give it "
            "back to the agent's user (chown simedge: on an installed site)"
        )
    result = run_check(
        path, thorough=False, budget=QUICK_CHECK_BUDGET if budget is None else budget
    )
    if result.unchecked is not None:
        raise StoreError(f"{path}: cannot check the database at start: {result.unchecked}")
    if result.problems:
        shown = "; ".join(result.problems[:3])
        more = f" (and {len(result.problems) - 3} more)" if len(result.problems) > 3 else ""
        raise StoreDamaged(f"{path}: the database is damaged: {shown}{more}; {way_out(path)}")
    return result


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def create_atomically(path: Path) -> None:
    """A new database with the whole schema at ``path``, which must not exist: built under
    a temporary name and renamed into place, so ``path`` never exists half-made (and a
    0-byte ``path`` can always be refused)."""
    from agent.store.db import open_database, prepare_file
    from agent.store.migrations import upgrade

    building = path.with_name(path.name + ".new")
    for leftover in _family(building):
        leftover.unlink(missing_ok=True)
    _set_orphans_aside(path)
    database = open_database(building)
    try:
        database.connect()
        prepare_file(database)
        upgrade(database)
        database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot create the database: {exc}") from exc
    finally:
        database.close()  # the last connection: SQLite removes the -wal and -shm files
    _fsync(building)
    os.replace(building, path)
    _fsync(path.parent)


def _set_orphans_aside(path: Path) -> None:
    """Rename the -wal, -shm and -journal of a database file that is gone (deleted by hand
    to start afresh, lost in a copy) to ``<name>.orphaned-<UTC time>``: SQLite would
    replay such a log into the new file at ``path`` and damage it. Kept, not deleted: the
    last SMS of the old file may be in it."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for end in _COMPANIONS:
        orphan = path.with_name(path.name + end)
        if orphan.exists():
            aside = orphan.with_name(f"{orphan.name}.orphaned-{stamp}")
            os.replace(orphan, aside)
            log.warning("%s: no database file beside it; kept aside as %s", orphan, aside)


def _family(path: Path) -> Iterator[Path]:
    """The database file and the companions SQLite keeps beside it, those that exist."""
    for candidate in (path, *(path.with_name(path.name + end) for end in _COMPANIONS)):
        if candidate.exists():
            yield candidate


def _move_family(source: Path, target: Path) -> None:
    for member in list(_family(source)):
        os.replace(member, target.with_name(target.name + member.name[len(source.name) :]))


@dataclass(frozen=True)
class TableRecovery:
    """One table's recovery: rows copied, and the rowid ranges that could not be read."""

    table: str
    saved: int = 0
    unreadable: tuple[tuple[int, int], ...] = ()  # (first, last) rowids skipped
    error: str | None = None  # the table could not be read at all


@dataclass(frozen=True)
class RecoveryReport:
    """What ``simedge db recover`` saved."""

    path: Path  # the database the agent opens: the recovered one (absent: nothing read)
    kept: Path  # the damaged file, renamed
    tables: tuple[TableRecovery, ...] = ()
    mended: dict[str, int] = field(default_factory=dict)  # rows changed, by what (_MENDING)
    seconds: float = 0.0

    @property
    def rows(self) -> dict[str, int]:
        return {table.table: table.saved for table in self.tables if table.error is None}


def recover(path: Path, *, now: datetime | None = None) -> RecoveryReport:
    """Save what reads of the database at ``path`` into a new file at ``path``; the
    damaged file (and its WAL) is kept as ``<name>.damaged-<UTC time>``. On failure the
    damaged file is put back where it was and StoreError says why."""
    if not path.exists():
        raise StoreError(f"{path}: no database file to recover")
    started = time.monotonic()
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    kept = path.with_name(f"{path.name}.damaged-{stamp}")
    if kept.exists():
        raise StoreError(f"{kept} exists already; try again in a second")
    _move_family(path, kept)
    building = path.with_name(path.name + ".recovered")
    try:
        for leftover in _family(building):
            leftover.unlink()
        with tempfile.TemporaryDirectory(prefix=".recover-", dir=path.parent) as work:
            # Read a copy: opening the kept file could checkpoint its WAL into it, and the
            # kept file must stay exactly as it was found.
            source = Path(work) / "damaged.db"
            for member in _family(kept):
                if not member.name.endswith("-shm"):
                    shutil.copyfile(
                        member, Path(work) / ("damaged.db" + member.name[len(kept.name) :])
                    )
            create_atomically(building)
            tables, mended = _copy_rows(source, building)
        if any(table.saved for table in tables):
            _fsync(building)
            os.replace(building, path)
            _fsync(path.parent)
        else:  # nothing read: the agent creates a new database at its next start
            building.unlink()
    except BaseException:
        for leftover in _family(building):
            leftover.unlink()
        if not path.exists():
            _move_family(kept, path)
        raise
    return RecoveryReport(path, kept, tables, mended, time.monotonic() - started)


def _copy_rows(source: Path, target: Path) -> tuple[tuple[TableRecovery, ...], dict[str, int]]:
    with (
        contextlib.closing(sqlite3.connect(source, isolation_level=None)) as reader,
        contextlib.closing(sqlite3.connect(target, isolation_level=None)) as writer,
    ):
        # Rows go in whatever order they read; references to lost rows are mended after.
        writer.execute("PRAGMA foreign_keys = OFF")
        tables = [
            name
            for (name,) in writer.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                " AND name != 'schema_version' ORDER BY rowid"
            )
        ]
        writer.execute("BEGIN")
        results = [_copy_table(reader, writer, name) for name in tables]
        # The versions the damaged file went through, as far as they read: the new file
        # has the newest schema already, so only rows it lacks are added.
        results.append(_copy_table(reader, writer, "schema_version", replace=False))
        mended = _mend(writer)
        writer.execute("COMMIT")
        left = len(writer.execute("PRAGMA foreign_key_check").fetchall())
        if left:
            raise StoreError(f"{target}: {left} rows still refer to lost rows after mending")
        writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return tuple(results), {what: count for what, count in mended.items() if count}


# What becomes of rows whose parent row was on a bad page, so that the new file holds no
# reference to a missing row (the agent's queries join on them) and loses nothing it can
# keep: a message whose SIM was lost gets a SIM row again (its number is found anew); a
# raw PDU whose message was lost is kept unattached, as an undecodable one is (the
# retention prunes it in time); the parts and upload attempts of a lost message are
# dropped (the parts are rebuilt from PDUs, the attempts describe nothing left).
_MENDING: tuple[tuple[str, str], ...] = (
    (
        "SIM rows made again for messages and PDUs that refer to them",
        'INSERT INTO "sim" ("iccid", "first_seen", "last_seen")'
        ' SELECT "iccid", MIN("at"), MAX("at") FROM ('
        '  SELECT "iccid", "received_at" AS "at" FROM "message"'
        '  UNION ALL SELECT "iccid", "read_at" FROM "received_pdu")'
        ' WHERE "iccid" NOT IN (SELECT "iccid" FROM "sim") GROUP BY "iccid"',
    ),
    (
        "raw PDUs of lost messages kept unattached",
        'UPDATE "received_pdu" SET "message_id" = NULL WHERE "message_id" IS NOT NULL'
        ' AND "message_id" NOT IN (SELECT "id" FROM "message")',
    ),
    (
        "parts of lost messages or PDUs dropped",
        'DELETE FROM "part" WHERE "message_id" NOT IN (SELECT "id" FROM "message")'
        ' OR "pdu_id" NOT IN (SELECT "id" FROM "received_pdu")',
    ),
    (
        "upload attempts of lost messages dropped",
        'DELETE FROM "delivery_attempt" WHERE "message_id" NOT IN (SELECT "id" FROM "message")',
    ),
)


def _mend(writer: sqlite3.Connection) -> dict[str, int]:
    return {what: writer.execute(statement).rowcount for what, statement in _MENDING}


def _copy_table(
    reader: sqlite3.Connection, writer: sqlite3.Connection, table: str, *, replace: bool = True
) -> TableRecovery:
    wanted = [row[1] for row in writer.execute(f'PRAGMA table_info("{table}")')]
    try:
        present = {row[1] for row in reader.execute(f'PRAGMA table_info("{table}")')}
    except sqlite3.DatabaseError as exc:
        return TableRecovery(table, error=f"{exc}")
    if not present:
        return TableRecovery(table, error="not in the damaged file")
    columns = [name for name in wanted if name in present]
    names = ", ".join(f'"{name}"' for name in columns)
    select = f'SELECT rowid, {names} FROM "{table}" WHERE rowid >= ? ORDER BY rowid LIMIT {_BATCH}'
    verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
    insert = f'{verb} INTO "{table}" (rowid, {names}) VALUES (?{", ?" * len(columns)})'
    one = select.replace(f"LIMIT {_BATCH}", "LIMIT 1")
    # ``start``: the lowest rowid not yet read. The agent's tables number their rows from 1
    # (INTEGER PRIMARY KEY, or SQLite's own rowid), so the search for readable rows past a
    # bad first page starts from 0, not from the most negative rowid.
    saved, unreadable, start = 0, [], 0
    while True:
        try:
            rows = reader.execute(select, (start,)).fetchall()
        except sqlite3.DatabaseError:
            # Somewhere in this batch: take the rows before the bad one singly.
            rows = []
            with contextlib.suppress(sqlite3.DatabaseError):
                for _ in range(_BATCH):  # the batch failed, so one of these rows will
                    row = reader.execute(one, (rows[-1][0] + 1 if rows else start,)).fetchone()
                    if row is None:
                        break
                    rows.append(row)
            writer.executemany(insert, rows)
            saved += len(rows)
            bad = rows[-1][0] + 1 if rows else start
            resume = _next_readable(reader, table, bad)
            unreadable.append((bad, resume - 1 if resume is not None else _MAX_ROWID))
            if resume is None:
                break
            start = resume
            continue
        if not rows:
            break
        writer.executemany(insert, rows)
        saved += len(rows)
        start = rows[-1][0] + 1
    return TableRecovery(table, saved, tuple(unreadable))


def _readable(reader: sqlite3.Connection, table: str, start: int) -> bool | None:
    """Whether the first row at or after ``start`` reads; None when there is none."""
    try:
        row = reader.execute(
            f'SELECT * FROM "{table}" WHERE rowid >= ? ORDER BY rowid LIMIT 1', (start,)
        ).fetchone()
    except sqlite3.DatabaseError:
        return False
    return None if row is None else True


def _next_readable(reader: sqlite3.Connection, table: str, bad: int) -> int | None:
    """The smallest rowid above ``bad`` (whose row does not read) from which reading works
    again, or None when nothing after it reads. Near enough: a bad page holds a run of
    rowids; the search doubles its step past them, then halves back to their end."""
    step = 1
    while True:
        probe = min(bad + step, _MAX_ROWID)
        found = _readable(reader, table, probe)
        if found is None:
            return None  # nothing further: the bad rows were the table's last
        if found:
            break
        if probe == _MAX_ROWID:
            return None
        step *= 2  # at most 64 doublings reach the largest rowid
    low, good = bad + step // 2, probe  # ``low`` did not read (or is ``bad`` itself)
    while good - low > 1:  # at most 64 halvings
        middle = (low + good) // 2
        if _readable(reader, table, middle) is False:
            low = middle
        else:
            good = middle
    return good
