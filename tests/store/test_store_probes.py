"""Number probes and calls in the store: a probe SMS gives the probing SIM its number and
never becomes a message; anything else that looks like one is an ordinary SMS."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from agent.protocol.pdu import encode_deliver
from agent.protocol.probe import new_token, probe_text
from agent.status import NumberSource
from agent.store import Store, queries
from agent.store.models import Sim
from tests.store.conftest import ICCID, MOSCOW, OTHER_ICCID, T0, count_rows, ingest, pdus

PROBER = "8970120000000000001"  # the SIM whose number is unknown
PROBER_NUMBER = "+79001234567"
TARGET_NUMBER = "+79161234500"  # ICCID's number, known


async def started_probe(store: Store, token: str, *, at: object = T0) -> int:
    await store.upsert_sim(PROBER, slot="usb-1.3", seen_at=T0)
    return await store.start_probe(
        iccid=PROBER,
        slot="usb-1.3",
        target_iccid=ICCID,
        target_number=TARGET_NUMBER,
        token=token,
        at=at,  # type: ignore[arg-type]
    )


async def sim_number(store: Store, iccid: str) -> tuple[str | None, str | None]:
    sim = await store.read(lambda: Sim.get_by_id(iccid))
    return sim.number, sim.number_source


async def test_the_probe_sms_gives_the_number_and_is_no_message(
    store: Store, db_path: Path
) -> None:
    token = new_token()
    probe_id = await started_probe(store, token)
    await store.probe_sent(probe_id, 7, T0 + timedelta(seconds=1))
    found: list[str] = []
    store.on_number_found(found.append)

    result = await ingest(
        store, pdus(probe_text(token), PROBER_NUMBER)[0], read_at=T0 + timedelta(seconds=9)
    )

    assert result.number_found == PROBER
    assert result.message_id is None
    assert found == [PROBER]
    assert await sim_number(store, PROBER) == (PROBER_NUMBER, str(NumberSource.SMS_PROBE))
    assert count_rows(db_path, "message") == 0  # not in the outbox, not counted
    assert count_rows(db_path, "received_pdu", "status = 'probe'") == 1  # the raw PDU is kept
    (probe,) = await store.read(lambda: queries.number_probes(PROBER))
    assert (probe.state, probe.found_number, probe.reason) == ("found", PROBER_NUMBER, None)
    assert (await store.read(queries.last_probes))[PROBER].id == probe_id

    # The network delivering it again (another SCTS, so another PDU): still no message.
    later = datetime(2026, 3, 1, 15, 0, 30, tzinfo=MOSCOW)
    copy = encode_deliver(probe_text(token), PROBER_NUMBER, timestamp=later)[0].hex()
    again = await ingest(store, copy, index=2)
    assert not again.duplicate  # a new PDU row...
    assert again.message_id is None  # ...and no message
    assert again.number_found == PROBER
    assert count_rows(db_path, "message") == 0
    assert await sim_number(store, PROBER) == (PROBER_NUMBER, str(NumberSource.SMS_PROBE))


async def test_a_national_sender_is_read_in_the_target_sims_country(store: Store) -> None:
    token = new_token()
    await started_probe(store, token)
    await ingest(store, pdus(probe_text(token), "89001234567")[0])
    assert await sim_number(store, PROBER) == (PROBER_NUMBER, str(NumberSource.SMS_PROBE))


async def test_a_number_set_by_hand_stays(store: Store) -> None:
    token = new_token()
    await started_probe(store, token)
    await store.set_sim_number(PROBER, "+79990000000")
    result = await ingest(store, pdus(probe_text(token), PROBER_NUMBER)[0])
    assert result.message_id is None
    assert await sim_number(store, PROBER) == ("+79990000000", "manual")


async def test_stray_forged_misdirected_and_expired_tokens_are_ordinary_sms(
    store: Store, db_path: Path
) -> None:
    token = new_token()
    await started_probe(store, token)
    forged = new_token()
    texts = [
        (probe_text(forged), ICCID, T0),  # a token nobody made
        (probe_text(token), OTHER_ICCID, T0),  # ours, but on a SIM it was not sent to
        (probe_text(token), ICCID, T0 + timedelta(days=1, seconds=1)),  # too late
        (probe_text(token) + " please", ICCID, T0),  # more than the probe text
    ]
    for index, (text, iccid, read_at) in enumerate(texts):
        result = await ingest(
            store, pdus(text, PROBER_NUMBER)[0], iccid=iccid, index=index, read_at=read_at
        )
        assert result.message_id is not None, text
        assert result.number_found is None
    assert count_rows(db_path, "message", "state = 'pending'") == 4
    assert await sim_number(store, PROBER) == (None, None)


async def test_failures_keep_their_reason_and_unanswered_probes_expire(store: Store) -> None:
    refused = await started_probe(store, new_token())
    assert await store.probe_failed(refused, "+CMS ERROR: 21 short message transfer rejected", T0)
    lost = await started_probe(store, new_token())
    await store.probe_sent(lost, 3, T0)
    assert await store.expire_probes(T0 + timedelta(seconds=599), 600) == []
    assert await store.expire_probes(T0 + timedelta(seconds=601), 600) == [lost]
    reasons = {p.id: (p.state, p.reason) for p in await store.read(queries.number_probes)}
    assert reasons == {
        refused: ("failed", "+CMS ERROR: 21 short message transfer rejected"),
        lost: ("failed", "no delivery in 10 minutes"),
    }
    assert await store.probe_attempts_since(T0 - timedelta(hours=1)) == {PROBER: 2}
    assert await store.probe_attempts_since(T0 + timedelta(hours=1)) == {}
    # A probe that failed cannot fail again (and is not counted twice in the log).
    assert not await store.probe_failed(refused, "again", T0)


async def test_calls_are_kept_and_forwarded_only_when_asked(store: Store, db_path: Path) -> None:
    quiet, _ = await store.record_call(
        iccid=ICCID,
        slot="usb-1.2",
        caller="+79031234567",
        at=T0,
        rejected_with="AT+CHUP",
        forward_template=None,
    )
    ready: list[str | None] = []
    store.on_message_ready(ready.append)
    loud, message_id = await store.record_call(
        iccid=ICCID,
        slot="usb-1.2",
        caller="+79031234568",
        at=T0,
        rejected_with="ATH",
        forward_template="Call from {caller} at {time}",
    )
    withheld, none = await store.record_call(
        iccid=ICCID,
        slot="usb-1.2",
        caller=None,
        at=T0,
        rejected_with="ATH",
        forward_template="Call from {caller}",
    )
    assert message_id is not None
    assert none is None
    assert ready == [ICCID]  # the SIM whose queue changed
    (due,) = await store.due_messages(T0 + timedelta(seconds=1), 10)
    assert (due.sender, due.text) == (
        "+79031234568",
        "Call from +79031234568 at 2026-03-01T12:00:00+00:00",
    )
    calls = await store.read(lambda: queries.incoming_calls(ICCID))
    assert [(c.id, c.caller, c.rejected_with, c.message_id) for c in calls] == [
        (withheld, None, "ATH", None),
        (loud, "+79031234568", "ATH", message_id),
        (quiet, "+79031234567", "AT+CHUP", None),
    ]
    assert await store.read(queries.calls_per_sim) == {ICCID: 3}
    assert await store.read(lambda: queries.calls_per_sim(T0 + timedelta(seconds=1))) == {}
    assert count_rows(db_path, "incoming_call") == 3


async def test_a_probe_that_arrives_after_its_timeout_still_gives_the_number(
    store: Store,
) -> None:
    token = new_token()
    probe_id = await started_probe(store, token)
    await store.probe_sent(probe_id, 9, T0)
    assert await store.expire_probes(T0 + timedelta(hours=1), 600) == [probe_id]
    late = await ingest(
        store, pdus(probe_text(token), PROBER_NUMBER)[0], read_at=T0 + timedelta(hours=2)
    )
    assert late.number_found == PROBER
    assert late.message_id is None
    (probe,) = await store.read(queries.number_probes)
    assert (probe.state, probe.reason, probe.found_number) == ("found", None, PROBER_NUMBER)
