"""What every screen draws from: the site's state as the app last heard it."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.status import SiteSnapshot


@dataclass(frozen=True)
class SiteView:
    """The latest snapshot, whether it is live, why not, and the time to measure ages by."""

    snapshot: SiteSnapshot = field(default_factory=lambda: SiteSnapshot(taken_at=0.0))
    live: bool = False
    problem: str | None = "connecting to the agent…"
    now: float = 0.0
