"""Fixtures and hooks every test folder may use."""

import asyncio

import pytest

from agent.cli import UVLOOP_INSTALLED, new_event_loop

# A whole site (emulated modems, the real agent, the OnlineSim stand-in) in the test's loop.
from tests.e2e.site import start_site

__all__ = ["start_site"]

# The agent runs on uvloop where it is installed, else (32-bit ARM) on asyncio's loop
# (agent.cli.new_event_loop). Every async test runs on the agent's loop; where that is
# uvloop, the whole-site tests run on asyncio's too.
BOTH_LOOPS_IN = "tests/e2e/test_site.py"


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item):
    if UVLOOP_INSTALLED and item.nodeid.startswith(BOTH_LOOPS_IN):
        return {"agent-loop": new_event_loop, "asyncio-loop": asyncio.new_event_loop}
    return {"agent-loop": new_event_loop}
