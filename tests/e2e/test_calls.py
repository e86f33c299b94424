"""Incoming calls end to end: rejected and recorded by the real agent; with [calls]
forward on, the caller ID reaches OnlineSim as a message from the caller."""

from __future__ import annotations

from agent.store import queries
from tests.e2e.site import StartSite


async def test_a_forwarded_call_reaches_onlinesim_as_a_message_from_the_caller(
    start_site: StartSite,
) -> None:
    site = await start_site(
        count=2,
        profile="mixed",
        calls={"forward": True, "forward_text": "Call from {caller}"},
    )
    await site.ready_modems(2)
    assert site.agent.fleet is not None
    assert site.agent.store is not None
    number = site.hub.slots[1].modem.sim.msisdn
    await site.until(lambda: number in site.standin.state.online)
    site.hub.call(1, "+79035550123")
    await site.until(lambda: bool(site.standin.state.messages))
    (message,) = site.standin.state.messages
    assert (message.sender, message.text, message.number) == (
        "+79035550123",
        "Call from +79035550123",
        number,
    )
    (call,) = await site.agent.store.read(queries.incoming_calls)
    assert call.iccid == site.hub.slots[1].modem.sim.iccid
    assert call.rejected_with in ("AT+CHUP", "ATH")
    assert call.message_id is not None
    assert not any(e["kind"] == "call-given up" for e in site.hub.events)
