"""The OnlineSim stand-in, driven over real HTTP on 127.0.0.1 as the agent will drive it.

Every test starts a fresh stand-in in the test's event loop; the webhook tests start a
tiny HTTP server of their own; the CLI test starts ``simedge emulate onlinesim`` as a
process and waits on its ready line.
"""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.emulate.onlinesim import Faults, OnlineSimStandIn
from agent.errors import EmulatorError

KEY = "sk-standin-7c1e0d9a5b"
AUTH = {"Authorization": f"Bearer {KEY}"}
SEND = "/api/resellers/sendNumbersOnline"
ADD = "/api/resellers/addMessage"
TAKE_OFF = "/api/resellers/takeOffNumbers"
NG1, NG2, NG3 = "+234112233445", "+234112233446", "+234112233447"
ROOT = Path(__file__).resolve().parents[2]
# One TLS context for every client: httpx builds one per client otherwise, 40 ms each.
TLS = ssl.create_default_context()


def http_client(base_url: str, **options: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, verify=TLS, **{"timeout": 5.0, **options})


def item(number: str, **extra: Any) -> dict[str, Any]:
    return {"number": number, "country_id": 234, "date_start": 1543907600, **extra}


def message(**fields: Any) -> dict[str, Any]:
    return {"number": NG1, "from": "VKcom", "message": "VKcom 111111", "date": "1546934787"} | (
        fields
    )


@pytest.fixture
async def standin() -> AsyncIterator[OnlineSimStandIn]:
    standin = OnlineSimStandIn(key=KEY, seed=1)
    await standin.start()
    yield standin
    await standin.stop()


@pytest.fixture
async def api(standin: OnlineSimStandIn) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(standin.url, headers=AUTH) as api_client:
        yield api_client


@pytest.fixture
async def control(standin: OnlineSimStandIn) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(f"{standin.control_url}/_standin") as control_client:
        yield control_client


async def put_online(api: httpx.AsyncClient, *numbers: str) -> dict[str, int | None]:
    response = await api.post(SEND, json={"number": [item(n) for n in numbers]})
    assert response.status_code == 200, response.text
    return response.json()["ids"]


# -- key, routing and the two error body forms ----------------------------------------------


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "ERROR_NO_KEY"),
        ({"Authorization": "Bearer"}, "ERROR_NO_KEY"),
        ({"Authorization": KEY}, "ERROR_NO_KEY"),
        ({"Authorization": "Bearer not-the-key"}, "ERROR_WRONG_KEY"),
    ],
)
async def test_key_problems_are_401(
    standin: OnlineSimStandIn, headers: dict[str, str], code: str
) -> None:
    async with http_client(standin.url, headers=headers) as client:
        response = await client.get(TAKE_OFF, params={"sum": "50"})
    assert (response.status_code, response.json()) == (401, {"response": code})


async def test_key_in_query_string_is_not_a_key(standin: OnlineSimStandIn) -> None:
    async with http_client(standin.url) as client:
        response = await client.get(TAKE_OFF, params={"sum": "50", "apikey": KEY})
    assert (response.status_code, response.json()) == (401, {"response": "ERROR_NO_KEY"})


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", SEND), ("POST", TAKE_OFF), ("GET", ADD), ("POST", "/api/resellers/nothing")],
)
async def test_unknown_path_or_wrong_method_is_405(
    api: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await api.request(method, path, json={})
    assert (response.status_code, response.json()) == (405, {"response": "REQUEST_NOT_FOUND"})


async def test_error_body_form_is_chosen_at_start_and_switched_at_run_time() -> None:
    standin = OnlineSimStandIn(key=KEY, error_body="text")
    await standin.start()
    try:
        async with http_client(standin.url) as client:
            as_text = await client.get(TAKE_OFF)
            await client.post("/_standin/faults", json={"error_body": "json"})
            as_json = await client.get(TAKE_OFF)
    finally:
        await standin.stop()
    assert as_text.status_code == 401
    assert as_text.headers["content-type"].startswith("text/plain")
    assert as_text.text == "ERROR_NO_KEY"
    assert as_json.headers["content-type"] == "application/json"
    assert as_json.json() == {"response": "ERROR_NO_KEY"}


# -- sendNumbersOnline --------------------------------------------------------------------


async def test_ids_new_for_added_kept_for_staying_null_for_removed(
    api: httpx.AsyncClient, standin: OnlineSimStandIn
) -> None:
    first = await put_online(api, NG1, NG2)
    second = await put_online(api, NG2, NG3)
    assert first == {NG1: 1001, NG2: 1002}
    assert second == {NG3: 1003, NG1: None}
    assert standin.state.online_view()["ids"] == {NG2: 1002, NG3: 1003}
    assert await put_online(api) == {NG2: None, NG3: None}
    assert await put_online(api, NG1) == {NG1: 1004}  # back online: a new operation


@pytest.mark.parametrize(
    "payload",
    [
        {"list": [item(NG1)]},
        {"number": json.dumps([item(NG1)])},  # the v1 Axios example
        {"number": [{"number": NG1, "country_id": "234"}]},  # date_start left out as in v1
        {"number": [item(NG1, date_start="1543907600", date_stop=1543917600, balance=100)]},
    ],
    ids=["list-key", "json-string", "no-dates", "string-dates"],
)
async def test_send_numbers_online_accepts_every_documented_form(
    api: httpx.AsyncClient, payload: dict[str, Any]
) -> None:
    response = await api.post(SEND, json=payload)
    assert response.json() == {"response": 1, "ids": {NG1: 1001}}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "ERROR_PARAMS"),
        (b"[]", "ERROR_PARAMS"),
        (json.dumps({"numbers": [item(NG1)]}).encode(), "ERROR_PARAMS"),
        (json.dumps({"number": "[broken"}).encode(), "ERROR_PARAMS"),
        (json.dumps({"number": [{"number": NG1}]}).encode(), "ERROR_PARAMS"),
        (json.dumps({"number": [item(NG1), item(NG1)]}).encode(), "ERROR_PARAMS"),
        (json.dumps({"number": [item("234112233445")]}).encode(), "NUMBER_FORMAT_ERROR"),
        (json.dumps({"number": [item("+234 11 223")]}).encode(), "NUMBER_FORMAT_ERROR"),
        (json.dumps({"number": [item(234112233445)]}).encode(), "NUMBER_FORMAT_ERROR"),
        (json.dumps({"number": [item(NG1, date_start="2019-02-20")]}).encode(), "ERROR_DATE"),
        (json.dumps({"number": [item(NG1, date_stop=-5)]}).encode(), "ERROR_DATE"),
    ],
)
async def test_send_numbers_online_refusals(
    api: httpx.AsyncClient, standin: OnlineSimStandIn, body: bytes, code: str
) -> None:
    response = await api.post(SEND, content=body, headers={"content-type": "application/json"})
    assert (response.status_code, response.json()) == (400, {"response": code})
    assert standin.state.online == {}


@pytest.mark.parametrize("where", ["query", "body"])
async def test_dry_run_validates_and_changes_nothing(
    api: httpx.AsyncClient, standin: OnlineSimStandIn, where: str
) -> None:
    await put_online(api, NG1)
    payload: dict[str, Any] = {"number": [item(NG2)]}
    params = {"test": "test1"} if where == "query" else None
    if where == "body":
        payload["test"] = "test1"
    dry = await api.post(SEND, json=payload, params=params)
    bad = await api.post(SEND, json={"number": [item("+0")], "test": "test1"})
    assert dry.json() == {"response": 1, "ids": {NG2: 1002, NG1: None}}
    assert bad.json() == {"response": "NUMBER_FORMAT_ERROR"}
    assert standin.state.online_view()["ids"] == {NG1: 1001}
    assert await put_online(api, NG2) == {NG2: 1002, NG1: None}


# -- addMessage ---------------------------------------------------------------------------


async def test_add_message_by_number_and_by_id_is_recorded_with_receipt_times(
    api: httpx.AsyncClient, standin: OnlineSimStandIn
) -> None:
    ids = await put_online(api, NG1, NG2)
    before_wall, before_mono = time.time(), time.monotonic()
    by_number = await api.post(ADD, json=message())
    by_id_payload = {
        k: v for k, v in message(id=ids[NG2], date=1546934790).items() if k != "number"
    }
    by_id = await api.post(ADD, json=by_id_payload)
    assert by_number.json() == by_id.json() == {"response": 1}
    first, second = standin.state.messages
    assert (first.number, first.number_id, first.sender, first.text, first.date) == (
        NG1,
        1001,
        "VKcom",
        "VKcom 111111",
        1546934787,
    )
    assert (second.number, second.number_id, second.date) == (NG2, 1002, 1546934790)
    assert before_wall <= first.received_at <= time.time()
    assert before_mono <= first.received_monotonic <= second.received_monotonic


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"from": "VKcom", "message": "x", "date": "1546934787"}, "ERROR_PARAMS"),
        (message(**{"from": ""}), "ERROR_PARAMS"),
        ({k: v for k, v in message().items() if k != "message"}, "ERROR_PARAMS"),
        ({k: v for k, v in message().items() if k != "date"}, "ERROR_PARAMS"),
        (message(number="234112233445"), "NUMBER_FORMAT_ERROR"),
        (message(date="yesterday"), "ERROR_DATE"),
        (message(number=NG3), "NO_NUMBER"),
        ({k: v for k, v in message().items() if k != "number"} | {"id": 999}, "NO_NUMBER"),
        (message(id=1002), "NO_NUMBER"),  # number and id name different numbers
    ],
    ids=[
        "no-number-or-id",
        "empty-from",
        "no-message",
        "no-date",
        "bad-number",
        "bad-date",
        "number-not-online",
        "id-not-online",
        "number-id-disagree",
    ],
)
async def test_add_message_refusals(
    api: httpx.AsyncClient, standin: OnlineSimStandIn, payload: dict[str, Any], code: str
) -> None:
    await put_online(api, NG1, NG2)
    response = await api.post(ADD, json={k: v for k, v in payload.items() if v is not None})
    assert (response.status_code, response.json()) == (400, {"response": code})
    assert standin.state.messages == []


# -- takeOffNumbers -----------------------------------------------------------------------


async def test_take_off_numbers_lists_online_numbers_that_earned_the_sum(
    api: httpx.AsyncClient, control: httpx.AsyncClient
) -> None:
    await api.post(SEND, json={"number": [item(NG1, balance=100), item(NG2)]})
    table = {NG1: 75.5, NG2: 20, NG3: 500}  # NG3 earned most but is not online
    assert (await control.post("/earnings", json=table)).status_code == 200
    at_50 = await api.get(TAKE_OFF, params={"sum": "50", "date": "1546934787"})
    at_10 = await api.get(TAKE_OFF, params={"sum": "10"})
    assert at_50.json() == {
        "response": 1,
        "list": [{"number": NG1, "id": "1001", "sum": "75.5", "country": "234", "balance": "100"}],
    }
    assert [entry["number"] for entry in at_10.json()["list"]] == [NG1, NG2]


@pytest.mark.parametrize("params", [{}, {"sum": "lots"}, {"sum": "50", "date": "today"}])
async def test_take_off_numbers_without_a_valid_sum_is_error_params(
    api: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await api.get(TAKE_OFF, params=params)
    assert (response.status_code, response.json()) == (400, {"response": "ERROR_PARAMS"})


async def test_earnings_from_the_constructor() -> None:
    standin = OnlineSimStandIn(key=KEY, takeoff={NG1: 60.0})
    await standin.start()
    try:
        async with http_client(standin.url, headers=AUTH) as client:
            await put_online(client, NG1)
            response = await client.get(TAKE_OFF, params={"sum": "50"})
    finally:
        await standin.stop()
    assert response.json()["list"][0]["sum"] == "60"


# -- faults -------------------------------------------------------------------------------


async def statuses(api: httpx.AsyncClient, count: int) -> list[int]:
    return [(await api.get(TAKE_OFF, params={"sum": "1"})).status_code for _ in range(count)]


async def test_error_rate_is_reproducible_with_its_seed(
    api: httpx.AsyncClient, control: httpx.AsyncClient, standin: OnlineSimStandIn
) -> None:
    await control.post("/faults", json={"error_rate": 0.5, "seed": 7})
    first = await statuses(api, 30)
    await control.post("/faults", json={"seed": 7})
    second = await statuses(api, 30)
    assert first == second
    assert set(first) <= {200, 500, 502, 503}
    assert 200 in first
    assert len(set(first) - {200}) >= 2
    assert {r.fault for r in standin.state.requests if r.status != 200} == {"error_rate"}


async def test_error_rate_one_answers_gateway_pages(
    api: httpx.AsyncClient, standin: OnlineSimStandIn
) -> None:
    await standin.set_faults(error_rate=1.0)
    response = await api.post(SEND, json={"number": []})
    assert response.status_code in (500, 502, 503)
    assert response.headers["content-type"].startswith("text/html")
    assert standin.state.online == {}


async def test_status_429_with_retry_after(
    api: httpx.AsyncClient, standin: OnlineSimStandIn
) -> None:
    await standin.set_faults(status_429_rate=1.0, retry_after=3)
    response = await api.get(TAKE_OFF, params={"sum": "1"})
    assert (response.status_code, response.headers["retry-after"]) == (429, "3")


async def test_latency_is_added_and_recorded(
    api: httpx.AsyncClient, standin: OnlineSimStandIn
) -> None:
    await standin.set_faults(latency=0.2)
    started = time.monotonic()
    response = await api.get(TAKE_OFF, params={"sum": "1"})
    elapsed = time.monotonic() - started
    (record,) = standin.state.requests
    assert response.status_code == 200
    assert record.latency_added == 0.2
    assert record.answered_monotonic is not None
    assert record.answered_monotonic - record.received_monotonic >= 0.2
    assert 0.2 <= elapsed < 5


async def test_down_refuses_connections_then_comes_back_on_the_same_url(
    api: httpx.AsyncClient, control: httpx.AsyncClient, standin: OnlineSimStandIn
) -> None:
    await put_online(api, NG1)  # a pooled keep-alive connection exists now
    down = await control.post("/faults", json={"down": True})
    with pytest.raises(httpx.TransportError):  # the pooled connection is reset
        await api.get(TAKE_OFF, params={"sum": "1"})
    async with http_client(standin.url, headers=AUTH) as fresh:
        with pytest.raises(httpx.ConnectError):
            await fresh.get(TAKE_OFF, params={"sum": "1"})
        online_while_down = await control.get("/online")
        up = await control.post("/faults", json={"down": False})
        back = await fresh.get(TAKE_OFF, params={"sum": "1"})
    assert down.json()["faults"]["down"] is True
    assert up.json()["faults"]["down"] is False
    assert online_while_down.json()["ids"] == {NG1: 1001}
    assert back.status_code == 200


async def test_down_cuts_a_request_waiting_out_its_latency(
    api: httpx.AsyncClient, standin: OnlineSimStandIn
) -> None:
    await standin.set_faults(latency=60.0)
    pending = asyncio.create_task(api.get(TAKE_OFF, params={"sum": "1"}))
    async with asyncio.timeout(5):
        await standin.wait_until(lambda state: len(state.requests) == 1)
    await standin.set_faults(down=True)
    with pytest.raises(httpx.TransportError):
        await asyncio.wait_for(pending, timeout=5)
    assert standin.state.requests[0].fault == "down"


async def test_down_cannot_be_set_through_the_api_listener(
    standin: OnlineSimStandIn,
) -> None:
    async with http_client(standin.url) as client:
        response = await client.post("/_standin/faults", json={"down": True})
    assert response.status_code == 400
    assert "down" in response.json()["error"]
    assert standin.faults.down is False


async def test_reset_cuts_the_connection_without_an_answer(
    api: httpx.AsyncClient, standin: OnlineSimStandIn
) -> None:
    await standin.set_faults(reset_rate=1.0)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await api.post(SEND, json={"number": [item(NG1)]})
    (record,) = standin.state.requests
    assert (record.fault, record.status, record.answer) == ("reset", None, None)
    assert standin.state.online == {}
    await standin.set_faults(reset_rate=0.0)
    assert (await api.get(TAKE_OFF, params={"sum": "1"})).status_code == 200


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ACCOUNT_BLOCKED", 403),
        ("API_ACCESS_DISABLED", 403),
        ("API_ACCESS_IP", 403),
        ("ERROR_WRONG_KEY", 401),
        ("ERROR_NO_KEY", 401),
    ],
)
async def test_forced_account_faults(
    api: httpx.AsyncClient, control: httpx.AsyncClient, code: str, status: int
) -> None:
    await control.post("/faults", json={"force": code})
    forced = await api.post(SEND, json={"number": [item(NG1)]})
    unknown_path = await api.get("/api/resellers/unknown")
    await control.post("/faults", json={"clear": True})
    cleared = await api.post(SEND, json={"number": [item(NG1)]})
    assert (forced.status_code, forced.json()) == (status, {"response": code})
    assert unknown_path.status_code == 405
    assert cleared.status_code == 200


@pytest.mark.parametrize(
    ("changes", "setting"),
    [
        ({"error_rate": 1.5}, "error_rate"),
        ({"latency": -1}, "latency"),
        ({"force": "NO_NUMBER"}, "force"),
        ({"error_body": "xml"}, "error_body"),
        ({"down": "yes"}, "down"),
        ({"flood": True}, "faults"),
        ({"seed": "seven"}, "seed"),
    ],
)
async def test_bad_fault_settings_are_refused_by_name(
    control: httpx.AsyncClient, standin: OnlineSimStandIn, changes: dict[str, Any], setting: str
) -> None:
    response = await control.post("/faults", json=changes)
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"{setting}: ")
    assert standin.faults == Faults()


async def test_a_port_in_use_is_an_error_naming_the_address(standin: OnlineSimStandIn) -> None:
    port = int(standin.url.rsplit(":", 1)[1])
    second = OnlineSimStandIn(key=KEY)
    with pytest.raises(EmulatorError, match=f"listen: cannot listen on http://127.0.0.1:{port}"):
        await second.start(port=port)
    assert await second.start() != standin.url  # nothing was left half-started
    await second.stop()


def test_faults_keep_the_bad_value_on_the_error() -> None:
    with pytest.raises(EmulatorError) as caught:
        Faults(status_429_rate=2)
    assert (caught.value.setting, caught.value.raw) == ("status_429_rate", 2)


# -- control and the request log ----------------------------------------------------------


async def test_request_log_and_record_file_never_hold_the_key(tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    standin = OnlineSimStandIn(key=KEY, record_path=record)
    await standin.start()
    try:
        async with http_client(standin.url, headers=AUTH) as client:
            await put_online(client, NG1)
            await client.post(ADD, json=message(message=f"the key is {KEY}"))
            await client.get(TAKE_OFF, params={"sum": "1", "apikey": KEY})
            await client.get(f"/api/{KEY}")
            logged = (await client.get("/_standin/requests")).text
            since_two = (await client.get("/_standin/requests", params={"since": 2})).json()
    finally:
        await standin.stop()
    lines = record.read_text().splitlines()
    assert len(lines) == 4
    assert json.loads(lines[0])["path"] == SEND
    assert [r["seq"] for r in since_two["requests"]] == [3, 4]
    assert ["authorization", "<redacted>"] in json.loads(lines[0])["headers"]
    assert KEY not in logged
    assert KEY not in record.read_text()


async def test_control_reads_online_messages_and_resets(
    api: httpx.AsyncClient, control: httpx.AsyncClient, standin: OnlineSimStandIn
) -> None:
    await api.post(SEND, json={"number": [item(NG1, port_id="usb1-slot0")]})
    await api.post(ADD, json=message())
    online = (await control.get("/online")).json()
    messages = (await control.get("/messages")).json()["messages"]
    reset = await control.post("/reset")
    after = (await control.get("/online")).json()
    unknown = await control.get("/nothing")
    assert online["numbers"][0]["port_id"] == "usb1-slot0"
    assert online["numbers"][0]["id"] == 1001
    assert [(m["number"], m["text"]) for m in messages] == [(NG1, "VKcom 111111")]
    assert reset.status_code == 200
    assert after == {"numbers": [], "ids": {}}
    assert list(standin.state.requests) == []
    assert unknown.status_code == 404
    assert await put_online(api, NG1) == {NG1: 1002}
    await api.post(ADD, json=message())
    after_reset = (await control.get("/messages", params={"since": 1})).json()["messages"]
    assert [m["seq"] for m in after_reset] == [2]


# -- the webhook caller -------------------------------------------------------------------


class TinyWebhook:
    """A one-route HTTP/1.1 server answering every request with a set status and body."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b""
        self.requests: list[str] = []
        self.arrived = asyncio.Condition()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/list?secret=s3"

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (self.status, len(self.body), self.body)
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        async with self.arrived:
            self.requests.append(head.decode().split("\r\n")[0])
            self.arrived.notify_all()


@pytest.fixture
async def webhook() -> AsyncIterator[TinyWebhook]:
    server = TinyWebhook()
    yield server
    await server.stop()


async def test_webhook_calls_on_demand_record_what_came_back(webhook: TinyWebhook) -> None:
    url = await webhook.start()
    standin = OnlineSimStandIn(key=KEY, webhook_url=url, webhook_interval=3600)
    await standin.start()
    answers = [
        (200, json.dumps({"list": [item(NG1, operator="62130")]}).encode()),
        (200, json.dumps({"list": [item("not a number")]}).encode()),
        (200, json.dumps({"numbers": []}).encode()),
        (200, b"<html>"),
        (500, b"{}"),
    ]
    calls = []
    try:
        async with http_client(f"{standin.control_url}/_standin") as control:
            for status, body in answers:
                webhook.status, webhook.body = status, body
                calls.append((await control.post("/webhook/call")).json())
            listed = (await control.get("/webhook")).json()
    finally:
        await standin.stop()
    assert webhook.requests[0] == "GET /list?secret=s3 HTTP/1.1"
    assert calls[0]["numbers"] == [item(NG1, operator="62130")]
    assert calls[0]["error"] is None
    assert [call["error"] for call in calls[1:]] == [
        "NUMBER_FORMAT_ERROR",
        'body is not an object with "list"',
        "body is not JSON",
        "HTTP 500",
    ]
    assert [call["status"] for call in calls] == [200, 200, 200, 200, 500]
    assert listed["url"] == url
    assert [call["seq"] for call in listed["calls"]] == [1, 2, 3, 4, 5]


async def test_webhook_is_called_every_interval(webhook: TinyWebhook) -> None:
    url = await webhook.start()
    webhook.body = json.dumps({"list": []}).encode()
    standin = OnlineSimStandIn(key=KEY, webhook_url=url, webhook_interval=0.05)
    await standin.start()
    try:
        async with webhook.arrived:
            await asyncio.wait_for(
                webhook.arrived.wait_for(lambda: len(webhook.requests) >= 2), timeout=5
            )
    finally:
        await standin.stop()
    assert len(standin.state.webhook_calls) >= 2
    assert standin.state.webhook_calls[0].numbers == []


async def test_webhook_unreachable_is_recorded_not_raised(webhook: TinyWebhook) -> None:
    url = await webhook.start()
    await webhook.stop()
    webhook.server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    standin = OnlineSimStandIn(key=KEY, webhook_url=url)
    await standin.start()
    try:
        call = await standin.call_webhook()
    finally:
        await standin.stop()
    assert call is not None
    assert call.status is None
    assert call.error is not None
    assert call.error.startswith("ConnectError")


def test_webhook_url_must_be_http() -> None:
    with pytest.raises(EmulatorError) as caught:
        OnlineSimStandIn(key=KEY, webhook_url="ftp://example.org/list")
    assert caught.value.setting == "webhook"
    assert caught.value.raw == "ftp://example.org/list"


async def test_without_webhook_the_control_call_is_409(control: httpx.AsyncClient) -> None:
    response = await control.post("/webhook/call")
    assert response.status_code == 409


# -- the command --------------------------------------------------------------------------


async def test_cli_prints_ready_line_serves_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    record = tmp_path / "cli.jsonl"
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "agent.cli", "emulate", "onlinesim"),
        *("--listen", "127.0.0.1:0", "--key", KEY, "--record", str(record)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        ready = (await asyncio.wait_for(process.stdout.readline(), timeout=20)).decode()
        fields = dict(part.split("=", 1) for part in ready.split() if "=" in part)
        async with http_client(fields["url"], headers=AUTH) as client:
            response = await client.post(SEND, json={"number": [item(NG1)]})
        process.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(process.wait(), timeout=20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert ready.startswith("onlinesim stand-in ready url=http://127.0.0.1:")
    assert fields["control"].startswith("http://127.0.0.1:")
    assert response.json() == {"response": 1, "ids": {NG1: 1001}}
    assert returncode == 0
    assert len(record.read_text().splitlines()) == 1
