"""Own number by SMS between SIMs of one hub, on real workers, a real store and emulated
modems: unknown SIMs text a known one, learn their numbers, and the SMS never become
messages; failures keep their reason; the budget and the one-a-day rule hold."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from agent.emulate.modems.hub import Hub
from agent.modem import own_number
from agent.modem.fleet import Fleet
from agent.modem.hotplug import PortWatcher
from agent.modem.own_number import StoreNumberBook
from agent.modem.probe import NumberProber, ProbeSettings
from agent.status import ModemState, ModemStatus, NumberSource
from agent.store import Store, queries
from tests.modem.conftest import FAST, StartHub, message_count


class Site:
    """A fleet on the hub's ports with the store's number book and the built-in USSD
    recipes, as the agent runs it, and a prober over it."""

    def __init__(
        self, hub: Hub, store: Store, settings: ProbeSettings, clock: Callable[[], float]
    ) -> None:
        self.latest: dict[str, ModemStatus] = {}
        self._changed = asyncio.Event()
        self.fleet = Fleet(
            watcher=PortWatcher(
                [f"{hub.directory}/*"], auto=False, by_path_dir=hub.directory / "x"
            ),
            store=store,
            settings=FAST,
            number_book=StoreNumberBook(store),
            ussd_recipes=own_number.recipes({}),
            on_change=self._published,
            probe_timeout=0.3,
        )
        self.prober = NumberProber(store=store, workers=self.fleet, settings=settings, clock=clock)

    def _published(self, status: ModemStatus) -> None:
        self.latest[status.slot] = status
        self._changed.set()
        self.prober.wake()

    async def until(self, condition: Callable[[], bool], within: float = 15.0) -> None:
        async with asyncio.timeout(within):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    def by_iccid(self, iccid: str) -> ModemStatus:
        return next(status for status in self.latest.values() if status.iccid == iccid)

    def settled(self, count: int) -> bool:
        ready = [s for s in self.latest.values() if s.state is ModemState.READY and s.registered]
        return len(ready) == count


@asynccontextmanager
async def site_on(
    hub: Hub, store: Store, settings: ProbeSettings, clock: Callable[[], float] = time.time
) -> AsyncIterator[Site]:
    site = Site(hub, store, settings, clock)
    tasks = [asyncio.create_task(site.fleet.run()), asyncio.create_task(site.prober.run())]
    try:
        yield site
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def iccid_of(hub: Hub, index: int) -> str:
    sim = hub.slots[index].modem.sim
    assert sim is not None
    return sim.iccid


def number_of(hub: Hub, index: int) -> str:
    sim = hub.slots[index].modem.sim
    assert sim is not None
    return sim.msisdn


async def test_unknown_sims_find_their_numbers_and_no_probe_becomes_a_message(
    start_hub: StartHub, store: Store
) -> None:
    hub = await start_hub(count=4, profile="mixed", seed=3, hidden_numbers=3, sms_delay=0.2)
    settings = ProbeSettings(per_day=10, timeout=30, interval=30)
    async with site_on(hub, store, settings) as site:
        hidden = [iccid_of(hub, index) for index in range(3)]

        def all_found() -> bool:
            return all(
                any(s.iccid == iccid and s.number for s in site.latest.values()) for iccid in hidden
            )

        await site.until(all_found)
        for index, iccid in enumerate(hidden):
            status = site.by_iccid(iccid)
            assert (status.number, status.number_source) == (
                number_of(hub, index),
                NumberSource.SMS_PROBE,
            )
        known = site.by_iccid(iccid_of(hub, 3))
        assert known.number_source in (NumberSource.CNUM, NumberSource.USSD)
    probes = await store.read(queries.number_probes)
    assert sorted(p.iccid for p in probes) == sorted(hidden)  # one each, no more
    # Each went to a SIM whose number was known then: SIM 3's from the start, or one a
    # probe found a moment before (which one depends on who finished first).
    for probe in probes:
        own = number_of(hub, hidden.index(probe.iccid))
        assert probe.state == "found"
        assert probe.target_number in {number_of(hub, index) for index in range(4)} - {own}
    assert await message_count(store) == 0
    submitted = [event for event in hub.events if event["kind"] == "submitted"]
    assert sorted(event["modem"] for event in submitted) == [0, 1, 2]
    assert all(event["to_modem"] != event["modem"] for event in submitted)


async def test_a_sim_without_credit_fails_with_the_reason_and_waits_a_day(
    start_hub: StartHub, store: Store
) -> None:
    hub = await start_hub(count=2, profile="ec25", seed=4, hidden_numbers=1, sms_delay=0.2)
    hub.set_sim(0, credit=False)
    settings = ProbeSettings(per_day=10, timeout=30, interval=30)
    async with site_on(hub, store, settings) as site:
        await site.until(lambda: site.settled(2))
        await site.prober.round()  # started now, or by the prober's own round before
        await site.prober.wait_sent()
        probes = await store.read(queries.number_probes)
        (probe,) = probes
        assert probe.reason == "+CMS ERROR: 21 short message transfer rejected"
        hub.set_sim(0, credit=True)
        assert await site.prober.round() == []  # tried today already
        assert site.by_iccid(iccid_of(hub, 0)).number is None
    events = await store.read(lambda: queries.events(20))
    assert any("failed: +CMS ERROR: 21" in event.text for event in events)


async def test_the_daily_budget_is_shared_by_the_site(start_hub: StartHub, store: Store) -> None:
    hub = await start_hub(count=3, profile="ec25", seed=5, hidden_numbers=2, sms_delay=0.2)
    settings = ProbeSettings(per_day=1, timeout=30, interval=30)
    async with site_on(hub, store, settings) as site:
        await site.until(lambda: sum(bool(s.number) for s in site.latest.values()) == 2)
        assert await site.prober.round() == []  # the budget of 1 is spent
    probes = await store.read(queries.number_probes)
    assert len(probes) == 1
    assert probes[0].state == "found"


async def test_no_budget_no_probe(start_hub: StartHub, store: Store) -> None:
    hub = await start_hub(count=2, profile="ec25", seed=6, hidden_numbers=1, sms_delay=0.2)
    async with site_on(hub, store, ProbeSettings()) as site:  # per_day 0, the default
        await site.until(lambda: site.settled(2))
        assert await site.prober.round() == []
    assert await store.read(queries.number_probes) == []
    assert [event for event in hub.events if event["kind"] == "submitted"] == []


async def test_a_probe_that_never_arrives_fails_after_the_timeout(
    start_hub: StartHub, store: Store
) -> None:
    hub = await start_hub(count=2, profile="ec25", seed=7, hidden_numbers=1, sms_delay=0.2)
    # The known SIM's number, set by hand, is wrong: the probe SMS leaves the hub.
    await store.set_sim_number(iccid_of(hub, 1), "+15550001111")
    settings = ProbeSettings(per_day=10, timeout=600, interval=3600)
    now = [time.time()]  # the prober's clock, moved by hand
    async with site_on(hub, store, settings, lambda: now[0]) as site:
        await site.until(lambda: site.settled(2))
        await site.prober.round()
        await site.prober.wait_sent()
        (probe,) = await store.read(queries.number_probes)
        assert probe.state == "sent"
        now[0] += 599
        await site.prober.round()
        assert (await store.read(queries.number_probes))[0].state == "sent"
        now[0] += 2
        await site.prober.round()
    (probe,) = await store.read(queries.number_probes)
    assert (probe.state, probe.reason) == ("failed", "no delivery in 10 minutes")
    assert probe.target_number == "+15550001111"
