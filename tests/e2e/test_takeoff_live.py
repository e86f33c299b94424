"""Take-off through the whole agent: OnlineSim lists an earning number, the agent marks the
physical slot that holds its SIM, and the person's swap in that slot ends the mark."""

from __future__ import annotations

import os

from agent.status import ModemState, ModemStatus
from tests.e2e.site import Site, StartSite
from tests.e2e.test_metrics import scrape, value


def hub_index(site: Site, status: ModemStatus) -> int:
    """Which of the hub's modems the agent sees as ``status`` (by its ports' devices)."""
    (index,) = (
        index
        for index, slot in enumerate(site.hub.slots)
        if {os.path.realpath(port.link) for port in slot.ports} & set(status.ports)
    )
    return index


async def test_an_earning_sim_is_marked_in_its_slot_until_it_is_swapped(
    start_site: StartSite,
) -> None:
    site = await start_site(
        count=2,
        profile="sim800",
        onlinesim={"takeoff_sum": 50, "takeoff_interval": 0.2, "takeoff_action": "offline"},
    )
    await site.ready_modems(2)
    fleet, marks = site.agent.fleet, site.agent.marks
    assert fleet is not None
    assert marks is not None
    await site.until(lambda: len(site.standin.state.online) == 2)
    by_port = {entry.item["port_id"]: number for number, entry in site.standin.state.online.items()}
    earning_slot, other_slot = (modem.slot for modem in fleet.modems())
    earning, other = by_port[earning_slot], by_port[other_slot]
    earning_iccid = fleet.statuses[earning_slot].iccid

    site.standin.state.set_earnings({earning: 75.5, other: 12.0})
    await site.until(lambda: bool(marks.open_marks()))
    (mark,) = marks.open_marks()  # the SIM that earned 12 RUB stays
    assert (mark.iccid, mark.slot, mark.number, mark.sum_rub) == (
        earning_iccid,
        earning_slot,
        earning,
        75.5,
    )
    assert value(await scrape(site.agent), "simedge_sims_swap_due") == 1  # the fleet's alert
    shown = (await site.agent.snapshot()).takeoff  # what the dashboard's Take-off screen lists
    assert [(m.iccid, m.slot, m.number, m.sum_rub) for m in shown] == [
        (earning_iccid, earning_slot, earning, 75.5)
    ]
    assert shown[0].marked_at == mark.at.timestamp()
    # "offline": the number leaves OnlineSim's list at once; the other one stays.
    await site.until(lambda: set(site.standin.state.online) == {other})

    # The person on site swaps the SIM in the marked slot.
    site.hub.fault(hub_index(site, fleet.statuses[earning_slot]), "sim-in")
    await site.until(
        lambda: (
            fleet.statuses[earning_slot].iccid not in (None, earning_iccid)
            and fleet.statuses[earning_slot].state is ModemState.READY
        ),
        seconds=30,
    )
    await site.until(lambda: not marks.open_marks())
    assert value(await scrape(site.agent), "simedge_sims_swap_due") == 0
    newcomer = fleet.statuses[earning_slot].number
    assert newcomer is not None
    assert newcomer != earning
    await site.until(
        lambda: len(site.standin.state.online) == 2 and other in site.standin.state.online
    )
