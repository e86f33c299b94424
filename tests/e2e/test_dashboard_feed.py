"""What the dashboard is told by the running agent: the events on the control socket and the
snapshot agree with what the agent knows (a paused uplink, an open take-off mark)."""

from __future__ import annotations

import asyncio

from agent.control.client import ControlClient
from agent.status import UplinkCondition, UplinkStatus, from_json
from tests.e2e.site import StartSite


async def test_a_paused_uplink_reaches_the_dashboard_as_paused(start_site: StartSite) -> None:
    site = await start_site(count=1, profile="sim800")
    await site.ready_modems(1)
    await site.until(lambda: len(site.standin.state.online) == 1)
    client = ControlClient(site.config.control_socket)
    stream = client.events()
    try:
        async with asyncio.timeout(5):
            assert (await anext(stream))["event"] == "subscribed"
        await site.standin.set_faults(force="ERROR_WRONG_KEY")
        site.hub.inject(0, "+79161234567", "code 4711")
        async with asyncio.timeout(20):
            while True:
                event = await anext(stream)
                if event["event"] == "uplink":
                    shown = from_json(UplinkStatus, event["data"])
                    if shown.state is UplinkCondition.PAUSED:
                        break
        assert shown.code == "ERROR_WRONG_KEY"
        snapshot = await site.agent.snapshot()
        assert snapshot.uplink.state is UplinkCondition.PAUSED
        assert snapshot.uplink.code == "ERROR_WRONG_KEY"
    finally:
        await stream.aclose()
        await client.close()
