"""The crash test, small (issue 6): the real agent process killed with SIGKILL at random
moments while SMS arrive, started again each time; nothing lost, duplicates at most one
per kill. The full run (16 modems, 1,000 SMS, 14 kills) is ``make chaos``'s crash
scenario; both are :func:`bench.chaos.crash.crash` over the same three processes."""

from __future__ import annotations

from pathlib import Path

from bench.chaos.crash import crash
from bench.chaos.world import World

MODEMS, SMS, KILLS = 4, 100, 3


async def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    async with World(tmp_path, modems=MODEMS, profile="mixed", seed=6) as world:
        outcome = await crash(
            world, sms=SMS, rate=25.0, kills=KILLS, kill_after=(0.2, 1.5), drain_seconds=60.0
        )
        assert world.agent.kills == KILLS
        assert world.agent.starts == KILLS + 1
        assert world.agent.alive, list(world.agent.tail)[-5:]
    tally = outcome.tally
    assert tally.injected == SMS
    assert not tally.lost, f"{tally.figures()}; missing: {tally.missing()}"
    assert tally.duplicates <= KILLS, tally.figures()
