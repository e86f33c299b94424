"""Own number by SMS probe, end to end: 8 SIMs on emulated modems, 2 whose number +CNUM or
USSD gives, 6 whose number only an SMS they send can tell; the real agent finds all 6
within a minute of its start, and no probe SMS reaches OnlineSim or counts as traffic."""

from __future__ import annotations

import asyncio

from agent.status import NumberSource
from agent.store import queries
from agent.store.models import PDU_PROBE, ReceivedPdu
from tests.e2e.site import StartSite

SMS_DELAY = 2.0  # seconds an SMS between two SIMs of the hub takes (real SIMs: a few)


async def test_six_unknown_sims_find_their_numbers_by_sms_within_a_minute(
    start_site: StartSite,
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    site = await start_site(
        count=8,
        profile="mixed",
        seed=11,
        hub_options={"hidden_numbers": 6, "sms_delay": SMS_DELAY},
        sims={"probe_sms_per_day": 20, "probe_timeout": 120},
    )
    assert site.agent.fleet is not None
    assert site.agent.store is not None
    fleet, store = site.agent.fleet, site.agent.store
    msisdn = {slot.modem.sim.iccid: slot.modem.sim.msisdn for slot in site.hub.slots}
    hidden = {site.hub.slots[index].modem.sim.iccid for index in range(6)}

    await site.until(lambda: set(site.standin.state.online) == set(msisdn.values()), 60.0)
    found_after = loop.time() - started
    print(f"8 numbers online at OnlineSim {found_after:.1f} s after start, 6 by SMS probe")
    assert found_after < 60.0

    by_iccid = {m.iccid: m for m in fleet.modems()}
    for iccid in hidden:
        assert (by_iccid[iccid].number, by_iccid[iccid].number_source) == (
            msisdn[iccid],
            NumberSource.SMS_PROBE,
        )
    for iccid in set(msisdn) - hidden:
        assert by_iccid[iccid].number_source in (NumberSource.CNUM, NumberSource.USSD)

    probes = await store.read(queries.number_probes)
    assert sorted(p.iccid for p in probes) == sorted(hidden)  # one probe each
    assert {p.state for p in probes} == {"found"}
    assert {p.target_iccid for p in probes} <= set(msisdn) - hidden
    # Across operators and countries: some probe went from one country to another.
    country = {
        slot.modem.sim.iccid: slot.modem.sim.operator.calling_code for slot in site.hub.slots
    }
    assert any(country[p.iccid] != country[p.target_iccid] for p in probes)
    # None reached OnlineSim, none is a message (the outbox, the counts), every raw PDU kept.
    assert site.standin.state.messages == []
    assert (await store.table_counts())["message"] == 0
    kept = await store.read(
        lambda: ReceivedPdu.select().where(ReceivedPdu.status == PDU_PROBE).count()
    )
    assert kept == 6
