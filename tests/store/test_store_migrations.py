"""Migrations: every earlier version upgrades, keeps its rows, and ends at the models' schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import StoreError
from agent.store import LATEST_VERSION, Store
from agent.store.db import open_database, prepare_file
from agent.store.migrations import MIGRATIONS, current_version, upgrade
from agent.store.models import MODELS
from tests.child import python_output
from tests.store.conftest import ICCID, T0, count_rows, ingest, pdus, plain_connection

# Rows written with the version-1 columns, as an agent of that version would have.
V1_ROWS = [
    """INSERT INTO sim (iccid, number, number_source, last_slot, first_seen, last_seen)
       VALUES ('8970101234567890123', '+79160000001', 'manual', 'usb-1.2',
               '2026-01-01 10:00:00', '2026-01-01 10:05:00')""",
    """INSERT INTO message (id, iccid, slot, sender, sender_type, text, encoding, scts,
       scts_offset_min, received_at, ready_at, seq, concat_ref, part_count, complete,
       missing_parts, state, attempts, next_attempt_at, last_error)
       VALUES (1, '8970101234567890123', 'usb-1.2', 'VKcom', 'alphanumeric',
               'VK code 111111', 'gsm7', '2026-01-01 09:59:58', 180, '2026-01-01 10:00:00',
               '2026-01-01 10:00:00', 1, NULL, 1, 1, '', 'pending', 2,
               '2026-01-01 10:05:00', 'HTTP 503')""",
    """INSERT INTO event (at, level, kind, text) VALUES
       ('2026-01-01 10:00:00', 'info', 'agent_started', 'started')""",
]


def schema_of(path: Path) -> dict[str, object]:
    """Columns, indexes and foreign keys of every table: what must agree after migration."""
    with plain_connection(path) as connection:
        tables = [
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        index_sql = dict(connection.execute("SELECT name, sql FROM sqlite_master"))
        schema: dict[str, object] = {}
        for table in tables:
            columns = {
                (name, kind, notnull, pk)
                for _, name, kind, notnull, _default, pk in connection.execute(
                    f'PRAGMA table_info("{table}")'
                )
            }
            indexes = {
                (
                    name,
                    unique,
                    tuple(row[2] for row in connection.execute(f'PRAGMA index_info("{name}")')),
                    # a partial index's WHERE, as written (sqlite keeps the CREATE text)
                    " ".join(index_sql[name].split("WHERE", 1)[1].split()) if partial else "",
                )
                for _, name, unique, _origin, partial in connection.execute(
                    f'PRAGMA index_list("{table}")'
                )
            }
            foreign_keys = {
                (row[2], row[3], row[4], row[6])
                for row in connection.execute(f'PRAGMA foreign_key_list("{table}")')
            }
            schema[table] = (columns, indexes, foreign_keys)
        return schema


def build_at_version(path: Path, version: int) -> None:
    database = open_database(path)
    prepare_file(database)
    assert upgrade(database, target=version) == list(range(1, version + 1))
    for statement in V1_ROWS:
        database.execute_sql(statement)
    assert current_version(database) == version
    database.close()


def test_the_migrated_schema_is_the_models_schema(tmp_path: Path) -> None:
    migrated = tmp_path / "migrated.db"
    build_at_version(migrated, LATEST_VERSION)
    from_models = tmp_path / "models.db"
    database = open_database(from_models)
    with database.bind_ctx(MODELS):
        database.create_tables(MODELS)
    database.close()

    assert schema_of(migrated) == schema_of(from_models)


@pytest.mark.parametrize("version", [number for number, _, _ in MIGRATIONS[:-1]])
async def test_an_earlier_version_upgrades_and_keeps_its_rows(db_path: Path, version: int) -> None:
    db_path.parent.mkdir(parents=True)
    build_at_version(db_path, version)

    store = await Store.open(db_path)
    try:
        version_now = await store.read(lambda: current_version(store._database))
        # The message from the old agent is still due with its retry state...
        (due,) = await store.due_messages(T0.replace(year=2027), 10)
        # ...and the upgraded database takes new SMS.
        result = await ingest(store, pdus("after the upgrade")[0])
        await store.set_sim_number(ICCID, "+79160000009")
    finally:
        await store.close()

    assert version_now == LATEST_VERSION
    assert (due.text, due.attempts, due.number, due.scts.utcoffset().total_seconds()) == (
        "VK code 111111",
        2,
        "+79160000001",
        10800,
    )
    assert result.message_id is not None
    assert count_rows(db_path, "event", "kind = 'agent_started'") == 1
    assert count_rows(db_path, "sim", "number_updated_at IS NOT NULL") == 1
    # Version 8: the SIM's slot history starts with its last slot, first to last sighting.
    assert (
        count_rows(
            db_path,
            "sim_stay",
            "slot = 'usb-1.2' AND since = '2026-01-01 10:00:00' AND until = '2026-01-01 10:05:00'",
        )
        == 1
    )
    with plain_connection(db_path) as connection:
        versions = [row[0] for row in connection.execute("SELECT version FROM schema_version")]
        # Version 3's uplink fields: the old SIM has none of them yet (never online, no id,
        # no take-off mark), and they take values.
        uplink_fields = connection.execute(
            "SELECT online_since, onlinesim_id, invalid_number_reason, takeoff_sum,"
            " takeoff_at, takeoff_done_at FROM sim WHERE iccid = ?",
            (ICCID,),
        ).fetchone()
        connection.execute(
            "UPDATE sim SET onlinesim_id = 1042, takeoff_sum = 75.5 WHERE iccid = ?", (ICCID,)
        )
        marked = connection.execute(
            "SELECT onlinesim_id, takeoff_sum FROM sim WHERE iccid = ?", (ICCID,)
        ).fetchone()
        # Version 5: the old message had nothing salvaged; the column takes the faults.
        old_problems = connection.execute(
            "SELECT problems FROM message WHERE text = 'VK code 111111'"
        ).fetchone()
        connection.execute(
            "UPDATE message SET problems = 'scts at octet 25: zone' WHERE text = 'VK code 111111'"
        )
    assert versions == list(range(1, LATEST_VERSION + 1))
    assert uplink_fields == (None,) * 6
    assert marked == (1042, 75.5)
    assert old_problems == (None,)


async def test_a_database_from_a_newer_agent_is_refused(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    build_at_version(db_path, LATEST_VERSION)
    with plain_connection(db_path) as connection:
        connection.execute(
            "INSERT INTO schema_version VALUES (?, 'from the future', '2027-01-01 00:00:00')",
            (LATEST_VERSION + 1,),
        )

    with pytest.raises(StoreError, match=f"schema version {LATEST_VERSION + 1} is newer"):
        await Store.open(db_path)
    # The refusal closed the store: another open in this process is possible.
    with plain_connection(db_path) as connection:
        connection.execute("DELETE FROM schema_version WHERE name = 'from the future'")
    store = await Store.open(db_path)
    await store.close()


def test_a_current_database_opens_without_the_migration_library(tmp_path: Path) -> None:
    # The agent's start on a current schema must not load playhouse.migrate (memory).
    code = (
        "import asyncio, sys\n"
        "from agent.store import Store\n"
        "async def open_and_close():\n"
        "    store = await Store.open(sys.argv[1])\n"
        "    await store.close()\n"
        "asyncio.run(open_and_close())\n"
        "print('playhouse.migrate' in sys.modules)\n"
    )
    path = str(tmp_path / "simedge.db")
    assert python_output(code, path) == "True"  # a new file: every migration runs
    assert python_output(code, path) == "False"
