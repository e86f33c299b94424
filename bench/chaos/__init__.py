"""Chaos runs: the real agent (``simedge run``) against the emulated world while things
go wrong, each scenario ending in one verdict line.

``make chaos`` runs ``python -m bench.chaos`` (every scenario of ``SCENARIOS`` in
:mod:`bench.chaos.__main__`, or those named). Each scenario module exposes
``async run(folder: Path) -> Verdict`` and ``BUDGET`` (its bound in seconds); the shared
world (three processes: modem hub, OnlineSim stand-in, agent) is :mod:`bench.chaos.world`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@dataclass(frozen=True)
class Verdict:
    """One scenario's outcome: ``figures`` for a pass, the reason for a fail or skip."""

    scenario: str
    outcome: str
    detail: str
    seconds: float = 0.0

    def line(self) -> str:
        return f"{self.outcome} {self.scenario}: {self.detail} ({self.seconds:.0f} s)"


class Judge:
    """The verdicts of one scenario, timed from the moment the judge was made."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self.started = time.monotonic()

    def __call__(self, outcome: str, detail: str) -> Verdict:
        return Verdict(self.scenario, outcome, detail, time.monotonic() - self.started)
