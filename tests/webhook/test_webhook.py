"""The webhook listener's content and auth, over real HTTP on 127.0.0.1 (our server, httpx)."""

from __future__ import annotations

import hmac
import json
import logging
import math
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.errors import ListenError
from agent.status import ModemStatus
from agent.webhook import Metrics, WebhookApp, WebhookServer
from agent.webhook.metrics import MAX_ERROR_CODES, OTHER_CODE
from tests.webhook import (
    HEALTH,
    ONLINE,
    PATH,
    TOKEN,
    FixedSiteView,
    Running,
    measure_latency,
    running_webhook,
)


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    async with running_webhook() as running:
        yield running


@pytest.fixture
async def client(running: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=running.base, timeout=5.0) as client:
        yield client


# -- the list call --------------------------------------------------------------------------


async def test_the_answer_is_the_views_list_as_json(
    running: Running, client: httpx.AsyncClient
) -> None:
    response = await client.get(PATH, params={"token": TOKEN})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"list": ONLINE}
    assert "server" not in response.headers  # no software banner for scanners


async def test_the_answer_follows_the_view_without_caching(
    running: Running, client: httpx.AsyncClient
) -> None:
    running.view.online = []
    assert (await client.get(PATH, params={"token": TOKEN})).json() == {"list": []}
    running.view.online = [ONLINE[1]]
    assert (await client.get(PATH, params={"token": TOKEN})).json() == {"list": [ONLINE[1]]}


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_both_methods_answer_with_token_in_query_or_bearer_header(
    client: httpx.AsyncClient, method: str
) -> None:
    by_query = await client.request(method, PATH, params={"token": TOKEN})
    by_header = await client.request(
        method, PATH, headers={"Authorization": f"Bearer {TOKEN}"}, json={"ignored": True}
    )
    assert by_query.status_code == by_header.status_code == 200
    assert by_query.json() == by_header.json() == {"list": ONLINE}


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        pytest.param({}, {}, id="no token"),
        pytest.param({"token": TOKEN[:-1]}, {}, id="short token"),
        pytest.param({"token": TOKEN + "x"}, {}, id="long token"),
        pytest.param({"token": ""}, {}, id="empty token"),
        pytest.param({"secret": TOKEN}, {}, id="other parameter"),
        pytest.param({}, {"Authorization": f"Basic {TOKEN}"}, id="basic scheme"),
        pytest.param({}, {"Authorization": f"Bearer {TOKEN.upper()}"}, id="wrong case"),
        pytest.param({}, {"Authorization": "Bearer"}, id="bearer alone"),
        pytest.param({"token": "wrong"}, {"Authorization": "Bearer wrong"}, id="both wrong"),
    ],
)
async def test_a_wrong_or_missing_token_looks_like_no_such_path(
    running: Running, client: httpx.AsyncClient, params: dict[str, str], headers: dict[str, str]
) -> None:
    refused = await client.get(PATH, params=params, headers=headers)
    nowhere = await client.get("/no/such/path", params=params, headers=headers)
    assert refused.status_code == nowhere.status_code == 404
    assert refused.content == nowhere.content == b""
    assert sorted(refused.headers.keys()) == sorted(nowhere.headers.keys())
    assert running.view.calls == 0  # the view is not even asked


async def test_either_place_may_carry_the_token_when_the_other_is_wrong(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        PATH, params={"token": "wrong"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200


async def test_a_percent_encoded_token_matches(client: httpx.AsyncClient) -> None:
    encoded = "".join(f"%{byte:02X}" for byte in TOKEN.encode())
    response = await client.get(f"{PATH}?token={encoded}")
    assert response.status_code == 200


async def test_the_token_is_compared_in_constant_time_as_bytes(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[type, type]] = []
    real = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        seen.append((type(a), type(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    assert (await client.get(PATH, params={"token": "nope"})).status_code == 404
    assert (await client.get(PATH, params={"token": TOKEN})).status_code == 200
    assert seen == [(bytes, bytes), (bytes, bytes)]


async def test_an_empty_configured_token_refuses_everything() -> None:
    async with (
        running_webhook(token="") as running,
        httpx.AsyncClient(base_url=running.base) as client,
    ):
        assert (await client.get(PATH, params={"token": ""})).status_code == 404
        assert (await client.get(PATH)).status_code == 404


async def test_other_methods_with_the_token_are_not_allowed(client: httpx.AsyncClient) -> None:
    response = await client.put(PATH, params={"token": TOKEN})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert (await client.put(PATH)).status_code == 404  # without it: nothing here


async def test_a_failing_view_costs_one_500_and_no_token_in_the_log(
    running: Running, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> list[dict[str, Any]]:
        raise RuntimeError("numbers table is being rebuilt")

    running.view.online_list = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="simedge.webhook"):
        response = await client.get(PATH, params={"token": TOKEN})
    assert response.status_code == 500
    assert response.content == b""
    assert "numbers table is being rebuilt" in caplog.text
    assert TOKEN not in caplog.text
    assert (await client.get("/healthz")).status_code == 200  # the listener lives on


# -- /healthz and /metrics ----------------------------------------------------------------


async def test_healthz_needs_no_token_and_shows_the_views_health(
    running: Running, client: httpx.AsyncClient
) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    health = response.json()
    assert health == HEALTH
    assert set(health) >= {"agent", "modems", "uplink"}
    assert not any(item["number"] in response.text for item in ONLINE)
    running.view.state = {**HEALTH, "agent": "degraded"}
    assert (await client.get("/healthz")).status_code == 503


async def test_metrics_parse_as_prometheus_text_with_the_updates(
    running: Running, client: httpx.AsyncClient
) -> None:
    metrics = running.metrics
    metrics.set_modems({"ready": 2, "failed": 1})
    metrics.set_sims_online(2)
    for blocked in (False, False, False, False, True):
        metrics.sms_stored(blocked)
    metrics.sms_forwarded(3)
    metrics.sms_dead()
    metrics.set_outbox_depth(1)
    metrics.uplink_error("NO_NUMBER")
    metrics.uplink_error("NO_NUMBER")
    metrics.uplink_error("ReadTimeout")
    metrics.observe_delivery(0.2)
    metrics.observe_delivery(42.0)
    metrics.set_uplink_state("store_not_writable")
    metrics.set_store_writable(False)
    await client.get(PATH, params={"token": TOKEN})
    await client.get(PATH)

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}

    def value(family: str, sample: str, **labels: str) -> float:
        return next(
            s.value for s in families[family].samples if s.name == sample and s.labels == labels
        )

    assert {name for name in families if name.startswith("simedge_")} == {
        "simedge_modems",
        "simedge_sims_online",
        "simedge_sms_received",
        "simedge_sms_forwarded",
        "simedge_sms_blocked",
        "simedge_sms_dead",
        "simedge_outbox_depth",
        "simedge_uplink_errors",
        "simedge_delivery_latency_seconds",
        "simedge_webhook_requests",
        "simedge_uplink_state",
        "simedge_store_writable",
        "simedge_public_url_up",  # declared always, sampled only with a public_url
        "simedge_public_url_since_timestamp_seconds",
        "simedge_site_info",  # sampled once the agent names its site
        "simedge_sims_swap_due",
        "simedge_data_free_bytes",
        "simedge_data_size_bytes",
        "simedge_clock_synchronized",
        "simedge_sim_balance",  # declared always, sampled for SIMs with a balance
        "simedge_sim_balance_low",
    }
    assert all(f.documentation for f in families.values())
    uplink = {s.labels["state"]: s.value for s in families["simedge_uplink_state"].samples}
    assert uplink == {"ok": 0, "backing_off": 0, "paused": 0, "store_not_writable": 1}
    assert value("simedge_store_writable", "simedge_store_writable") == 0
    modems = {s.labels["state"]: s.value for s in families["simedge_modems"].samples}
    assert modems == {
        "probing": 0,
        "starting": 0,
        "ready": 2,
        "recovering": 0,
        "failed": 1,
        "gone": 0,
    }
    assert value("simedge_sims_online", "simedge_sims_online") == 2
    assert value("simedge_sms_received", "simedge_sms_received_total") == 5
    assert value("simedge_sms_forwarded", "simedge_sms_forwarded_total") == 3
    assert value("simedge_sms_blocked", "simedge_sms_blocked_total") == 1
    assert value("simedge_sms_dead", "simedge_sms_dead_total") == 1
    assert value("simedge_outbox_depth", "simedge_outbox_depth") == 1
    errors = "simedge_uplink_errors"
    assert value(errors, f"{errors}_total", code="NO_NUMBER") == 2
    assert value(errors, f"{errors}_total", code="ReadTimeout") == 1
    latency = "simedge_delivery_latency_seconds"
    assert families[latency].type == "histogram"
    assert value(latency, f"{latency}_count") == 2
    assert value(latency, f"{latency}_bucket", le="0.05") == 0
    assert value(latency, f"{latency}_bucket", le="0.25") == 1
    assert value(latency, f"{latency}_bucket", le="60.0") == 2
    requests = "simedge_webhook_requests"
    assert value(requests, f"{requests}_total", outcome="answered") == 1
    assert value(requests, f"{requests}_total", outcome="refused") == 1
    assert TOKEN not in response.text


async def test_metrics_keep_no_series_of_the_global_registry() -> None:
    first, second = Metrics(), Metrics()
    first.sms_stored(blocked=False)
    assert b"simedge_sms_received_total 1.0" in first.render()
    assert b"simedge_sms_received_total 0.0" in second.render()
    assert b"python_gc" not in first.render()  # the default collectors live elsewhere


def test_the_site_is_named_once_and_a_clock_nobody_can_read_is_no_number(
    tmp_path: Path,
) -> None:
    metrics = Metrics()
    metrics.set_site("old-name")
    metrics.set_site("shop-7")
    answers: list[bool | None] = [True, None]
    metrics.read_clock(lambda: answers.pop(0))
    metrics.read_data_folder(tmp_path)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    assert [s.labels for s in families["simedge_site_info"].samples] == [{"name": "shop-7"}]
    assert families["simedge_clock_synchronized"].samples[0].value == 1
    assert families["simedge_data_size_bytes"].samples[0].value == shutil.disk_usage(tmp_path).total
    gone = tmp_path / "gone"
    metrics.read_data_folder(gone)  # statvfs fails: NaN, and the page still renders
    again = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    assert math.isnan(again["simedge_clock_synchronized"].samples[0].value)
    assert math.isnan(again["simedge_data_free_bytes"].samples[0].value)


def test_uplink_error_codes_are_bounded() -> None:
    metrics = Metrics()
    for n in range(MAX_ERROR_CODES + 10):
        metrics.uplink_error(f"CODE_{n}")
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    codes = {s.labels["code"] for s in families["simedge_uplink_errors"].samples}
    assert len(codes) == MAX_ERROR_CODES + 1
    assert OTHER_CODE in codes


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
async def test_healthz_and_metrics_answer_reads_only(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.head(path)).status_code == 200
    response = await client.post(path)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


# -- the listener -------------------------------------------------------------------------


def another_app() -> WebhookApp:
    return WebhookApp(FixedSiteView(), Metrics(), path=PATH, token=TOKEN)


async def test_a_port_in_use_is_a_listen_error_naming_the_address(running: Running) -> None:
    second = WebhookServer(another_app())
    with pytest.raises(ListenError, match=f"127.0.0.1:{running.server.port}: cannot listen"):
        await second.start("127.0.0.1", running.server.port)
    await second.stop()  # nothing was started, nothing to stop


async def test_stop_cuts_open_connections_and_frees_the_port() -> None:
    async with running_webhook() as running:
        client = httpx.AsyncClient(base_url=running.base, timeout=2.0)
        assert (await client.get("/healthz")).status_code == 200  # keep-alive connection open
        port = running.server.port
        await running.server.stop()
        assert running.server.connection_count == 0
        with pytest.raises(httpx.TransportError):
            await client.get("/healthz")
        await client.aclose()
    again = WebhookServer(another_app())
    await again.start("127.0.0.1", port)
    await again.stop()


async def test_the_latency_helper_measures_answered_calls() -> None:
    measured = await measure_latency(count=50)
    assert measured["count"] == 50
    assert 0 < measured["httpx_p50_ms"] <= measured["httpx_p99_ms"]
    assert 0 < measured["socket_p50_ms"] <= measured["socket_p99_ms"]
    assert json.dumps(measured)  # plain numbers, fit for a report


def test_sim_balances_are_read_at_the_scrape_one_series_per_sim_in_a_slot() -> None:
    statuses = [
        ModemStatus(slot="1.1.1", iccid="8970100000000000001", balance=3.5, balance_currency="RUB"),
        ModemStatus(
            slot="1.1.2", iccid="8970100000000000002", balance=250.0, balance_currency="NGN"
        ),
        ModemStatus(slot="1.1.3", iccid="8970100000000000003"),  # never answered: no series
        ModemStatus(slot="1.1.4"),  # no SIM
    ]
    metrics = Metrics()
    metrics.read_sim_balances(lambda: statuses, low_balance=10)

    def samples() -> dict[tuple[str, str], float]:
        families = text_string_to_metric_families(metrics.render().decode())
        return {
            (sample.name, sample.labels["slot"]): sample.value
            for family in families
            if family.name.startswith("simedge_sim_balance")
            for sample in family.samples
        }

    assert samples() == {
        ("simedge_sim_balance", "1.1.1"): 3.5,
        ("simedge_sim_balance", "1.1.2"): 250.0,
        ("simedge_sim_balance_low", "1.1.1"): 1.0,
        ("simedge_sim_balance_low", "1.1.2"): 0.0,
    }
    del statuses[0]  # the SIM is taken out: its series goes with it
    assert set(samples()) == {
        ("simedge_sim_balance", "1.1.2"),
        ("simedge_sim_balance_low", "1.1.2"),
    }
