"""The ``outage`` scenario with OnlineSim unreachable for 10 minutes: the link's probe is
at its 300 s cap by then, and a fresh SMS must still go up under 1 s after the link is
back. Not in the default ``make chaos`` run (it takes 11 minutes): ``python -m bench.chaos
outage10``."""

from __future__ import annotations

from pathlib import Path

from bench.chaos import Verdict
from bench.chaos.outage import outage

NAME = "outage10"
DOWN_FOR = 600.0
BUDGET = DOWN_FOR + 90.0


async def run(folder: Path) -> Verdict:
    return await outage(folder, NAME, DOWN_FOR)
