"""The link to OnlineSim: the HTTP client (``client``) and the retry policies (``policy``).

Everything the rest of the agent needs is re-exported here; the modules stay small.
"""

from agent.uplink.client import (
    NumberItem,
    OnlineSimClient,
    TakeOffItem,
    UplinkSettings,
    map_errors,
    parse_ids,
    parse_retry_after,
    raise_for_answer,
)
from agent.uplink.policy import (
    PolicyWait,
    RetryPolicy,
    account_probe,
    link_probe,
    next_attempt_at,
    next_delay,
    retrying,
    transient_backoff,
)

__all__ = [
    "NumberItem",
    "OnlineSimClient",
    "PolicyWait",
    "RetryPolicy",
    "TakeOffItem",
    "UplinkSettings",
    "account_probe",
    "link_probe",
    "map_errors",
    "next_attempt_at",
    "next_delay",
    "parse_ids",
    "parse_retry_after",
    "raise_for_answer",
    "retrying",
    "transient_backoff",
]
