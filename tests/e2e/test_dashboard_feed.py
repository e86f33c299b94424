"""What the dashboard is told by the running agent: the events on the control socket and the
snapshot agree with what the agent knows (a paused uplink, an open take-off mark), and
every event is of the kind and shape the control schema declares."""

from __future__ import annotations

import asyncio

from agent.control.client import ControlClient
from agent.control.protocol import EVENT_DATA, Event, EventKind
from agent.status import UplinkCondition
from tests.e2e.site import StartSite


async def test_a_paused_uplink_reaches_the_dashboard_as_paused(start_site: StartSite) -> None:
    site = await start_site(count=1, profile="sim800")
    await site.ready_modems(1)
    await site.until(lambda: len(site.standin.state.online) == 1)
    seen: list[Event] = []
    async with ControlClient(site.config.control_socket) as client, client.subscribe() as events:
        await site.standin.set_faults(force="ERROR_WRONG_KEY")
        site.hub.inject(0, "+79161234567", "code 4711")
        async with asyncio.timeout(20):
            async for event in events:
                seen.append(event)
                # Both, in either order: the SIM's balance read by USSD may make the agent
                # list its numbers again, and that call may be the one that pauses.
                if Event(EventKind.MESSAGE) in seen and any(
                    e.kind is EventKind.UPLINK and e.data.state is UplinkCondition.PAUSED
                    for e in seen
                ):
                    break
    shown = [e.data for e in seen if e.kind is EventKind.UPLINK][-1]
    assert shown.state is UplinkCondition.PAUSED
    assert shown.code == "ERROR_WRONG_KEY"
    # The SMS was said as the schema says: a "message" event, without data.
    assert Event(EventKind.MESSAGE) in seen
    for event in seen:
        shape = EVENT_DATA[event.kind]
        assert (event.data is None) if shape is None else isinstance(event.data, shape)
    snapshot = await site.agent.snapshot()
    assert snapshot.uplink.state is UplinkCondition.PAUSED
    assert snapshot.uplink.code == "ERROR_WRONG_KEY"
