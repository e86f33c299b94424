"""Keep prepaid SIMs alive: a chargeable action before the operator's deadline.

Many prepaid SIMs are cut off after N days without a chargeable event (a call, an SMS, a
paid USSD). A policy per network (``[sims.keepalive."MCCMNC"]``: ``days`` and the action,
a ``ussd`` code to dial or an SMS of ``sms_text`` to ``sms_to``) makes the agent do that
action before the deadline, record it and show each SIM's "active until". Nothing is
done for a network without a policy: the default is off, because an action may cost
money.

The clock starts at the last keep-alive the agent did, or, before the first one, when the
agent first saw the SIM (it cannot know the SIM's earlier life, so it acts early rather
than late). The action runs ``lead`` before the deadline: a day, or a quarter of the
period for periods under four days, so that a failed attempt is retried in time (the
worker asks again at each upkeep check until one succeeds).

The SMS action goes out through agent.modem.sending, the same ``AT+CMGS`` as the
own-number probe; an SMS to any number is a chargeable event on prepaid SIMs. The
configuration, and docs/upkeep.md, say what a policy may hold.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY = 86400.0


@dataclass(frozen=True)
class KeepalivePolicy:
    """``days`` between chargeable events, and exactly one action: the USSD code
    ``ussd``, or an SMS of ``sms_text`` to ``sms_to`` (E.164). The configuration checks
    that exactly one is given (agent.config)."""

    days: float
    ussd: str | None = None
    sms_to: str | None = None
    sms_text: str = ""

    def __post_init__(self) -> None:
        if (self.ussd is None) == (self.sms_to is None):
            raise ValueError("a keep-alive policy needs exactly one action: ussd or sms_to")

    @property
    def action(self) -> str:
        """The action as it is recorded and logged: "ussd CODE" or "sms NUMBER"."""
        return f"ussd {self.ussd}" if self.ussd is not None else f"sms {self.sms_to}"

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
