"""What the site says about itself is true: the last error is the real one, and "online"
is what OnlineSim accepted, the same on the dashboard (live and offline), in
``simedge status`` and on /metrics. The real agent against the real stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.cli import main
from agent.status import UplinkCondition
from tests.e2e.site import TOKEN, Site, StartSite
from tui.offline import read_offline_snapshot

WRONG_KEY = "not-the-key-0123456789"


def status_config(site: Site) -> Path:
    """A configuration file for `simedge status` on the site's data folder."""
    path = site.folder / "status.toml"
    path.write_text(
        f'[onlinesim]\nbase_url = "http://127.0.0.1:9/api"\napi_key = "k"\n'
        f'[webhook]\ntoken = "{TOKEN}"\n[site]\ndata_dir = "{site.config.site.data_dir}"\n'
    )
    return path


def status_json(site: Site, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(["status", "--config", str(status_config(site)), "--json"]) == 0
    report: dict[str, object] = json.loads(capsys.readouterr().out)
    return report


async def sims_online_gauge(site: Site) -> float:
    assert site.agent.webhook is not None
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{site.agent.webhook.port}/metrics")
    (family,) = (
        f for f in text_string_to_metric_families(response.text) if f.name == "simedge_sims_online"
    )
    return family.samples[0].value


async def test_a_wrong_key_is_the_last_error_and_nothing_is_online(
    start_site: StartSite, capsys: pytest.CaptureFixture[str]
) -> None:
    site = await start_site(count=2, profile="sim800", onlinesim={"api_key": WRONG_KEY})
    await site.ready_modems(2)
    await site.until(lambda: site.agent.uplink.paused)
    site.hub.inject(0, "+79161234567", "code 4711")  # waits in the outbox, never tried
    assert site.agent.uplink_record is not None
    await site.agent.uplink_record.written()

    # The live dashboard: every SIM looks ready here, none is online at OnlineSim.
    live = await site.agent.snapshot()
    assert all(str(m.state) == "ready" for m in live.modems)
    assert live.numbers_online is None
    assert live.uplink.state is UplinkCondition.PAUSED
    assert live.outbox.last_error is not None
    assert "WRONG_KEY" in live.outbox.last_error
    assert live.outbox.last_error_at is not None
    assert await sims_online_gauge(site) == 0

    # `simedge status` beside the running agent says the same.
    report = status_json(site, capsys)
    outbox = report["outbox"]
    assert isinstance(outbox, dict)
    assert "WRONG_KEY" in str(outbox["last_error"])
    assert outbox["last_error_at"] is not None
    assert report["numbers_online"] is None
    assert report["uplink"] == {
        "state": "paused",
        "code": "ERROR_WRONG_KEY",
        "since": report["uplink"]["since"],  # type: ignore[index]
    }
    assert main(["status", "--config", str(status_config(site))]) == 0
    text = capsys.readouterr().out
    assert "last error   none" not in text
    assert "numbers online not yet sent" in text
    assert "uplink         PAUSED (account refused) (ERROR_WRONG_KEY)" in text

    # And the dashboard with the agent down reads the same from the database.
    offline = read_offline_snapshot(site.config.database)
    assert offline.numbers_online is None
    assert offline.uplink.state is UplinkCondition.PAUSED
    assert offline.outbox.last_error == live.outbox.last_error


async def test_online_is_the_list_onlinesim_accepted_everywhere(
    start_site: StartSite, capsys: pytest.CaptureFixture[str]
) -> None:
    site = await start_site(count=2, profile="sim800")
    await site.ready_modems(2)
    await site.until(lambda: len(site.standin.state.online) == 2)
    numbers = site.agent.numbers
    assert numbers is not None
    await site.until(lambda: numbers.accepted is not None and numbers.accepted.count == 2)

    # The key is revoked: online stays what OnlineSim last accepted, in every reader.
    await site.standin.set_faults(force="ERROR_WRONG_KEY")
    site.hub.inject(0, "+79161234567", "code 4711")
    await site.until(lambda: site.agent.uplink.paused)
    accepted = numbers.accepted
    assert accepted is not None

    live = await site.agent.snapshot()
    assert live.numbers_online == accepted
    assert await sims_online_gauge(site) == accepted.count == len(site.standin.state.online)
    report = status_json(site, capsys)
    assert report["numbers_online"] == {
        "count": accepted.count,
        "accepted_at": report["numbers_online"]["accepted_at"],  # type: ignore[index]
    }
    assert read_offline_snapshot(site.config.database).numbers_online == accepted
