"""SIM upkeep on emulated modems, in simulated days (issue 17): balances read by USSD in
each operator's wording and encoding reach OnlineSim's numbers list; SIMs whose network
has a keep-alive policy (a paid USSD for one, an SMS for another) stay active past their
deadline, one without lapses; `sims` (the control op behind `simedge sims` and the SIMs
screen) shows it per ICCID."""

from __future__ import annotations

import random

from agent.control.client import ControlClient
from agent.control.protocol import ListSims
from agent.emulate.modems import Hub
from agent.emulate.modems.sim import OPERATORS, make_sim
from agent.status import ModemStatus
from tests.e2e.site import SimulatedClock, Site, StartSite

DAY = 86400.0
# MTS (kept alive by USSD), Beeline, MTN (menu), O2 (kept alive by SMS)
NETWORKS = ("25001", "25099", "62130", "23410")
BALANCES = (150.0, 75.5, 1200.0, 5.2)
PAID_CODE = "*321#"  # the emulated operators' chargeable USSD (agent.emulate.modems.sim)
OUTSIDE = "+447700900123"  # a number off the hub: the keep-alive SMS leaves the site


def status_of(site: Site, network: str) -> ModemStatus:
    assert site.agent.fleet is not None
    return next(m for m in site.agent.fleet.modems() if m.operator == network)


def listed_balances(site: Site) -> dict[str, float | None]:
    return {
        number: (None if online.item.get("balance") is None else float(online.item["balance"]))
        for number, online in site.standin.state.online.items()
    }


async def test_balances_listed_keepalive_keeps_one_sim_and_the_other_lapses(
    start_site: StartSite,
) -> None:
    clock = SimulatedClock()
    sims = {}

    def prepare(hub: Hub) -> None:
        by_network = {operator.mcc_mnc: operator for operator in OPERATORS}
        for index, (network, amount) in enumerate(zip(NETWORKS, BALANCES, strict=True)):
            sim = make_sim(random.Random(index), by_network[network])
            sim.number_stored = True
            sim.balance = amount
            sim.lapse_days = 30
            sim.last_activity = clock()
            hub.slots[index].modem.sim = sim
            sims[network] = sim

    site = await start_site(
        count=4,
        profile="mixed",
        clock=clock,
        prepare=prepare,
        sims={
            "keepalive": {
                "25001": {"days": 30, "ussd": PAID_CODE},
                "23410": {"days": 30, "sms_to": OUTSIDE, "sms_text": "keep-alive"},
            }
        },
    )
    await site.ready_modems(4)
    numbers = {network: sims[network].msisdn for network in NETWORKS}

    # Every balance, as each operator wrote it, is in the list OnlineSim holds.
    expected = {numbers[n]: amount for n, amount in zip(NETWORKS, BALANCES, strict=True)}
    await site.until(lambda: listed_balances(site) == expected, 30)
    kept = status_of(site, "25001")
    assert kept.balance_currency == "RUB"
    assert status_of(site, "62130").balance_currency == "NGN"
    assert kept.active_until is not None
    first_deadline = kept.active_until
    texting_deadline = status_of(site, "23410").active_until
    assert texting_deadline is not None
    assert status_of(site, "25099").active_until is None  # no policy: not tracked

    # 29.5 days on: both keep-alives are due (a day before their deadline) and run.
    clock.advance(29.5 * DAY)
    await site.until(lambda: (status_of(site, "25001").active_until or 0) > first_deadline, 20)
    await site.until(lambda: (status_of(site, "23410").active_until or 0) > texting_deadline, 20)
    for network in ("25001", "23410"):
        last_activity = sims[network].last_activity
        assert last_activity is not None
        assert last_activity > first_deadline - DAY

    # 31 days on: past both deadlines. The Beeline SIM lapsed (denied) and left the list;
    # the MTS SIM is registered and listed, with a balance read again (the keep-alive cost 1).
    clock.advance(1.5 * DAY)
    await site.until(lambda: status_of(site, "25099").registration == "denied", 20)
    await site.until(lambda: numbers["25099"] not in site.standin.state.online, 20)
    await site.until(lambda: listed_balances(site).get(numbers["25001"]) == 149.0, 20)
    assert status_of(site, "25001").registered
    assert status_of(site, "23410").registered  # kept by its SMS
    assert clock() > max(first_deadline, texting_deadline)

    async with ControlClient(site.config.control_socket) as client:
        rows = {row.iccid: row for row in await client.call(ListSims())}
    kept_row = rows[sims["25001"].iccid]
    assert kept_row.active_until > clock()
    assert kept_row.keepalive_at is not None
    assert kept_row.balance == 149.0
    assert kept_row.in_slot is True
    texting_row = rows[sims["23410"].iccid]
    assert texting_row.active_until > clock()
    assert texting_row.keepalive_at is not None
    lapsed_row = rows[sims["25099"].iccid]
    assert lapsed_row.active_until is None
    assert lapsed_row.balance == 75.5
    assert lapsed_row.number == numbers["25099"]
    assert lapsed_row.number_source == "cnum"
