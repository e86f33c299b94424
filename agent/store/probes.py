"""Number probes in the store: what the writer does when a SIM texts another SIM of the
site to learn its own number (agent.modem.probe plans and sends; docs/sims.md).

Every function here runs inside the writer's transaction, like :mod:`agent.store.ingest`.
The SMS that arrives is matched by its one-time token, by the SIM it was sent to, and by
age (:data:`TOKEN_LIFETIME`): anything else that looks like a probe is someone else's
SMS and goes on as an ordinary message. A match is kept as a PDU with status "probe" and
no message, so it is never uploaded nor counted; its sender, in E.164, becomes the
probing SIM's number (source "sms-probe") unless a person set that number by hand.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import phonenumbers

from agent.modem.own_number import normalise
from agent.protocol.pdu import SmsDeliver
from agent.protocol.probe import token_in
from agent.status import NumberSource
from agent.store.models import (
    PROBE_FAILED,
    PROBE_FOUND,
    PROBE_SENDING,
    PROBE_SENT,
    Event,
    NumberProbe,
    Sim,
)

TOKEN_LIFETIME = timedelta(days=1)
"""A probe SMS that arrives later than this is taken for an ordinary SMS: no network
holds an SMS that long, so it is a replay, not our probe."""


def sender_number(sender: str, target_number: str) -> str | None:
    """The probe's sender in E.164. A sender in national form is read in the country of
    the SIM it was sent to (a national number only reaches a SIM of the same country);
    None when it cannot be made international."""
    region = ""
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(target_number)) or ""
    except phonenumbers.NumberParseException:
        region = ""
    number = normalise(sender, region)
    return number if number is not None and number.startswith("+") else None


def awaited(iccid: str, decoded: object, read_at: datetime) -> NumberProbe | None:
    """The probe an SMS received on SIM ``iccid`` answers, with ``found_number`` filled
    in (not saved); None for an ordinary SMS."""
    if not isinstance(decoded, SmsDeliver) or (decoded.concat and decoded.concat.total > 1):
        return None
    token = token_in(decoded.text)
    if token is None:
        return None
    probe = NumberProbe.get_or_none(NumberProbe.token == token)
    if probe is None or probe.target_iccid != iccid:
        return None
    if read_at - probe.started_at > TOKEN_LIFETIME:
        return None
    number = sender_number(decoded.sender, probe.target_number)
    if number is None:
        return None
    if probe.state == PROBE_FOUND and probe.found_number != number:
        return None  # found already, from another number: not our SMS
    probe.found_number = number
    return probe


def found(probe: NumberProbe, at: datetime) -> None:
    """Record what :func:`awaited` matched: the probe is done and the SIM has its number.
    The network delivering the same SMS twice changes nothing the second time."""
    if probe.state == PROBE_FOUND:
        return
    probe.state = PROBE_FOUND
    probe.finished_at = at
    probe.reason = None
    probe.save()
    number = probe.found_number
    sim = Sim.get_or_none(Sim.iccid == probe.iccid)
    if sim is None:
        Sim.create(iccid=probe.iccid, first_seen=at, last_seen=at, last_slot=probe.slot)
        sim = Sim.get_by_id(probe.iccid)
    if sim.number_source == NumberSource.MANUAL:
        text = f"number probe #{probe.id}: SMS came from {number}; the number set by hand stays"
    else:
        Sim.update(
            number=number, number_source=str(NumberSource.SMS_PROBE), number_updated_at=at
        ).where(Sim.iccid == probe.iccid).execute()
        text = f"number {number} found by SMS probe #{probe.id} to {probe.target_number}"
    Event.insert(
        at=at, level="info", kind="number_probe", text=text, slot=probe.slot, iccid=probe.iccid
    ).execute()


def start(
    *, iccid: str, slot: str | None, target_iccid: str, target_number: str, token: str, at: datetime
) -> int:
    """A probe about to be sent: recorded first, so the daily limit counts it whatever
    happens to the send, and so its SMS is recognised even if it arrives before
    :func:`sent` is written."""
    return NumberProbe.insert(
        iccid=iccid,
        slot=slot,
        target_iccid=target_iccid,
        target_number=target_number,
        token=token,
        state=PROBE_SENDING,
        started_at=at,
    ).execute()


def sent(probe_id: int, reference: int, at: datetime) -> None:
    """The modem took the SMS (``+CMGS: <mr>``): now it is awaited on the other SIM."""
    NumberProbe.update(state=PROBE_SENT, sent_at=at, message_reference=reference).where(
        (NumberProbe.id == probe_id) & (NumberProbe.state == PROBE_SENDING)
    ).execute()


def failed(probe_id: int, reason: str, at: datetime) -> bool:
    """The probe failed for ``reason``; False when it had ended already (found)."""
    changed = (
        NumberProbe.update(state=PROBE_FAILED, finished_at=at, reason=reason)
        .where((NumberProbe.id == probe_id) & (NumberProbe.state.in_((PROBE_SENDING, PROBE_SENT))))
        .execute()
    )
    if changed:
        probe = NumberProbe.get_by_id(probe_id)
        Event.insert(
            at=at,
            level="warning",
            kind="number_probe",
            text=f"number probe #{probe_id} to {probe.target_number} failed: {reason}",
            slot=probe.slot,
            iccid=probe.iccid,
        ).execute()
    return bool(changed)


def expire(now: datetime, within: float) -> list[int]:
    """Fail the probes sent more than ``within`` seconds ago that never arrived (and those
    left "sending" by an agent that stopped mid-send); their ids."""
    cutoff = now - timedelta(seconds=within)
    stale = [
        row.id
        for row in NumberProbe.select(NumberProbe.id).where(
            NumberProbe.state.in_((PROBE_SENDING, PROBE_SENT)) & (NumberProbe.started_at <= cutoff)
        )
    ]
    minutes = f"{within / 60:g} minutes" if within >= 60 else f"{within:g} s"
    return [probe_id for probe_id in stale if failed(probe_id, f"no delivery in {minutes}", now)]


def attempts_since(since: datetime) -> dict[str, int]:
    """Probes started since ``since``, per probing SIM (the daily limits read this)."""
    counts: dict[str, int] = {}
    for row in NumberProbe.select(NumberProbe.iccid).where(NumberProbe.started_at >= since):
        counts[row.iccid] = counts.get(row.iccid, 0) + 1
    return counts
