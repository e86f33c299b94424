"""Schema versions and the migrations between them, run at every start.

Version 1 is the initial schema, frozen here as the SQL it was created with: it must never
change with the models, or an old database and a new one would disagree about what
"version 1" means. Every later version is a plain function of ``(database, migrator)``
using :mod:`playhouse.migrate`. A new database runs the same path as an old one (version 1,
then every migration in order), so the path an upgrade takes is the path every test takes;
a test checks that the result equals the schema the models describe.

Each migration runs in its own transaction together with its ``schema_version`` row, so a
power loss in the middle leaves the database at the previous version, not between two.

To add version N: append ``(N, "what it does", function)`` to ``MIGRATIONS``, change the
models to match, and give the upgrade test a row to carry across (tests/store).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from peewee import FloatField, IntegerField, SqliteDatabase, TextField

from agent.errors import StoreError
from agent.store.models import UtcDateTimeField, db_time

# playhouse.migrate (and the playhouse modules it loads) is imported only when a migration
# runs: every start but the first of a new release finds the schema current, and the agent
# would otherwise hold 0.5 MiB of it for nothing (bench/RESULTS.md, "Issue 19: memory").
if TYPE_CHECKING:
    from playhouse.migrate import SqliteMigrator

_V1_SCHEMA = """
CREATE TABLE "schema_version" ("version" INTEGER NOT NULL PRIMARY KEY, "name" TEXT NOT NULL,
 "applied_at" DATETIME NOT NULL);
CREATE TABLE "modem" ("id" INTEGER NOT NULL PRIMARY KEY, "slot" VARCHAR(255) NOT NULL,
 "imei" VARCHAR(255), "model" VARCHAR(255), "manufacturer" VARCHAR(255),
 "firmware" VARCHAR(255), "port" VARCHAR(255), "first_seen" DATETIME NOT NULL,
 "last_seen" DATETIME NOT NULL);
CREATE UNIQUE INDEX "modem_slot" ON "modem" ("slot");
CREATE TABLE "sim" ("iccid" VARCHAR(255) NOT NULL PRIMARY KEY, "imsi" VARCHAR(255),
 "number" VARCHAR(255), "number_source" VARCHAR(255), "operator" VARCHAR(255),
 "last_slot" VARCHAR(255), "last_imei" VARCHAR(255), "first_seen" DATETIME NOT NULL,
 "last_seen" DATETIME NOT NULL);
CREATE TABLE "message" ("id" INTEGER NOT NULL PRIMARY KEY, "iccid" VARCHAR(255) NOT NULL,
 "slot" VARCHAR(255), "sender" VARCHAR(255) NOT NULL, "sender_type" VARCHAR(255) NOT NULL,
 "text" TEXT NOT NULL, "encoding" VARCHAR(255) NOT NULL, "scts" DATETIME NOT NULL,
 "scts_offset_min" INTEGER NOT NULL, "received_at" DATETIME NOT NULL, "ready_at" DATETIME,
 "seq" INTEGER, "concat_ref" INTEGER, "part_count" INTEGER NOT NULL,
 "complete" INTEGER NOT NULL, "missing_parts" VARCHAR(255) NOT NULL,
 "blocked_rule" VARCHAR(255), "state" VARCHAR(255) NOT NULL, "attempts" INTEGER NOT NULL,
 "next_attempt_at" DATETIME, "last_error" TEXT, "sent_at" DATETIME,
 FOREIGN KEY ("iccid") REFERENCES "sim" ("iccid") ON DELETE CASCADE);
CREATE UNIQUE INDEX "message_seq" ON "message" ("seq");
CREATE INDEX "message_pending" ON "message" ("iccid", "seq") WHERE ("state" = 'pending');
CREATE INDEX "message_assembling" ON "message" ("iccid", "sender", "concat_ref", "part_count")
 WHERE ("state" = 'assembling');
CREATE INDEX "message_open" ON "message" ("state") WHERE ("state" != 'sent');
CREATE INDEX "message_sent" ON "message" ("sent_at") WHERE ("state" = 'sent');
CREATE TABLE "received_pdu" ("id" INTEGER NOT NULL PRIMARY KEY,
 "iccid" VARCHAR(255) NOT NULL, "imei" VARCHAR(255), "slot" VARCHAR(255),
 "storage" VARCHAR(255) NOT NULL, "storage_index" INTEGER, "pdu_hex" TEXT NOT NULL,
 "digest" BLOB NOT NULL, "read_at" DATETIME NOT NULL, "status" VARCHAR(255) NOT NULL,
 "error" TEXT, "message_id" INTEGER,
 FOREIGN KEY ("iccid") REFERENCES "sim" ("iccid") ON DELETE CASCADE,
 FOREIGN KEY ("message_id") REFERENCES "message" ("id") ON DELETE CASCADE);
CREATE INDEX "received_pdu_message_id" ON "received_pdu" ("message_id");
CREATE UNIQUE INDEX "received_pdu_iccid_digest" ON "received_pdu" ("iccid", "digest");
CREATE TABLE "part" ("id" INTEGER NOT NULL PRIMARY KEY, "message_id" INTEGER NOT NULL,
 "seq" INTEGER NOT NULL, "text" TEXT NOT NULL, "encoding" VARCHAR(255) NOT NULL,
 "data" BLOB NOT NULL, "scts" DATETIME NOT NULL, "scts_offset_min" INTEGER NOT NULL,
 "received_at" DATETIME NOT NULL, "pdu_id" INTEGER NOT NULL,
 FOREIGN KEY ("message_id") REFERENCES "message" ("id") ON DELETE CASCADE,
 FOREIGN KEY ("pdu_id") REFERENCES "received_pdu" ("id") ON DELETE CASCADE);
CREATE INDEX "part_pdu_id" ON "part" ("pdu_id");
CREATE UNIQUE INDEX "part_message_id_seq" ON "part" ("message_id", "seq");
CREATE TABLE "delivery_attempt" ("id" INTEGER NOT NULL PRIMARY KEY,
 "message_id" INTEGER NOT NULL, "at" DATETIME NOT NULL, "outcome" VARCHAR(255) NOT NULL,
 "http_status" INTEGER, "body" TEXT, "error" TEXT,
 FOREIGN KEY ("message_id") REFERENCES "message" ("id") ON DELETE CASCADE);
CREATE INDEX "delivery_attempt_message_id" ON "delivery_attempt" ("message_id");
CREATE INDEX "delivery_attempt_failed" ON "delivery_attempt" ("id") WHERE ("outcome" != 'sent');
CREATE TABLE "event" ("id" INTEGER NOT NULL PRIMARY KEY, "at" DATETIME NOT NULL,
 "level" VARCHAR(255) NOT NULL, "kind" VARCHAR(255) NOT NULL, "text" TEXT NOT NULL,
 "slot" VARCHAR(255), "iccid" VARCHAR(255));
"""


def _v1_initial(database: SqliteDatabase, _migrator: SqliteMigrator) -> None:
    for statement in _V1_SCHEMA.split(";"):
        if statement.strip():
            database.execute_sql(statement)


def _v2_number_time_and_event_index(database: SqliteDatabase, migrator: SqliteMigrator) -> None:
    # The dashboard shows how old a SIM's number is (a USSD answer from months ago may be
    # stale); the event log is read newest first and pruned by age, which needs `at` indexed.
    from playhouse.migrate import migrate

    migrate(
        migrator.add_column("sim", "number_updated_at", UtcDateTimeField(null=True)),
        migrator.add_index("event", ("at",), False),
    )


def _v3_uplink_sim_fields(_database: SqliteDatabase, migrator: SqliteMigrator) -> None:
    # The numbers list needs a date_start that survives restarts and OnlineSim's ids; a
    # number that cannot be sent must say why; take-off marks tell a person which SIM to
    # swap, and when the swap was seen.
    from playhouse.migrate import migrate

    migrate(
        migrator.add_column("sim", "online_since", UtcDateTimeField(null=True)),
        migrator.add_column("sim", "onlinesim_id", IntegerField(null=True)),
        migrator.add_column("sim", "invalid_number_reason", TextField(null=True)),
        migrator.add_column("sim", "takeoff_sum", FloatField(null=True)),
        migrator.add_column("sim", "takeoff_at", UtcDateTimeField(null=True)),
        migrator.add_column("sim", "takeoff_done_at", UtcDateTimeField(null=True)),
    )


def _v4_block_rules(database: SqliteDatabase, _migrator: SqliteMigrator) -> None:
    # Block rules a person adds from the dashboard must outlive a restart; rules from the
    # configuration file stay there and are not copied here.
    database.execute_sql(
        'CREATE TABLE "block_rule" ("id" INTEGER NOT NULL PRIMARY KEY,'
        ' "name" VARCHAR(255) NOT NULL, "sender" TEXT, "text" TEXT,'
        ' "added_at" DATETIME NOT NULL)'
    )
    database.execute_sql('CREATE UNIQUE INDEX "block_rule_name" ON "block_rule" ("name")')


def _v5_site_facts(database: SqliteDatabase, _migrator: SqliteMigrator) -> None:
    # What the agent knows only in memory (the uplink's last error, the numbers OnlineSim
    # accepted) must reach `simedge status` and the dashboard while the agent is down.
    database.execute_sql(
        'CREATE TABLE "site_fact" ("name" VARCHAR(255) NOT NULL PRIMARY KEY,'
        ' "value" TEXT NOT NULL, "updated_at" DATETIME NOT NULL)'
    )


def _v6_message_problems(_database: SqliteDatabase, migrator: SqliteMigrator) -> None:
    # A readable SMS with a faulty field is forwarded (docs/pdu-decoder.md), and a person
    # must see what was wrong with it: the decoder's problems go with the message.
    from playhouse.migrate import migrate

    migrate(migrator.add_column("message", "problems", TextField(null=True)))


def _v7_number_probes_and_calls(database: SqliteDatabase, _migrator: SqliteMigrator) -> None:
    # A SIM whose number neither +CNUM nor USSD gives learns it by texting another SIM of
    # the site (agent.modem.probe): each attempt costs an SMS, so attempts are kept to
    # allow one a day and to show why one failed. Calls are recorded before they are
    # rejected (agent.modem.calls). Frozen SQL, as peewee made it for the models then.
    for statement in (
        'CREATE TABLE "number_probe" ("id" INTEGER NOT NULL PRIMARY KEY,'
        ' "iccid" VARCHAR(255) NOT NULL, "slot" VARCHAR(255),'
        ' "target_iccid" VARCHAR(255) NOT NULL, "target_number" VARCHAR(255) NOT NULL,'
        ' "token" VARCHAR(255) NOT NULL, "state" VARCHAR(255) NOT NULL,'
        ' "started_at" DATETIME NOT NULL, "sent_at" DATETIME, "finished_at" DATETIME,'
        ' "message_reference" INTEGER, "reason" TEXT, "found_number" VARCHAR(255))',
        'CREATE UNIQUE INDEX "number_probe_token" ON "number_probe" ("token")',
        'CREATE INDEX "number_probe_iccid_started_at" ON "number_probe" ("iccid", "started_at")',
        'CREATE TABLE "incoming_call" ("id" INTEGER NOT NULL PRIMARY KEY,'
        ' "iccid" VARCHAR(255) NOT NULL, "slot" VARCHAR(255), "caller" VARCHAR(255),'
        ' "at" DATETIME NOT NULL, "rejected_with" VARCHAR(255), "message_id" INTEGER)',
        'CREATE INDEX "incoming_call_iccid_at" ON "incoming_call" ("iccid", "at")',
    ):
        database.execute_sql(statement)


_V8_SIM_HISTORY = """
CREATE TABLE "sim_balance" ("id" INTEGER NOT NULL PRIMARY KEY, "iccid" VARCHAR(255) NOT NULL,
 "at" DATETIME NOT NULL, "slot" VARCHAR(255), "code" VARCHAR(255) NOT NULL, "amount" REAL,
 "currency" VARCHAR(255), "answer" TEXT, "error" TEXT);
CREATE INDEX "sim_balance_iccid_at" ON "sim_balance" ("iccid", "at");
CREATE TABLE "sim_keepalive" ("id" INTEGER NOT NULL PRIMARY KEY,
 "iccid" VARCHAR(255) NOT NULL, "at" DATETIME NOT NULL, "slot" VARCHAR(255),
 "action" VARCHAR(255) NOT NULL, "answer" TEXT, "error" TEXT);
CREATE INDEX "sim_keepalive_iccid_at" ON "sim_keepalive" ("iccid", "at");
CREATE TABLE "sim_stay" ("id" INTEGER NOT NULL PRIMARY KEY, "iccid" VARCHAR(255) NOT NULL,
 "slot" VARCHAR(255) NOT NULL, "since" DATETIME NOT NULL, "until" DATETIME NOT NULL);
CREATE INDEX "sim_stay_iccid_since" ON "sim_stay" ("iccid", "since");
CREATE TABLE "sim_day" ("iccid" VARCHAR(255) NOT NULL, "day" VARCHAR(255) NOT NULL,
 "sms" INTEGER NOT NULL, PRIMARY KEY ("iccid", "day"));
"""


def _v8_sim_upkeep_and_history(database: SqliteDatabase, _migrator: SqliteMigrator) -> None:
    # A SIM's balance, keep-alives, slots and SMS per day, kept by ICCID across swaps,
    # restarts and the pruning of its messages (docs/upkeep.md). The slot history starts
    # from what the sim table knows: each SIM's last slot, from its first to last sighting.
    for statement in _V8_SIM_HISTORY.split(";"):
        if statement.strip():
            database.execute_sql(statement)
    database.execute_sql(
        'INSERT INTO "sim_stay" ("iccid", "slot", "since", "until")'
        ' SELECT "iccid", "last_slot", "first_seen", "last_seen" FROM "sim"'
        ' WHERE "last_slot" IS NOT NULL'
    )


Migration = Callable[[SqliteDatabase, "SqliteMigrator"], None]

MIGRATIONS: tuple[tuple[int, str, Migration], ...] = (
    (1, "initial schema", _v1_initial),
    (2, "sim.number_updated_at, index on event.at", _v2_number_time_and_event_index),
    (
        3,
        "sim: online_since, onlinesim_id, invalid_number_reason, take-off mark",
        _v3_uplink_sim_fields,
    ),
    (4, "block_rule: rules added at run time", _v4_block_rules),
    (5, "site_fact: the uplink's state, the numbers OnlineSim accepted", _v5_site_facts),
    (6, "message.problems: faults the decoder salvaged around", _v6_message_problems),
    (7, "number_probe and incoming_call: own number by SMS, calls", _v7_number_probes_and_calls),
    (
        8,
        "sim_balance, sim_keepalive, sim_stay, sim_day: SIM upkeep and history by ICCID",
        _v8_sim_upkeep_and_history,
    ),
)

LATEST_VERSION = MIGRATIONS[-1][0]


def current_version(database: SqliteDatabase) -> int:
    """The schema version of the open database: 0 for an empty one."""
    if "schema_version" not in database.get_tables():
        return 0
    row = database.execute_sql('SELECT MAX("version") FROM "schema_version"').fetchone()
    return int(row[0] or 0)


def upgrade(database: SqliteDatabase, *, target: int = LATEST_VERSION) -> list[int]:
    """Bring the database to ``target``, one transaction per version; return those applied.

    Refuses a database newer than this code (a downgraded agent must not write into a
    schema it does not know)."""
    version = current_version(database)
    if version > LATEST_VERSION:
        raise StoreError(
            f"{database.database}: schema version {version} is newer than this agent "
            f"knows ({LATEST_VERSION}); install the newer agent or restore a backup"
        )
    if version >= target:
        return []
    from playhouse.migrate import SqliteMigrator

    migrator = SqliteMigrator(database)
    applied = []
    for number, name, function in MIGRATIONS:
        if version < number <= target:
            with database.atomic("IMMEDIATE"):
                function(database, migrator)
                database.execute_sql(
                    'INSERT INTO "schema_version" ("version", "name", "applied_at")'
                    " VALUES (?, ?, ?)",
                    (number, name, db_time(datetime.now(UTC))),
                )
            applied.append(number)
    return applied
