"""Fixtures of the dashboard's tests: a fixed clock and zone, and a served stand-in site."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.tui.site import NOW, SiteStandIn, demo_messages, demo_site, start_site


@pytest.fixture(autouse=True)
def utc_zone() -> Iterator[None]:
    """Times on screen are local: pin the zone so screens are the same everywhere."""
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if previous is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = previous
    time.tzset()


@pytest.fixture
def socket_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "control.sock"


@pytest.fixture
def stand_in() -> SiteStandIn:
    return SiteStandIn(demo_site(NOW), demo_messages(NOW))


@pytest.fixture
async def site(socket_path: Path, stand_in: SiteStandIn) -> AsyncIterator[SiteStandIn]:
    server = await start_site(socket_path, stand_in)
    yield stand_in
    await server.stop()
