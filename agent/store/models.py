"""The store's tables, as peewee models (the schema of the newest version).

The models are not bound to a database here: :mod:`agent.store.db` binds them to the
database it opens, so tests bind them to a fresh file. The schema of a database on disk is
made by :mod:`agent.store.migrations` (version 1 is frozen SQL, later versions are
functions); a test checks that the migrated schema equals what these models describe.

Times are stored as UTC (``UtcDateTimeField``) and come back aware; an SMS's service
centre timestamp keeps its own zone as ``scts_offset_min`` beside it, because the zone is
what the sender's network said and UTC alone would lose it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from peewee import (
    SQL,
    BigIntegerField,
    BlobField,
    BooleanField,
    CharField,
    CompositeKey,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from agent.errors import StoreError

# Message.state values. "assembling" holds the parts of a multipart SMS until the last one
# arrives or the assembly timeout delivers what came; it is never due for upload.
ASSEMBLING = "assembling"
PENDING = "pending"
SENT = "sent"
DEAD = "dead"
BLOCKED = "blocked"

# DeliveryAttempt.outcome values.
ATTEMPT_SENT = "sent"
ATTEMPT_RETRY = "retry"
ATTEMPT_DEAD = "dead"

# ReceivedPdu.status values: decoded into a message part, salvaged (decoded around faulty
# fields, docs/pdu-decoder.md; ``error`` lists them), undecodable (kept with the decoder's
# error), a valid PDU that is not an SMS-DELIVER (nothing to forward), or a number probe.
PDU_OK = "ok"
PDU_SALVAGED = "salvaged"
PDU_UNDECODABLE = "undecodable"
PDU_IGNORED = "ignored"
PDU_PROBE = "probe"  # a number probe's SMS (agent.store.probes): kept, never a message


def to_utc(value: datetime | float) -> datetime:
    """An aware UTC datetime from an aware datetime or seconds since the epoch.

    Naive datetimes are refused: the Pi has no RTC and we must never guess a zone."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if value.tzinfo is None:
        raise StoreError(f"naive datetime {value!r}: give an aware datetime or epoch seconds")
    return value.astimezone(UTC)


def db_time(value: datetime | float) -> str:
    """A time as the store writes it: naive UTC text, "2026-03-01 12:00:00.250000"; it
    sorts and compares correctly in SQL. Formatted here rather than by sqlite3's default
    datetime adapter, which Python 3.12 deprecates."""
    return str(to_utc(value).replace(tzinfo=None))


class UtcDateTimeField(DateTimeField):
    """Stored as naive UTC text (see ``db_time``); read back aware."""

    def db_value(self, value: datetime | float | None) -> str | None:
        return None if value is None else db_time(value)

    def python_value(self, value: object) -> datetime | None:
        parsed = super().python_value(value)
        if isinstance(parsed, datetime):
            return parsed.replace(tzinfo=UTC)
        return parsed


class BaseModel(Model):
    class Meta:
        legacy_table_names = False


class SchemaVersion(BaseModel):
    """One row per applied migration; the schema's version is the highest."""

    version = IntegerField(primary_key=True)
    name = TextField()
    applied_at = UtcDateTimeField()


class Modem(BaseModel):
    """A modem seen by the agent, keyed by its slot (the stable USB path): some pools give
    every port the same IMEI, or none, so the IMEI cannot be the key."""

    slot = CharField(unique=True)
    imei = CharField(null=True)
    model = CharField(null=True)
    manufacturer = CharField(null=True)
    firmware = CharField(null=True)
    port = CharField(null=True)
    first_seen = UtcDateTimeField()
    last_seen = UtcDateTimeField()


class Sim(BaseModel):
    """A SIM card, keyed by ICCID: its number is remembered across slots and restarts."""

    iccid = CharField(primary_key=True)
    imsi = CharField(null=True)
    number = CharField(null=True)
    # Where the number came from ("manual", "cnum", "ussd", ...): a number set by hand is
    # never overwritten by one the agent discovered.
    number_source = CharField(null=True)
    number_updated_at = UtcDateTimeField(null=True)  # added in schema version 2
    operator = CharField(null=True)
    last_slot = CharField(null=True)
    last_imei = CharField(null=True)
    first_seen = UtcDateTimeField()
    last_seen = UtcDateTimeField()
    # Added in schema version 3, for the uplink (agent.uplink.numbers and .takeoff):
    # when the number came online (sendNumbersOnline's date_start, stable across restarts),
    online_since = UtcDateTimeField(null=True)
    # the id OnlineSim gave the number (None while it is not in OnlineSim's list),
    onlinesim_id = IntegerField(null=True)
    # why the number is not sent (not even a possible number) or is sent with a warning,
    invalid_number_reason = TextField(null=True)
    # and the take-off mark: roubles earned when takeOffNumbers listed the number, when,
    # and when a new SIM took the slot (the swap was done).
    takeoff_sum = FloatField(null=True)
    takeoff_at = UtcDateTimeField(null=True)
    takeoff_done_at = UtcDateTimeField(null=True)


class Message(BaseModel):
    """An SMS as it will be forwarded: one row per message, whatever its part count.

    ``seq`` is the receipt order, assigned when the message becomes deliverable (an
    increasing counter, independent of the Pi's clock, which may jump at NTP sync); the
    outbox sends each SIM's messages in this order.
    """

    # No plain index on the SIM: SIM rows are never deleted, and every query by SIM also
    # filters on a state that has its own partial index (see below).
    sim = ForeignKeyField(
        Sim,
        column_name="iccid",
        object_id_name="sim_id",
        backref="messages",
        on_delete="CASCADE",
        index=False,
    )
    slot = CharField(null=True)
    sender = CharField()
    sender_type = CharField()
    text = TextField(default="")
    encoding = CharField()
    scts = UtcDateTimeField()
    scts_offset_min = IntegerField()
    received_at = UtcDateTimeField()  # wall clock when its first part was read
    ready_at = UtcDateTimeField(null=True)  # when it became deliverable
    seq = BigIntegerField(null=True, unique=True)
    concat_ref = IntegerField(null=True)
    part_count = IntegerField(default=1)
    complete = BooleanField(default=False)
    missing_parts = CharField(default="")  # "2,4" when delivered incomplete
    blocked_rule = CharField(null=True)
    state = CharField()
    attempts = IntegerField(default=0)
    next_attempt_at = UtcDateTimeField(null=True)
    last_error = TextField(null=True)
    sent_at = UtcDateTimeField(null=True)
    # Added in schema version 6: what the decoder salvaged around in this message's PDUs
    # (one line per fault, "field at octet N: what"), None when they were sound.
    problems = TextField(null=True)


def literal(state: str) -> SQL:
    """A state constant written into the SQL text, not bound as a parameter: SQLite uses a
    partial index only when it can see at prepare time that the query implies its WHERE."""
    return SQL(f"'{state}'")


# Partial indexes: almost every message is "sent" and stays so until pruned, so indexing
# only the few rows each query looks for keeps the indexes small on the SD card and cheap
# to update (about a third of the file with full indexes, in the store benchmark).
Message.add_index(  # the outbox: each SIM's pending messages in receipt order
    Message.index(Message.sim, Message.seq, name="message_pending").where(
        Message.state == literal(PENDING)
    )
)
Message.add_index(  # multipart assembly: the message a part belongs to
    Message.index(
        Message.sim,
        Message.sender,
        Message.concat_ref,
        Message.part_count,
        name="message_assembling",
    ).where(Message.state == literal(ASSEMBLING))
)
Message.add_index(  # counts by state for status, blocked messages for retention
    Message.index(Message.state, name="message_open").where(Message.state != literal(SENT))
)
Message.add_index(  # retention of sent messages, and the time of the last success
    Message.index(Message.sent_at, name="message_sent").where(Message.state == literal(SENT))
)


class ReceivedPdu(BaseModel):
    """A PDU exactly as read off a modem, kept whole even when it does not decode.

    (sim, digest) is unique: reading the same stored SMS again after a crash between
    commit and delete finds this row and creates nothing."""

    sim = ForeignKeyField(
        Sim,
        column_name="iccid",
        object_id_name="sim_id",
        backref="pdus",
        on_delete="CASCADE",
        index=False,
    )
    imei = CharField(null=True)
    slot = CharField(null=True)
    storage = CharField()
    storage_index = IntegerField(null=True)
    pdu_hex = TextField()
    digest = BlobField()  # sha256 of pdu_hex: 32 bytes, half of its hex text
    read_at = UtcDateTimeField()
    status = CharField()
    error = TextField(null=True)
    message = ForeignKeyField(
        Message, null=True, backref="pdus", on_delete="CASCADE", column_name="message_id"
    )

    class Meta:
        indexes = ((("sim", "digest"), True),)


class Part(BaseModel):
    """One part of a multipart message, with what the assembler needs to join it to the
    others. A one-part SMS has no row here: its message and its PDU hold all of it."""

    message = ForeignKeyField(Message, backref="parts", on_delete="CASCADE", index=False)
    seq = IntegerField()
    text = TextField()
    encoding = CharField()
    data = BlobField()
    scts = UtcDateTimeField()
    scts_offset_min = IntegerField()
    received_at = UtcDateTimeField()
    pdu = ForeignKeyField(ReceivedPdu, on_delete="CASCADE")

    class Meta:
        indexes = ((("message", "seq"), True),)


class DeliveryAttempt(BaseModel):
    """One try to upload a message: the dashboard shows the history of each."""

    message = ForeignKeyField(Message, backref="attempts_log", on_delete="CASCADE")
    at = UtcDateTimeField()
    outcome = CharField()  # "sent" | "retry" | "dead"
    http_status = IntegerField(null=True)
    body = TextField(null=True)
    error = TextField(null=True)


DeliveryAttempt.add_index(  # the last failure, for status: failures are few, so is this
    DeliveryAttempt.index(DeliveryAttempt.id, name="delivery_attempt_failed").where(
        DeliveryAttempt.outcome != literal(ATTEMPT_SENT)
    )
)


class Event(BaseModel):
    """The site's log as the dashboard shows it. Plain text keys (no foreign keys) so an
    event outlives the rows it mentions."""

    at = UtcDateTimeField(index=True)  # the index was added in schema version 2
    level = CharField()
    kind = CharField()
    text = TextField()
    slot = CharField(null=True)
    iccid = CharField(null=True)


class BlockRuleRow(BaseModel):
    """A block rule added at run time (from the dashboard); configured rules live in the
    configuration file. Loaded at start after the configured ones."""

    name = CharField(unique=True)
    sender = TextField(null=True)
    text = TextField(null=True)
    added_at = UtcDateTimeField()

    class Meta:
        table_name = "block_rule"


class SiteFact(BaseModel):
    """A fact the agent knows in memory, kept for the readers that cannot ask it
    (``simedge status``, the dashboard while the agent is down): the uplink's state and
    last error, the numbers OnlineSim last accepted. ``value`` is JSON of an
    :mod:`agent.status` shape; see :mod:`agent.store.facts`."""

    name = CharField(primary_key=True)
    value = TextField()
    updated_at = UtcDateTimeField()

    class Meta:
        table_name = "site_fact"


# NumberProbe.state values (agent.modem.probe): the SMS is being sent, was sent and is
# awaited, arrived (the number is known), or failed (``reason`` says why).
PROBE_SENDING = "sending"
PROBE_SENT = "sent"
PROBE_FOUND = "found"
PROBE_FAILED = "failed"


class NumberProbe(BaseModel):
    """One attempt to learn a SIM's own number by SMS: the SIM (``iccid``) sends a one-time
    ``token`` to another SIM of the site whose number is known (``target_iccid``,
    ``target_number``); when it arrives there its sender is the number. Added in schema
    version 7; kept for the daily limit and for the person asking why a number is unknown.
    """

    iccid = CharField()
    slot = CharField(null=True)
    target_iccid = CharField()
    target_number = CharField()
    token = CharField(unique=True)
    state = CharField()
    started_at = UtcDateTimeField()
    sent_at = UtcDateTimeField(null=True)
    finished_at = UtcDateTimeField(null=True)
    message_reference = IntegerField(null=True)  # TP-MR from +CMGS
    reason = TextField(null=True)  # why it failed: +CMS ERROR code and meaning, timeout...
    found_number = CharField(null=True)

    class Meta:
        table_name = "number_probe"
        indexes = ((("iccid", "started_at"), False),)


class IncomingCall(BaseModel):
    """A call that rang on a SIM, recorded and rejected (agent.modem.calls). ``caller`` is
    None when the network withheld it. ``message_id`` is the message that forwarded the
    caller ID to OnlineSim (``[calls] forward``). Added in schema version 7."""

    iccid = CharField()
    slot = CharField(null=True)
    caller = CharField(null=True)
    at = UtcDateTimeField()
    rejected_with = CharField(null=True)  # the command that ended it; None: could not
    message_id = IntegerField(null=True)

    class Meta:
        table_name = "incoming_call"
        indexes = ((("iccid", "at"), False),)


class SimBalance(BaseModel):
    """One balance question to a SIM (schema version 8): the amount read, or why none
    was (the answer's text is kept either way, for a person to read). At most
    ``HISTORY_PER_SIM`` rows per SIM; the newest amount is the SIM's balance."""

    iccid = CharField()
    at = UtcDateTimeField()
    slot = CharField(null=True)
    code = CharField()
    amount = FloatField(null=True)
    currency = CharField(null=True)
    answer = TextField(null=True)
    error = TextField(null=True)

    class Meta:
        table_name = "sim_balance"
        indexes = ((("iccid", "at"), False),)


class SimKeepalive(BaseModel):
    """One keep-alive action done for a SIM (schema version 8); ``error`` None: it worked.
    At most ``HISTORY_PER_SIM`` rows per SIM."""

    iccid = CharField()
    at = UtcDateTimeField()
    slot = CharField(null=True)
    action = CharField()
    answer = TextField(null=True)
    error = TextField(null=True)

    class Meta:
        table_name = "sim_keepalive"
        indexes = ((("iccid", "at"), False),)


class SimStay(BaseModel):
    """A SIM in one slot from ``since`` to ``until`` (schema version 8): a new row when it
    is seen in another slot than its last, so swaps stay visible. At most
    ``HISTORY_PER_SIM`` rows per SIM."""

    iccid = CharField()
    slot = CharField()
    since = UtcDateTimeField()
    until = UtcDateTimeField()

    class Meta:
        table_name = "sim_stay"
        indexes = ((("iccid", "since"), False),)


class SimDay(BaseModel):
    """SMS a SIM received on one day (UTC) that were pruned from ``message`` (schema
    version 8): a SIM's history outlives the retention of its messages."""

    iccid = CharField()
    day = CharField()  # YYYY-MM-DD, UTC
    sms = IntegerField()

    class Meta:
        table_name = "sim_day"
        primary_key = CompositeKey("iccid", "day")


HISTORY_PER_SIM = 400  # balance answers, keep-alives and stays kept per SIM (a year daily)

MODELS: tuple[type[BaseModel], ...] = (
    SchemaVersion,
    Modem,
    Sim,
    Message,
    ReceivedPdu,
    Part,
    DeliveryAttempt,
    Event,
    BlockRuleRow,
    SiteFact,
    NumberProbe,
    IncomingCall,
    SimBalance,
    SimKeepalive,
    SimStay,
    SimDay,
)
