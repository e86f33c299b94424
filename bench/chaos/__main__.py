"""``python -m bench.chaos [SCENARIO ...]``: run the chaos scenarios, one verdict line
each, then ``N passed, N failed`` (and ``, N skipped`` when a scenario could not run here);
exit 1 when any failed.

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
    "blockrule": "a catastrophic block rule: other SMS, control and /healthz within 1 s",
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
    chosen = argv or list(SCENARIOS)
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        print(
            f"chaos: unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}",
            file=sys.stderr,
        )
        return 2
    started = time.monotonic()
    verdicts = []
    for name in chosen:
        print(f"-- {name}: {SCENARIOS[name]}", flush=True)
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
