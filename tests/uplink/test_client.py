"""The OnlineSim client against the real stand-in on 127.0.0.1: every answer of the three
methods mapped to the agent's error tree, every fault of the link, and the key kept secret.

Faults are set through the stand-in's HTTP control API, as an operator or a benchmark would.
One stand-in serves the whole module (starting and stopping the stand-in costs time); each
test begins from an empty stand-in with no faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio

from agent import __version__
from agent.config import OnlineSimConfig
from agent.emulate.onlinesim import OnlineSimStandIn
from agent.errors import (
    UplinkAccountError,
    UplinkError,
    UplinkNoNumber,
    UplinkRejected,
    UplinkTransient,
)
from agent.uplink.client import (
    MAX_ANSWER,
    NumberItem,
    OnlineSimClient,
    TakeOffItem,
    UplinkSettings,
    parse_ids,
    parse_retry_after,
    raise_for_answer,
)
from agent.uplink.policy import retrying, transient_backoff

KEY = "sk-live-7f3a9c1e5b2d4f6a8c0e"
ALPHA = NumberItem(number="+2348031234567", country_id=234, date_start=1_700_000_000)
BRAVO = NumberItem(
    number="+2348037654321",
    country_id=234,
    date_start=1_700_000_100,
    operator="62130",
    balance=100,
    port_id="hub1-slot2",
)

MakeClient = Callable[..., OnlineSimClient]
Control = Callable[..., Awaitable[Any]]


# Every async test runs in the module's loop, where the shared stand-in lives.
on_standin = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_standin() -> AsyncIterator[OnlineSimStandIn]:
    server = OnlineSimStandIn(key=KEY)
    await server.start("127.0.0.1", 0)
    yield server
    await server.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def standin(shared_standin: OnlineSimStandIn) -> OnlineSimStandIn:
    await shared_standin.set_faults(clear=True)
    shared_standin.state.reset()
    return shared_standin


@pytest_asyncio.fixture(loop_scope="module")
async def make_client(standin: OnlineSimStandIn) -> AsyncIterator[MakeClient]:
    """Clients on the stand-in; keyword arguments override the settings."""
    clients: list[OnlineSimClient] = []

    def make(**overrides: Any) -> OnlineSimClient:
        settings: dict[str, Any] = {
            "base_url": f"{standin.url}/api/resellers",
            "api_key": KEY,
            "connect_timeout": 2.0,
            "read_timeout": 5.0,
            "write_timeout": 2.0,
            "pool_timeout": 2.0,
        } | overrides
        client = OnlineSimClient(UplinkSettings(**settings))
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest_asyncio.fixture(loop_scope="module")
async def client(make_client: MakeClient) -> OnlineSimClient:
    return make_client()


@pytest_asyncio.fixture(loop_scope="module")
async def control(standin: OnlineSimStandIn) -> AsyncIterator[Control]:
    """POST to the stand-in's control API: ``await control("faults", error_rate=1)``."""
    async with httpx.AsyncClient(base_url=f"{standin.control_url}/_standin/") as http:

        async def post(route: str, **payload: Any) -> Any:
            answer = await http.post(route, json=payload)
            assert answer.status_code == 200, answer.text
            return answer.json()

        yield post


def every_method(client: OnlineSimClient) -> list[Callable[[], Awaitable[Any]]]:
    """One valid call of each API method, to show an answer is mapped the same for all."""
    return [
        lambda: client.send_numbers_online([ALPHA]),
        lambda: client.add_message(number=ALPHA.number, sender="x", text="y", date=1),
        lambda: client.take_off_numbers(sum_rub=50, since=None),
    ]


@on_standin
async def test_numbers_online_answers_ids_for_added_and_null_for_removed(
    client: OnlineSimClient, standin: OnlineSimStandIn
) -> None:
    first = await client.send_numbers_online([ALPHA, BRAVO])
    assert set(first) == {ALPHA.number, BRAVO.number}
    assert all(isinstance(value, int) for value in first.values())

    second = await client.send_numbers_online([BRAVO])
    assert second == {ALPHA.number: None}
    assert standin.state.online_view()["ids"] == {BRAVO.number: first[BRAVO.number]}

    sent = standin.state.requests[-1]
    assert sent.method == "POST"
    assert sent.path == "/api/resellers/sendNumbersOnline"
    headers = dict(sent.headers)
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert headers["user-agent"] == f"simedge/{__version__}"
    assert json.loads(sent.body) == {
        "number": [
            {
                "number": "+2348037654321",
                "country_id": 234,
                "date_start": 1_700_000_100,
                "operator": 62130,
                "balance": 100,
                "port_id": "hub1-slot2",
            }
        ]
    }


@on_standin
async def test_numbers_online_dry_run_changes_nothing(
    client: OnlineSimClient, standin: OnlineSimStandIn
) -> None:
    ids = await client.send_numbers_online([ALPHA], dry_run=True)
    assert list(ids) == [ALPHA.number]
    assert standin.state.online == {}
    assert json.loads(standin.state.requests[-1].body)["test"] == "test1"


@on_standin
async def test_add_message_by_number_and_by_id(
    client: OnlineSimClient, standin: OnlineSimStandIn
) -> None:
    ids = await client.send_numbers_online([ALPHA, BRAVO])
    await client.add_message(
        number=ALPHA.number, sender="VKcom", text="code 111111", date=1_700_000_500
    )
    await client.add_message(
        number_id=ids[BRAVO.number], sender="Telegram", text="Код: 22222", date=1_700_000_600
    )
    received = [(m.number, m.sender, m.text, m.date) for m in standin.state.messages]
    assert received == [
        (ALPHA.number, "VKcom", "code 111111", 1_700_000_500),
        (BRAVO.number, "Telegram", "Код: 22222", 1_700_000_600),
    ]
    assert json.loads(standin.state.requests[-1].body) == {
        "from": "Telegram",
        "message": "Код: 22222",
        "date": "1700000600",
        "id": ids[BRAVO.number],
    }


@on_standin
async def test_take_off_numbers_lists_earners_with_typed_fields(
    client: OnlineSimClient, standin: OnlineSimStandIn, control: Control
) -> None:
    await client.send_numbers_online([ALPHA, BRAVO])
    await control("earnings", **{ALPHA.number: 75.5, BRAVO.number: 10})
    taken = await client.take_off_numbers(sum_rub=50, since=1_699_000_000)
    online_ids = standin.state.online_view()["ids"]
    assert taken == [
        TakeOffItem(number=ALPHA.number, id=online_ids[ALPHA.number], sum=75.5, country="234")
    ]
    assert standin.state.requests[-1].query == {"sum": "50", "date": "1699000000"}
    assert await client.take_off_numbers(sum_rub=100, since=None) == []


@on_standin
@pytest.mark.parametrize(("key", "code"), [("", "ERROR_NO_KEY"), ("sk-other", "ERROR_WRONG_KEY")])
@pytest.mark.parametrize("error_body", ["json", "text"])
async def test_401_is_an_account_error(
    make_client: MakeClient, control: Control, key: str, code: str, error_body: str
) -> None:
    await control("faults", error_body=error_body)
    client = make_client(api_key=key)
    for call in every_method(client):
        with pytest.raises(UplinkAccountError) as caught:
            await call()
        assert (caught.value.status, caught.value.code) == (401, code)
        assert code in caught.value.body


@on_standin
@pytest.mark.parametrize("code", ["ACCOUNT_BLOCKED", "API_ACCESS_DISABLED", "API_ACCESS_IP"])
@pytest.mark.parametrize("error_body", ["json", "text"])
async def test_403_is_an_account_error(
    client: OnlineSimClient, control: Control, code: str, error_body: str
) -> None:
    await control("faults", force=code, error_body=error_body)
    for call in every_method(client):
        with pytest.raises(UplinkAccountError) as caught:
            await call()
        assert (caught.value.status, caught.value.code) == (403, code)


@on_standin
async def test_wrong_base_path_is_405_account_error(
    make_client: MakeClient, standin: OnlineSimStandIn
) -> None:
    client = make_client(base_url=f"{standin.url}/api/reseller")
    with pytest.raises(UplinkAccountError) as caught:
        await client.take_off_numbers(sum_rub=50, since=None)
    assert (caught.value.status, caught.value.code) == (405, "REQUEST_NOT_FOUND")
    assert caught.value.body == '{"response": "REQUEST_NOT_FOUND"}'


REFUSED_CALLS: list[tuple[str, Callable[[OnlineSimClient], Awaitable[Any]], type, str]] = [
    (
        "addMessage to a number not online",
        lambda c: c.add_message(number="+2340000000001", sender="x", text="y", date=1),
        UplinkNoNumber,
        "NO_NUMBER",
    ),
    (
        "addMessage to a national number",
        lambda c: c.add_message(number="08031234567", sender="x", text="y", date=1),
        UplinkRejected,
        "NUMBER_FORMAT_ERROR",
    ),
    (
        "addMessage without a sender",
        lambda c: c.add_message(number=ALPHA.number, sender="", text="y", date=1),
        UplinkRejected,
        "ERROR_PARAMS",
    ),
    (
        "sendNumbersOnline with a negative date_start",
        lambda c: c.send_numbers_online(
            [NumberItem(number="+2348030000000", country_id=234, date_start=-1)]
        ),
        UplinkRejected,
        "ERROR_DATE",
    ),
    (
        "sendNumbersOnline with a number twice",
        lambda c: c.send_numbers_online([ALPHA, ALPHA]),
        UplinkRejected,
        "ERROR_PARAMS",
    ),
    (
        "takeOffNumbers with a negative sum",
        lambda c: c.take_off_numbers(sum_rub=-1, since=None),
        UplinkRejected,
        "ERROR_PARAMS",
    ),
]


@on_standin
@pytest.mark.parametrize("error_body", ["json", "text"])
@pytest.mark.parametrize(
    ("call", "kind", "code"),
    [case[1:] for case in REFUSED_CALLS],
    ids=[case[0] for case in REFUSED_CALLS],
)
async def test_400_codes_of_each_method(
    client: OnlineSimClient,
    control: Control,
    error_body: str,
    call: Callable[[OnlineSimClient], Awaitable[Any]],
    kind: type[UplinkError],
    code: str,
) -> None:
    await control("faults", error_body=error_body)
    await client.send_numbers_online([ALPHA])
    with pytest.raises(kind) as caught:
        await call(client)
    error = caught.value
    assert type(error) is kind
    assert (error.status, error.code) == (400, code)
    assert error.body == (code if error_body == "text" else json.dumps({"response": code}))
    assert code in str(error)


@on_standin
async def test_server_errors_are_transient(client: OnlineSimClient, control: Control) -> None:
    await control("faults", error_rate=1)
    statuses = set()
    for _ in range(12):
        with pytest.raises(UplinkTransient) as caught:
            await client.take_off_numbers(sum_rub=50, since=None)
        assert caught.value.code == f"HTTP_{caught.value.status}"
        assert "<html>" in caught.value.body
        statuses.add(caught.value.status)
    assert statuses <= {500, 502, 503}
    assert len(statuses) > 1


@on_standin
async def test_429_is_transient_and_keeps_retry_after(
    client: OnlineSimClient, control: Control
) -> None:
    await control("faults", status_429_rate=1, retry_after=7)
    with pytest.raises(UplinkTransient) as caught:
        await client.add_message(number=ALPHA.number, sender="x", text="y", date=1)
    assert (caught.value.status, caught.value.retry_after) == (429, 7)


@on_standin
async def test_latency_beyond_the_read_timeout_is_transient(
    make_client: MakeClient, control: Control
) -> None:
    await control("faults", latency=5)
    client = make_client(read_timeout=0.05)
    with pytest.raises(UplinkTransient) as caught:
        await client.send_numbers_online([ALPHA])
    assert caught.value.code == "ReadTimeout"
    assert caught.value.status is None
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)


@on_standin
async def test_api_down_is_transient(client: OnlineSimClient, control: Control) -> None:
    await control("faults", down=True)
    with pytest.raises(UplinkTransient) as caught:
        await client.take_off_numbers(sum_rub=50, since=None)
    assert caught.value.code == "ConnectError"
    await control("faults", down=False)
    assert await client.take_off_numbers(sum_rub=50, since=None) == []


@on_standin
async def test_reset_mid_request_is_transient(client: OnlineSimClient, control: Control) -> None:
    await client.take_off_numbers(sum_rub=50, since=None)  # a pooled connection to reuse
    await control("faults", reset_rate=1)
    with pytest.raises(UplinkTransient) as caught:
        await client.add_message(number=ALPHA.number, sender="x", text="y", date=1)
    assert isinstance(caught.value.__cause__, httpx.TransportError)
    assert caught.value.code in {"RemoteProtocolError", "ReadError"}


@on_standin
async def test_the_key_never_shows_in_errors_or_logs(
    make_client: MakeClient,
    client: OnlineSimClient,
    control: Control,
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors: list[UplinkError] = []
    caplog.set_level(logging.DEBUG)
    for faults, call_client in [
        ({"force": "API_ACCESS_IP"}, client),
        ({"force": None, "error_rate": 1}, client),
        ({"error_rate": 0, "latency": 5}, make_client(read_timeout=0.05)),
        ({"latency": 0, "reset_rate": 1}, client),
        ({"reset_rate": 0, "down": True}, client),
    ]:
        await control("faults", **faults)
        with pytest.raises(UplinkError) as caught:
            await call_client.send_numbers_online([ALPHA])
        errors.append(caught.value)
    assert len(errors) == 5
    for error in errors:
        for text in (str(error), repr(error), repr(error.__cause__), error.body):
            assert KEY not in text
    assert KEY not in repr(client)
    assert KEY not in repr(UplinkSettings(base_url="http://x", api_key=KEY))
    assert caplog.records, "httpx and the client should have logged something"
    for record in caplog.records:
        assert KEY not in record.getMessage()


@on_standin
async def test_a_retried_call_succeeds_once_the_fault_clears(
    client: OnlineSimClient, standin: OnlineSimStandIn, control: Control
) -> None:
    await control("faults", error_rate=1)
    delays: list[float] = []

    async def sleep_and_heal(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 3:
            await control("faults", clear=True)

    policy = transient_backoff(initial=1, cap=300, jitter=0)
    ids = await retrying(policy, sleep=sleep_and_heal)(client.send_numbers_online, [ALPHA])
    assert list(ids) == [ALPHA.number]
    assert delays == [1, 2, 4]
    assert [r.fault for r in standin.state.requests] == ["error_rate"] * 3 + [None]


@on_standin
async def test_a_rejection_is_not_retried(
    client: OnlineSimClient, standin: OnlineSimStandIn
) -> None:
    delays: list[float] = []

    async def record_sleep(seconds: float) -> None:
        delays.append(seconds)

    with pytest.raises(UplinkNoNumber):
        await retrying(transient_backoff(), sleep=record_sleep)(
            client.add_message, number=ALPHA.number, sender="x", text="y", date=1
        )
    assert delays == []
    assert len(standin.state.requests) == 1


def test_local_misuse_is_refused_before_sending() -> None:
    with pytest.raises(UplinkRejected, match=r"NumberItem\.number '2348031234567'") as bad_number:
        NumberItem(number="2348031234567", country_id=234, date_start=1)
    assert bad_number.value.body == "2348031234567"
    assert bad_number.value.status is None
    with pytest.raises(UplinkRejected, match="port_id"):
        NumberItem(number=ALPHA.number, country_id=234, date_start=1, port_id="x" * 101)


@on_standin
async def test_add_message_needs_exactly_one_address(client: OnlineSimClient) -> None:
    with pytest.raises(UplinkRejected, match="exactly one"):
        await client.add_message(sender="x", text="y", date=1)
    with pytest.raises(UplinkRejected, match="exactly one"):
        await client.add_message(number=ALPHA.number, number_id=5, sender="x", text="y", date=1)


def answer(status: int, body: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, text=body, headers=headers)


@pytest.mark.parametrize(
    ("response", "kind", "code"),
    [
        # A captive portal or proxy answering 200 with its own page: not OnlineSim.
        (answer(200, "<html>Welcome to Hotel WiFi</html>"), UplinkTransient, "UNPARSEABLE_ANSWER"),
        (answer(200, "OK"), UplinkTransient, "UNPARSEABLE_ANSWER"),
        (answer(200, '{"response": "NO_NUMBER"}'), UplinkNoNumber, "NO_NUMBER"),
        (answer(200, "ERROR_WRONG_KEY"), UplinkAccountError, "ERROR_WRONG_KEY"),
        (answer(200, '{"response": "ERROR_SOMETHING_NEW"}'), UplinkRejected, "ERROR_SOMETHING_NEW"),
        (answer(404, "Not Found"), UplinkRejected, "HTTP_404"),
        (answer(418, "TEAPOT"), UplinkRejected, "TEAPOT"),
        (answer(400, '{"response": 1}'), UplinkRejected, "HTTP_400"),
        (answer(403, "<html>Forbidden</html>"), UplinkAccountError, "HTTP_403"),
        (answer(503, '{"response": "MAINTENANCE"}'), UplinkTransient, "MAINTENANCE"),
        (answer(302, "", Location="http://portal.local/"), UplinkTransient, "HTTP_302"),
        (answer(308, "", Location="https://elsewhere/"), UplinkAccountError, "HTTP_308"),
    ],
)
def test_answers_outside_the_documents(
    response: httpx.Response, kind: type[UplinkError], code: str
) -> None:
    with pytest.raises(kind) as caught:
        raise_for_answer("addMessage", response, secret=KEY)
    assert type(caught.value) is kind
    assert (caught.value.code, caught.value.status) == (code, response.status_code)


def test_a_body_echoing_the_key_is_redacted() -> None:
    echo = answer(400, json.dumps({"response": "ERROR_PARAMS", "got": f"Bearer {KEY}"}))
    with pytest.raises(UplinkRejected) as caught:
        raise_for_answer("addMessage", echo, secret=KEY)
    assert KEY not in caught.value.body
    assert "<api-key>" in caught.value.body


@pytest.mark.parametrize(
    ("ids_answer", "expected"),
    [
        ('{"response": 1, "ids": []}', {}),
        ('{"response": "1", "ids": {"+2348031234567": "1042"}}', {"+2348031234567": 1042}),
    ],
)
def test_php_shaped_successes_are_read(ids_answer: str, expected: dict[str, int]) -> None:
    assert (
        parse_ids("sendNumbersOnline", raise_for_answer("x", answer(200, ids_answer), secret=KEY))
        == expected
    )


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_header_forms(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=1445412480.0) == seconds


def test_settings_from_the_onlinesim_table() -> None:
    table = OnlineSimConfig(
        base_url="https://onlinesim.example/api/resellers", api_key=KEY, timeout=7
    )
    settings = UplinkSettings.from_config(table)
    assert settings.base_url == table.base_url
    assert settings.api_key == KEY
    timeouts = (
        settings.connect_timeout,
        settings.read_timeout,
        settings.write_timeout,
        settings.pool_timeout,
        settings.call_timeout,  # the whole call too: "abandoned and retried" after it
    )
    assert timeouts == (7, 7, 7, 7, 7)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def client_served_by(serve: Handler, **settings: Any) -> AsyncIterator[OnlineSimClient]:
    """A client of a scripted server on loopback (``serve`` answers each connection)."""
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with OnlineSimClient(
            UplinkSettings(base_url=f"http://127.0.0.1:{port}/api", **settings)
        ) as client:
            yield client
    finally:
        server.close()
        await server.wait_closed()


async def test_an_answer_that_trickles_in_is_cut_at_the_whole_call_timeout() -> None:
    # Every byte comes well within the read timeout, the whole answer never does: without
    # a deadline for the call this holds the SIM's queue for as long as it trickles.
    stop = asyncio.Event()

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        while not stop.is_set():
            writer.write(b" ")
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):  # one byte every 50 ms
                    await stop.wait()
        writer.close()

    started = time.monotonic()
    try:
        async with client_served_by(
            trickle, api_key="k", read_timeout=5.0, call_timeout=0.5
        ) as client:
            with pytest.raises(UplinkTransient) as caught:
                await client.add_message(number="+79161234567", sender="x", text="y", date=1)
    finally:
        stop.set()
    assert caught.value.code == "CallTimeout"
    assert time.monotonic() - started < 3.0  # the 0.5 s deadline, not the trickle's length


async def test_an_endless_answer_is_cut_at_the_answer_bound_with_its_start_kept() -> None:
    # A proxy's or portal's page, or a stream that never ends: the call reads at most
    # MAX_ANSWER bytes, fails as the link's fault and keeps the start (key redacted).
    sent = 0
    served = asyncio.Event()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\nkey=secret-key ")
            while sent < 8 * MAX_ANSWER:  # the client must give up long before this
                writer.write(b"x" * 65536)
                await writer.drain()
                sent += 65536
        except ConnectionError:
            pass
        finally:
            writer.close()
            served.set()

    async with client_served_by(endless, api_key="secret-key") as client:
        with pytest.raises(UplinkTransient) as caught:
            await client.add_message(number="+79161234567", sender="x", text="y", date=1)
        await client.aclose()
        async with asyncio.timeout(10):
            await served.wait()
    assert caught.value.code == "AnswerTooLarge"
    assert caught.value.status == 200
    assert caught.value.body is not None
    assert caught.value.body.startswith("key=<api-key> x")
    assert len(caught.value.body) <= 16 * 1024 + len("<api-key>")
    assert sent < 8 * MAX_ANSWER  # the server was cut off, not read to its end


async def test_a_success_echoing_the_key_is_redacted_before_it_is_kept() -> None:
    # A success is decided on its bytes alone unless it carries the key: then the
    # redacting path reads it, so the malformed list's error body never holds the key.
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            body = b'{"response": 1, "list": "Bearer secret-key"}'
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            await reader.read()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async with client_served_by(echo, api_key="secret-key") as client:
        with pytest.raises(UplinkTransient) as caught:
            await client.take_off_numbers(sum_rub=50, since=None)
    assert caught.value.code == "MALFORMED_ANSWER"
    assert caught.value.body == '{"response": 1, "list": "Bearer <api-key>"}'
