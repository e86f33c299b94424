"""Benchmarks: speed and memory goals live here, never in timed tests.

``make bench`` runs ``python -m bench``: every module named in ``bench.__main__.BENCHES``
exposes ``run() -> list[Result]``; the results are written to ``bench/RESULTS.md`` as one
table, with the machine described and the command that gives each row.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """One measured figure: what, how much, in what unit, and how to reproduce it."""

    name: str
    value: float | str
    unit: str
    command: str
    note: str = ""

    def cell(self) -> str:
        if isinstance(self.value, float):
            return f"{self.value:,.3g}" if self.value < 100 else f"{self.value:,.0f}"
        return str(self.value)
