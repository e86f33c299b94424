"""Writes of a SIM's upkeep and history, keyed by ICCID (schema version 8).

Each function runs inside a job of the store's single writer. Every table here is bounded
per SIM (``HISTORY_PER_SIM`` rows, the oldest go first), except ``sim_day``, which holds
one row per SIM and day at most.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime

from agent.status import BalanceAnswer, KeepaliveAction
from agent.store.models import (
    HISTORY_PER_SIM,
    BaseModel,
    Message,
    SimBalance,
    SimDay,
    SimKeepalive,
    SimStay,
)


def _trim(model: type[BaseModel], iccid: str, order: object) -> None:
    keep = model.select(model.id).where(model.iccid == iccid).order_by(order).limit(HISTORY_PER_SIM)
    model.delete().where((model.iccid == iccid) & model.id.not_in(keep)).execute()


def record_balance(row: BalanceAnswer) -> None:
    SimBalance.insert(**asdict(row)).execute()
    _trim(SimBalance, row.iccid, SimBalance.at.desc())


def record_keepalive(row: KeepaliveAction) -> None:
    SimKeepalive.insert(**asdict(row)).execute()
    _trim(SimKeepalive, row.iccid, SimKeepalive.at.desc())


def record_stay(iccid: str, slot: str, seen: datetime) -> None:
    """The SIM is in ``slot`` at ``seen``: its last stay grows, or a new one starts."""
    last = SimStay.select().where(SimStay.iccid == iccid).order_by(SimStay.since.desc()).first()
    if last is not None and last.slot == slot:
        if seen > last.until:
            SimStay.update(until=seen).where(SimStay.id == last.id).execute()
        return
    SimStay.insert(iccid=iccid, slot=slot, since=seen, until=seen).execute()
    _trim(SimStay, iccid, SimStay.since.desc())


def fold_into_days(message_ids: Sequence[int]) -> None:
    """Count messages about to be pruned into ``sim_day``, so a SIM's totals stay."""
    rows = Message.select(Message.sim, Message.received_at).where(Message.id.in_(message_ids))
    days = Counter((row.sim_id, row.received_at.date().isoformat()) for row in rows)
    for (iccid, day), count in days.items():
        SimDay.insert(iccid=iccid, day=day, sms=count).on_conflict(
            conflict_target=[SimDay.iccid, SimDay.day],
            update={SimDay.sms: SimDay.sms + count},
        ).execute()
