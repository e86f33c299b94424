"""The whole site while its store cannot write: /healthz, the control socket's health and
the metrics say so from the first failed write (an ingest's, here), and the site resumes
by itself when a write commits again (docs/uplink.md, "The store cannot write")."""

from __future__ import annotations

import dataclasses

import httpx

from agent.control.client import ControlClient
from tests.e2e.site import FAST, StartSite


async def test_a_store_that_cannot_write_is_not_healthy_until_a_write_commits(
    start_site: StartSite,
) -> None:
    site = await start_site(count=2, profile="sim800")
    await site.ready_modems(2)
    store = site.agent.store
    assert store is not None
    assert site.agent.webhook is not None
    base = f"http://127.0.0.1:{site.agent.webhook.port}"
    database = store.writer._database  # the writer's own connection, in its thread

    async def query_only(on: bool) -> None:
        # SQLite refuses every write on this connection: the store's real code path
        # meets SQLITE_READONLY, as on a file system remounted read-only.
        await store.writer.submit(
            lambda: database.execute_sql(f"PRAGMA query_only = {int(on)}"), "ro", bare=True
        )

    async with httpx.AsyncClient(base_url=base) as http:
        assert (await http.get("/healthz")).status_code == 200
        await query_only(True)
        site.hub.inject(0, "+79161234567", "code 111111 while read-only")
        await site.until(lambda: not store.writable)

        answer = await http.get("/healthz")
        assert answer.status_code == 503
        health = answer.json()
        assert health["store"] == {"writable": False}
        assert health["uplink"]["state"] == "store_not_writable"
        async with ControlClient(site.config.control_socket) as control:
            assert (await control.request("health"))["uplink"]["state"] == "store_not_writable"
        metrics = (await http.get("/metrics")).text
        assert "simedge_store_writable 0.0" in metrics
        assert 'simedge_uplink_state{state="store_not_writable"} 1.0' in metrics
        assert site.standin.state.messages == []  # kept on the SIM, nothing sent

        await query_only(False)  # the next sweep of the modem writes, and that is enough
        await site.until(lambda: len(site.standin.state.messages) == 1)
        assert site.standin.state.messages[0].text == "code 111111 while read-only"
        answer = await http.get("/healthz")
        assert (answer.status_code, answer.json()["store"]) == (200, {"writable": True})
        assert "simedge_store_writable 1.0" in (await http.get("/metrics")).text


async def test_sms_kept_on_the_modem_go_in_as_soon_as_the_store_writes_again(
    start_site: StartSite,
) -> None:
    # The modem's own retry is an hour away: only the store's "writable again" can bring
    # the SMS in within the wait below.
    site = await start_site(
        count=1, profile="sim800", worker_settings=dataclasses.replace(FAST, disk_full_retry=3600)
    )
    await site.ready_modems(1)
    store = site.agent.store
    assert store is not None
    database = store.writer._database

    async def query_only(on: bool) -> None:
        await store.writer.submit(
            lambda: database.execute_sql(f"PRAGMA query_only = {int(on)}"), "ro", bare=True
        )

    await query_only(True)
    site.hub.inject(0, "+79161234567", "code 222222 kept on the SIM")
    fleet = site.agent.fleet
    assert fleet is not None
    # The slot says why its SMS stay on the SIM once the ingest met the read-only store.
    await site.until(lambda: fleet.modems()[0].fault is not None)
    assert not store.writable
    assert site.standin.state.messages == []

    await query_only(False)  # the pump's store probe finds it writable; the modem is told
    await site.until(lambda: len(site.standin.state.messages) == 1, seconds=15)
    assert site.standin.state.messages[0].text == "code 222222 kept on the SIM"
