"""OnlineSim's online list follows the SIMs in the ports, and never holds a number that is
not live: deregistration, SIM out, a swapped SIM (a new number), and back."""

from __future__ import annotations

import json

from agent.status import ModemState, ModemStatus
from tests.e2e.site import Site, StartSite


def lists_sent(site: Site) -> list[list[str]]:
    return [
        [item["number"] for item in json.loads(request.body)["number"]]
        for request in site.standin.state.requests
        if request.path.endswith("/sendNumbersOnline") and request.status == 200
    ]


def status_of(site: Site, slot: str) -> ModemStatus:
    assert site.agent.fleet is not None
    return site.agent.fleet.statuses[slot]


async def test_the_list_follows_deregistration_sim_out_and_a_sim_swap(
    start_site: StartSite,
) -> None:
    site = await start_site(count=3, profile="sim800")
    await site.ready_modems(3)
    assert site.agent.fleet is not None
    slots = [m.slot for m in site.agent.fleet.modems()]
    await site.until(lambda: all(status_of(site, s).number for s in slots))
    numbers = [status_of(site, s).number for s in slots]
    await site.until(lambda: set(site.standin.state.online) == set(numbers))

    # Deregistered: the number leaves, and no list sent after the agent saw it has it.
    site.hub.fault(0, "deregister")
    await site.until(lambda: not status_of(site, slots[0]).registered)
    seen = len(lists_sent(site))
    await site.until(lambda: numbers[0] not in site.standin.state.online)
    site.hub.fault(0, "reregister")
    await site.until(lambda: numbers[0] in site.standin.state.online)
    back = next(i for i, sent in enumerate(lists_sent(site)) if i >= seen and numbers[0] in sent)
    assert all(numbers[0] not in sent for sent in lists_sent(site)[seen + 1 : back])

    # SIM out: gone from the list; a new SIM in the same slot comes online as a new number.
    old_iccid = status_of(site, slots[1]).iccid
    site.hub.fault(1, "sim-out")
    await site.until(lambda: numbers[1] not in site.standin.state.online)
    site.hub.fault(1, "sim-in")
    await site.until(
        lambda: (
            status_of(site, slots[1]).iccid not in (None, old_iccid)
            and status_of(site, slots[1]).state is ModemState.READY
            and status_of(site, slots[1]).number is not None
        ),
        seconds=30,
    )
    new_number = status_of(site, slots[1]).number
    assert new_number != numbers[1]
    await site.until(lambda: new_number in site.standin.state.online)
    assert set(site.standin.state.online) == {numbers[0], new_number, numbers[2]}
