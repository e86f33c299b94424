"""The public URL check in the whole agent: with ``public_url`` pointing at its own
listener (as a tunnel or a port forward makes it), the agent finds itself there; the
dashboard's snapshot, /metrics and the site's log say so."""

from __future__ import annotations

import httpx

from agent.control.client import ControlClient
from agent.status import PublicUrlState, SiteSnapshot, from_json
from tests.e2e.site import StartSite, free_port


async def test_the_agent_finds_itself_by_its_public_url(start_site: StartSite) -> None:
    port = free_port()
    own = f"http://127.0.0.1:{port}"
    site = await start_site(count=1, webhook={"listen": f"127.0.0.1:{port}", "public_url": own})
    agent = site.agent
    assert agent.health()["instance"] == agent.instance
    assert agent.public_url is not None
    checker = agent.public_url
    await site.until(lambda: checker.status.state is PublicUrlState.UP)

    async with ControlClient(site.config.control_socket) as client:
        snapshot = from_json(SiteSnapshot, await client.request("snapshot"))
    assert snapshot.public_url == checker.status
    assert snapshot.public_url.url == f"{own}/onlinesim/numbers?token=TOKEN"
    async with httpx.AsyncClient(base_url=own) as http:
        metrics = (await http.get("/metrics")).text
    assert f'simedge_public_url_up{{url="{own}/onlinesim/numbers?token=TOKEN"}} 1.0' in metrics

    assert agent.store is not None
    # The change went to the site's log through the single writer: a write queued now
    # ends after it.
    await agent.store.writer.submit(lambda: None, "after the public URL's log line")
    events = [e.text for e in await agent.store.recent_events() if e.kind == "public_url"]
    assert events == [f"public URL reachable: {own}/onlinesim/numbers?token=TOKEN"]
