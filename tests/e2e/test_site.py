"""The whole site end to end: emulated modems -> the agent -> the OnlineSim stand-in."""

from __future__ import annotations

import httpx

from agent.control.client import ControlClient
from agent.status import ModemState
from tests.e2e.site import TOKEN, StartSite


async def test_every_sms_reaches_onlinesim_with_its_exact_text(start_site: StartSite) -> None:
    site = await start_site(count=3, profile="mixed")
    await site.ready_modems(3)
    texts = {
        0: "Ваш код 123456 🙂",
        1: "VKcom 111111 [bold]not markup[/] € {} ~",
        2: "Long " + "message that spans parts. " * 12,
    }
    for modem, text in texts.items():
        site.hub.inject(modem, "VKcom" if modem == 1 else "+79161234567", text)
    await site.until(lambda: len(site.standin.state.messages) >= len(texts))
    received = {message.text: message for message in site.standin.state.messages}
    assert set(received) == set(texts.values())
    assert len(site.standin.state.messages) == len(texts)
    assert site.agent.fleet is not None
    number_of = {m.iccid: m.number for m in site.agent.fleet.modems()}
    for modem, text in texts.items():
        message = received[text]
        assert message.sender == ("VKcom" if modem == 1 else "+79161234567")
        assert message.number == number_of[site.hub.slots[modem].modem.sim.iccid]


async def test_numbers_online_match_the_live_sims(start_site: StartSite) -> None:
    site = await start_site(count=4, profile="sim800")
    await site.ready_modems(4)
    assert site.agent.fleet is not None
    fleet = site.agent.fleet

    def live_numbers() -> set[str]:
        return {m.number for m in fleet.modems() if m.state is ModemState.READY and m.number}

    await site.until(lambda: bool(live_numbers()))
    await site.until(lambda: set(site.standin.state.online) == live_numbers())
    online_before = set(site.standin.state.online)

    # A modem unplugged: its number leaves the list; plugged back: it returns.
    unplugged = next(m for m in fleet.modems() if m.number)
    slot_index = [m.slot for m in fleet.modems()].index(unplugged.slot)
    site.hub.fault(slot_index, "unplug")
    await site.until(lambda: unplugged.number not in site.standin.state.online)
    site.hub.fault(slot_index, "replug")
    await site.until(lambda: set(site.standin.state.online) == online_before)


async def test_webhook_answers_the_online_list_with_the_token_only(start_site: StartSite) -> None:
    site = await start_site(count=2, profile="sim800")
    await site.ready_modems(2)
    assert site.agent.fleet is not None
    modems = site.agent.fleet.modems
    # Settled: the numbers and their balances (asked at start) are in, the list stays.
    await site.until(lambda: all(m.number and m.balance is not None for m in modems()))
    await site.until(lambda: bool(site.agent.online_list()))
    async with httpx.AsyncClient() as client:
        answer = await client.get(site.webhook_url, params={"token": TOKEN})
        refused = await client.get(site.webhook_url, params={"token": "wrong" * 4})
    assert answer.status_code == 200
    assert answer.json() == {"list": site.agent.online_list()}
    assert refused.status_code == 404


async def test_the_control_socket_shows_the_site_and_takes_commands(start_site: StartSite) -> None:
    site = await start_site(count=2, profile="sim800")
    await site.ready_modems(2)
    async with ControlClient(site.config.control_socket) as client:
        snapshot = await client.request("snapshot")
        assert [m["state"] for m in snapshot["modems"]] == ["ready", "ready"]
        assert snapshot["uplink"]["state"] == "ok"
        iccid = snapshot["modems"][0]["iccid"]
        await client.request("set_number", iccid=iccid, number="+79990001122")
    await site.until(lambda: "+79990001122" in site.standin.state.online)
