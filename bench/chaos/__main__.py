"""``python -m bench.chaos [SCENARIO ...]``: run the chaos scenarios, one verdict line
each, then ``N passed, N failed`` (and ``, N skipped`` when a scenario could not run here);
exit 1 when any failed. Without names, every scenario of ``SCENARIOS``; the long ones of
``LONG`` run only when named.

Each scenario runs in a fresh temporary folder with its own three processes, one after
another (they would only steal each other's CPU), and is cut off at its ``BUDGET`` plus a
margin: a scenario that overruns fails with "timed out" rather than hang the run.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

from bench.chaos import FAIL, PASS, SKIP, Verdict
from bench.chaos.world import WorldError

# module under bench/chaos/ -> what it shows; run in this order.
SCENARIOS: dict[str, str] = {
    "crash": "SIGKILL at random moments during heavy receive and upload",
    "uplink": "OnlineSim down, 5xx, resets, slow; then back",
    "storm": "hangs, reboots, unplugs, SIM swaps, storage full, garbage on many modems",
    "diskfull": "the data folder full: SMS stay on the SIM until space returns",
    "fuzz": "random and mutated PDUs and AT output, malformed webhook requests",
    "outage": "OnlineSim unreachable 150 s with a backlog: a fresh SMS < 1 s after it is back",
    "storefull": "the store full, then read-only, with a backlog: <= 2 calls per SMS",
    "clockjump": "the wall clock an hour back, then forward: nothing waits for it",
    "slowserver": "OnlineSim answers after the timeout: duplicates <= timeouts",
    "single": "a second agent on the same data folder refused; the first unharmed",
    "control_flood": "control clients that send 20,000 and 60,000 snapshots and never read",
    "log_flood": "2,000 malformed webhook requests from one source, counted in log lines",
    "webhook_hog": "500 held and 50 slowloris connections from one source; OnlineSim calls",
    "blockrule": "a catastrophic block rule: other SMS, control and /healthz within 1 s",
    "callflood": "a SIM called again and again for a minute: all rejected, its SMS within 1 s",
    "ussdwait": "every modem waiting for a USSD answer that never comes: its SMS within 1 s",
}
# Run only when named (``python -m bench.chaos outage10``): they take many minutes.
LONG: dict[str, str] = {
    "outage10": "OnlineSim unreachable 10 minutes: a fresh SMS < 1 s after it is back",
}
MARGIN = 60.0  # seconds beyond a scenario's budget before it is cut off


async def _one(name: str, module: ModuleType) -> Verdict:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"chaos-{name}-") as folder:
        try:
            async with asyncio.timeout(module.BUDGET + MARGIN):
                verdict: Verdict = await module.run(Path(folder))
                return verdict
        except TimeoutError:
            why = f"timed out after {module.BUDGET + MARGIN:.0f} s"
        except WorldError as exc:
            why = f"the emulated world failed: {exc}"
    return Verdict(name, FAIL, why, time.monotonic() - started)


def main(argv: list[str]) -> int:
    known = SCENARIOS | LONG
    chosen = argv or list(SCENARIOS)
    unknown = [name for name in chosen if name not in known]
    if unknown:
        print(
            f"chaos: unknown scenario(s) {', '.join(unknown)}; known: {', '.join(known)}",
            file=sys.stderr,
        )
        return 2
    started = time.monotonic()
    verdicts = []
    for name in chosen:
        print(f"-- {name}: {known[name]}", flush=True)
        verdict = asyncio.run(_one(name, importlib.import_module(f"bench.chaos.{name}")))
        print(verdict.line(), flush=True)
        verdicts.append(verdict)
    counts = {
        outcome: sum(v.outcome == outcome for v in verdicts) for outcome in (PASS, FAIL, SKIP)
    }
    summary = f"{counts[PASS]} passed, {counts[FAIL]} failed"
    if counts[SKIP]:
        summary += f", {counts[SKIP]} skipped"
    print(f"{summary} in {time.monotonic() - started:.0f} s", flush=True)
    return 1 if counts[FAIL] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
