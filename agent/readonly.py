"""The site's state read from the agent's database file, read-only, with the standard
library only: for ``simedge status`` and for the dashboard while the agent is down.

Both must say what the running agent would say, so both read here: the outbox's counts,
its last error (the newer of the last failed attempt and the uplink's last error, as
:meth:`agent.status.OutboxStatus.with_uplink_error` decides), the uplink's last known
state and the numbers OnlineSim last accepted (the site facts the agent keeps, see
:mod:`agent.store.facts`). The file is opened with ``mode=ro``: a reader can never write
to it or hold its write lock. Imports nothing of the agent but :mod:`agent.status` and
:mod:`agent.errors`, so the dashboard loads no peewee.

Times in the database are naive UTC text (``2026-03-01 12:00:00.250000``).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from agent.errors import StoreError
from agent.status import (
    FACT_NUMBERS_ONLINE,
    FACT_UPLINK,
    NumbersOnline,
    OutboxStatus,
    UplinkStatus,
    from_json,
)


def epoch(value: str | None) -> float | None:
    """The store's naive-UTC text as unix seconds."""
    if value is None:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()


def db_time(seconds: float) -> str:
    """Unix seconds as the store's naive-UTC text."""
    return str(datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None))


def connect_read_only(path: str | Path) -> sqlite3.Connection:
    """A connection that cannot write; StoreError names the file when it cannot open."""
    uri = f"file:{quote(str(Path(path).resolve()))}?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=2.0)
        connection.execute("SELECT 1 FROM schema_version LIMIT 1")
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot read the agent's database: {exc}") from exc
    connection.row_factory = sqlite3.Row
    return connection


def read_fact(connection: sqlite3.Connection, name: str) -> dict[str, Any] | None:
    """One site fact as JSON; None when never written, unreadable, or the database is
    older than the site_fact table (an agent that has not run since its upgrade)."""
    try:
        row = connection.execute("SELECT value FROM site_fact WHERE name = ?", (name,)).fetchone()
    except sqlite3.OperationalError:  # no such table
        return None
    if row is None:
        return None
    try:
        value = json.loads(row[0])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def read_uplink(connection: sqlite3.Connection) -> UplinkStatus | None:
    """The uplink as the agent last recorded it (None: never recorded)."""
    value = read_fact(connection, FACT_UPLINK)
    try:
        return None if value is None else from_json(UplinkStatus, value, where=FACT_UPLINK)
    except ValueError:
        return None


def read_numbers_online(connection: sqlite3.Connection) -> NumbersOnline | None:
    """The last numbers list OnlineSim accepted (None: none yet)."""
    value = read_fact(connection, FACT_NUMBERS_ONLINE)
    try:
        return None if value is None else from_json(NumbersOnline, value, where="numbers")
    except ValueError:
        return None


def read_outbox(
    connection: sqlite3.Connection, now: float, uplink: UplinkStatus | None
) -> OutboxStatus:
    """Pending (due now), backing off, dead, blocked, assembling; the last success and
    the last error, the uplink's included."""
    counts: dict[str, int] = dict(
        connection.execute(
            "SELECT state, count(*) FROM message WHERE state != 'sent' GROUP BY state"
        ).fetchall()
    )
    (backing_off,) = connection.execute(
        "SELECT count(*) FROM message WHERE state = 'pending' AND next_attempt_at > ?",
        (db_time(now),),
    ).fetchone()
    (last_sent,) = connection.execute(
        "SELECT max(sent_at) FROM message WHERE state = 'sent'"
    ).fetchone()
    failure = connection.execute(
        "SELECT at, coalesce(error, body, outcome) FROM delivery_attempt "
        "WHERE outcome != 'sent' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    outbox = OutboxStatus(
        pending=counts.get("pending", 0) - backing_off,
        backing_off=backing_off,
        dead=counts.get("dead", 0),
        blocked=counts.get("blocked", 0),
        assembling=counts.get("assembling", 0),
        last_success_at=epoch(last_sent),
        last_error=failure[1] if failure else None,
        last_error_at=epoch(failure[0]) if failure else None,
    )
    return outbox if uplink is None else outbox.with_uplink_error(uplink)
