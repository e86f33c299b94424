"""Keep prepaid SIMs alive: a chargeable action before the operator's deadline.

Many prepaid SIMs are cut off after N days without a chargeable event (a call, an SMS, a
paid USSD). A policy per network (``[sims.keepalive."MCCMNC"]``: ``days`` and the ``ussd``
code to dial) makes the agent do that action before the deadline, record it and show
each SIM's "active until". Nothing is done for a network without a policy: the default
is off, because an action may cost money.

The clock starts at the last keep-alive the agent did, or, before the first one, when the
agent first saw the SIM (it cannot know the SIM's earlier life, so it acts early rather
than late). The action runs ``lead`` before the deadline: a day, or a quarter of the
period for periods under four days, so that a failed attempt is retried in time (the
worker asks again at each upkeep check until one succeeds).

Only the USSD action exists in this version: sending an SMS needs ``AT+CMGS``, which
the own-number probe brings (issue 17).
"""

from __future__ import annotations

from dataclasses import dataclass

DAY = 86400.0


@dataclass(frozen=True)
class KeepalivePolicy:
    days: float
    ussd: str

    @property
    def period(self) -> float:
        return self.days * DAY

    @property
    def lead(self) -> float:
        """How long before the deadline the action runs."""
        return min(DAY, self.period / 4)


def active_until(policy: KeepalivePolicy, last_action_at: float | None, first_seen: float) -> float:
    """The deadline: ``days`` after the last keep-alive (or after the SIM was first seen)."""
    start = last_action_at if last_action_at is not None else first_seen
    return start + policy.period


def due_at(policy: KeepalivePolicy, last_action_at: float | None, first_seen: float) -> float:
    """When the next keep-alive runs (epoch seconds)."""
    return active_until(policy, last_action_at, first_seen) - policy.lead
