"""The control socket over a real unix socket: answers, refusals, events, slow clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from agent.control.client import ControlClient
from agent.control.protocol import (
    MAX_DEPTH,
    MAX_REQUEST,
    SUBSCRIBER_QUEUE,
    Event,
    EventKind,
    ResetModem,
    SetNumber,
    Subscribe,
    TakeoffDone,
    TakeSnapshot,
    encode_answer,
    handles,
    too_deep,
)
from agent.control.server import OUTPUT_BUFFER, Coalesced, ControlServer
from agent.errors import ControlError
from agent.status import LogEvent, ModemStatus, SiteSnapshot

SMALL = SiteSnapshot(taken_at=1.0)
SMALL_JSON = SMALL.to_json()


class RecordingHandler:
    """The supervisor's role, reduced to recording what it was asked."""

    def __init__(self) -> None:
        self.calls: list[object] = []
        self.release = asyncio.Event()

    @handles(TakeSnapshot)
    async def snapshot(self, request: TakeSnapshot) -> SiteSnapshot:
        self.calls.append(request)
        return SMALL

    @handles(SetNumber)
    async def set_number(self, request: SetNumber) -> str:
        self.calls.append(request)
        return f"{request.iccid} is {request.number}"

    @handles(ResetModem)
    async def reset_modem(self, request: ResetModem) -> str:
        self.calls.append(request)
        if request.slot == "slow":
            await self.release.wait()
            return "slow done"
        if request.slot == "missing":
            raise ControlError("no modem in slot missing")
        if request.slot == "wrong shape":
            return {"not": "a sentence"}  # type: ignore[return-value]
        return f"resetting {request.slot}"

    @handles(TakeoffDone)
    async def takeoff_done(self, request: TakeoffDone) -> str:
        raise RuntimeError("handler bug")


@pytest.fixture
async def served(tmp_path: Path):
    handler = RecordingHandler()
    server = ControlServer(tmp_path / "run" / "control.sock", handler)
    await server.start()
    yield server, handler
    await server.stop()


async def test_request_reaches_the_handler_and_answers(served) -> None:
    server, handler = served
    async with ControlClient(server.path) as client:
        result = await client.call(SetNumber("8970", "+79161234567"))
        assert await client.call(TakeSnapshot()) == SMALL
    assert result == "8970 is +79161234567"
    assert handler.calls == [SetNumber("8970", "+79161234567"), TakeSnapshot()]


async def test_socket_is_group_accessible_only(served) -> None:
    server, _ = served
    assert server.path.stat().st_mode & 0o777 == 0o660


@pytest.mark.parametrize(
    ("op", "arguments", "message"),
    [
        ("reboot_pi", {}, "unknown op 'reboot_pi'"),
        ("reset_modem", {}, "reset_modem.slot: missing"),
        ("reset_modem", {"slot": 3}, "reset_modem.slot: expected str, got 3"),
        ("trace", {"slot": "1", "on": "yes"}, "trace.on: expected bool, got 'yes'"),
        ("retry", {}, "retry: give message_id or all_dead"),
        ("snapshot", {"verbose": True}, "snapshot: unknown argument verbose"),
        ("reset_modem", {"slot": "missing"}, "no modem in slot missing"),
        ("takeoff_done", {"iccid": "1"}, "internal error: RuntimeError('handler bug')"),
        # A handler that answers another shape than the schema says: never sent as is.
        ("reset_modem", {"slot": "wrong shape"}, "reset_modem answered a dict, not str"),
        ("rescan", {}, "rescan is not handled by this agent"),
    ],
)
async def test_refusals_say_why(served, op: str, arguments: dict[str, Any], message: str) -> None:
    server, _ = served
    async with ControlClient(server.path) as client:
        with pytest.raises(ControlError) as caught:
            await client.request(op, **arguments)
        assert message in str(caught.value)
        # The connection is still usable after a refusal.
        assert await client.request("snapshot") == SMALL_JSON


async def test_a_slow_operation_does_not_block_other_requests(served) -> None:
    server, handler = served
    async with ControlClient(server.path) as slow_client, ControlClient(server.path) as client:
        slow = asyncio.create_task(slow_client.request("reset_modem", slot="slow"))
        async with asyncio.timeout(5):
            assert await client.call(TakeSnapshot()) == SMALL
        assert not slow.done()
        handler.release.set()
        async with asyncio.timeout(5):
            assert await slow == "slow done"


async def test_events_reach_subscribers_typed(served) -> None:
    server, _ = served
    modem = ModemStatus(slot="1-1.2", fault="[bold]not markup[/]")
    async with ControlClient(server.path) as client, client.subscribe() as events:
        assert server.subscribers == 1  # registered before the answer
        server.publish(EventKind.MODEM, modem)
        server.publish(EventKind.MESSAGE)
        async with asyncio.timeout(5):
            assert await anext(events) == Event(EventKind.MODEM, modem)
            assert await anext(events) == Event(EventKind.MESSAGE)


async def test_an_event_is_published_only_with_the_data_the_schema_gives_it(served) -> None:
    server, _ = served
    async with ControlClient(server.path) as client, client.subscribe():
        with pytest.raises(TypeError, match="a message event carries no data"):
            server.publish(EventKind.MESSAGE, {"id": 1})
        with pytest.raises(TypeError, match="a modem event carries a ModemStatus, not dict"):
            server.publish(EventKind.MODEM, {"slot": "1-1.2"})


async def test_an_event_the_client_cannot_read_is_taken_as_an_overflow(tmp_path: Path) -> None:
    """An agent newer than the dashboard (or a damaged line): the stream goes on, and the
    reader is told it missed something, as after an overflow."""
    lines = [
        b'{"event": "weather", "data": {"rain": true}}\n',
        b'{"event": "modem", "data": {"slot": 7}}\n',
        b'{"event": "takeoff", "data": {"iccid": "1"}}\n',
        b'{"event": "takeoff", "data": null}\n',
    ]

    async def newer_agent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readline()
            writer.write(encode_answer(0, Subscribe(), None) + b"".join(lines))
            await writer.drain()
            await reader.read()  # until the client leaves
        finally:
            writer.close()

    path = tmp_path / "newer.sock"
    agent = await asyncio.start_unix_server(newer_agent, path=str(path))
    try:
        async with ControlClient(path) as client, client.subscribe() as events:
            async with asyncio.timeout(5):
                received = [await anext(events) for _ in lines]
        overflow = Event(EventKind.OVERFLOW)
        assert received == [overflow, overflow, overflow, Event(EventKind.TAKEOFF)]
    finally:
        agent.close()
        await agent.wait_closed()


async def test_a_stalled_subscriber_overflows_instead_of_holding_the_agent(served) -> None:
    server, _ = served
    reader, writer = await asyncio.open_unix_connection(str(server.path))
    writer.write(b'{"id": 0, "op": "subscribe"}\n')
    await writer.drain()
    assert json.loads(await reader.readline())["ok"] is True  # registered from here on
    assert server.subscribers == 1
    # The client reads nothing while far more events than the queue holds are published:
    # publish() must return at once every time (it never awaits).
    payload = ModemStatus(slot="1-1.1", fault="x" * 1000)
    for _ in range(SUBSCRIBER_QUEUE * 20):
        server.publish(EventKind.MODEM, payload)
    seen_overflow = False
    async with asyncio.timeout(10):
        while not seen_overflow:
            line = await reader.readline()
            assert line, "stream closed before the overflow notice"
            seen_overflow = json.loads(line)["event"] == "overflow"
    writer.close()


async def test_an_oversized_request_is_refused_and_disconnected(served) -> None:
    server, _ = served
    reader, writer = await asyncio.open_unix_connection(str(server.path))
    writer.write(b'{"op": "snapshot", "pad": "' + b"x" * (MAX_REQUEST * 4) + b'"}\n')
    await writer.drain()
    async with asyncio.timeout(5):
        answer = json.loads(await reader.readline())
        assert await reader.readline() == b""  # then the agent closed the connection
    assert answer == {
        "id": None,
        "ok": False,
        "error": f"request line over {MAX_REQUEST:,} bytes: disconnected",
    }
    writer.close()


async def _ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes) -> Any:
    writer.write(line + b"\n")
    await writer.drain()
    async with asyncio.timeout(5):
        return json.loads(await reader.readline())


async def test_deep_nesting_is_refused_before_parsing(served) -> None:
    server, _ = served
    reader, writer = await asyncio.open_unix_connection(str(server.path))
    # 30,000 levels: json.loads alone would raise RecursionError.
    answer = await _ask(reader, writer, b"[" * 30_000 + b"]" * 30_000)
    assert answer["error"] == f"request nested deeper than {MAX_DEPTH} levels"
    nested = b'{"op": "snapshot", "x": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    answer = await _ask(reader, writer, nested)
    assert answer["error"] == "snapshot: unknown argument x"  # at the bound: parsed
    answer = await _ask(reader, writer, nested.replace(b"[", b"[[", 1).replace(b"]", b"]]", 1))
    assert answer["error"] == f"request nested deeper than {MAX_DEPTH} levels"
    # The connection lives on.
    answer = await _ask(reader, writer, b'{"id": 3, "op": "snapshot"}')
    assert answer == {"id": 3, "ok": True, "result": SMALL_JSON}
    writer.close()


def test_brackets_inside_strings_are_not_nesting() -> None:
    assert not too_deep(b'{"name": "[[[[[[[[[[[[", "text": "{{{{{{{{{{"}', 8)
    assert not too_deep(b'{"name": "\\"[[[[[[[[[[[[\\"]"}', 8)
    assert too_deep(b'{"a": [[[[[[[[["\\"]]]]]]]]]}', 8)


BIG = SiteSnapshot(taken_at=1.0, events=(LogEvent(1.0, "info", "agent", "x" * 10_000),))
BIG_LINE = len(encode_answer(10**6, TakeSnapshot(), BIG))  # an answer, its id included


class BigAnswers:
    """Answers of ~10 KiB, and what the server had buffered each time it was asked."""

    def __init__(self) -> None:
        self.server: ControlServer | None = None
        self.buffered: list[int] = []

    @handles(TakeSnapshot)
    async def snapshot(self, _: TakeSnapshot) -> SiteSnapshot:
        assert self.server is not None
        self.buffered.append(self.server.buffered)
        return BIG


class LogEvent(logging.Handler):
    """Sets ``seen`` when a record containing ``text`` is logged: a log line to wait on."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


@pytest.fixture
def cut_off():
    watcher = LogEvent("left its answers unread")
    logger = logging.getLogger("simedge.control")
    logger.addHandler(watcher)
    yield watcher.seen
    logger.removeHandler(watcher)


async def test_a_client_that_never_reads_is_bounded_and_cut_off(
    tmp_path: Path, cut_off: asyncio.Event
) -> None:
    handler = BigAnswers()
    server = ControlServer(tmp_path / "control.sock", handler, send_timeout=0.5)
    handler.server = server
    await server.start()
    try:
        _, flood = await asyncio.open_unix_connection(str(server.path))
        flood.write(b'{"op": "snapshot"}\n' * 20_000)  # and never reads an answer
        async with ControlClient(server.path) as other:
            loop = asyncio.get_running_loop()
            asked = loop.time()
            async with asyncio.timeout(5):
                assert await other.call(TakeSnapshot()) == BIG
            assert loop.time() - asked < 1.0
            # The flooder fills what the server may buffer for it, then is cut off.
            async with asyncio.timeout(10):
                await cut_off.wait()
            assert server.cut_off == 1
            assert server.clients == 1  # the other client only
            assert server.buffered == 0  # what the flooder left unread is gone
            assert await other.call(TakeSnapshot()) == BIG
        # Never more buffered than the bound plus the one answer written past it.
        assert max(handler.buffered) <= OUTPUT_BUFFER + BIG_LINE
        assert max(handler.buffered) > OUTPUT_BUFFER // 2  # the flood did fill it
        assert len(handler.buffered) < 20_000  # most requests were never even read
        flood.close()
    finally:
        await server.stop()


async def test_clients_are_capped(tmp_path: Path) -> None:
    server = ControlServer(tmp_path / "control.sock", RecordingHandler(), max_clients=3)
    await server.start()
    try:
        clients = [ControlClient(server.path) for _ in range(3)]
        for client in clients:
            assert await client.call(TakeSnapshot()) == SMALL
        async with ControlClient(server.path) as refused:
            with pytest.raises(ControlError, match=r"too many control clients \(3\)"):
                await refused.request("snapshot")
        await clients[0].close()
        # The server sees that client leave in its own time: ask until it has (each try
        # is answered at once, refused or served).
        for _ in range(100):
            with contextlib.suppress(ControlError):
                async with ControlClient(server.path) as late:
                    assert await late.call(TakeSnapshot()) == SMALL
                    break
        else:
            pytest.fail("a place freed by a client that left was never given to another")
        for client in clients[1:]:
            await client.close()
    finally:
        await server.stop()


class Gate:
    """Holds every request until released; counts how many are inside at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.inside = 0
        self.most_inside = 0
        self.arrived = asyncio.Condition()

    @handles(ResetModem)
    async def reset_modem(self, _: ResetModem) -> str:
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        async with self.arrived:
            self.arrived.notify_all()
        try:
            await self.release.wait()
        finally:
            self.inside -= 1
        return "done"


async def test_requests_in_the_handler_at_once_are_bounded_for_all_clients(
    tmp_path: Path,
) -> None:
    handler = Gate()
    server = ControlServer(tmp_path / "control.sock", handler, max_working=3)
    await server.start()
    clients = [ControlClient(server.path) for _ in range(10)]
    try:
        asking = [asyncio.create_task(client.call(ResetModem("1-1.1"))) for client in clients]
        async with asyncio.timeout(5), handler.arrived:
            await handler.arrived.wait_for(lambda: handler.inside >= 3)
        handler.release.set()
        async with asyncio.timeout(5):
            assert await asyncio.gather(*asking) == ["done"] * 10
        assert handler.most_inside == 3
    finally:
        for client in clients:
            await client.close()
        await server.stop()


async def test_coalesced_callers_share_one_computation_started_after_they_asked() -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    runs = 0

    async def compute() -> int:
        nonlocal runs
        runs += 1
        started.set()
        await release.wait()
        return runs

    shared = Coalesced(compute)
    first = asyncio.create_task(shared.get())
    async with asyncio.timeout(5):
        await started.wait()
    # Asked while the first computation runs: they need a newer one, and share it.
    later = [asyncio.create_task(shared.get()) for _ in range(1000)]
    await asyncio.sleep(0)
    release.set()
    async with asyncio.timeout(5):
        assert await first == 1
        assert set(await asyncio.gather(*later)) == {2}
    assert shared.computations == 2


async def test_a_coalesced_caller_that_leaves_does_not_cancel_the_others() -> None:
    release = asyncio.Event()

    async def compute() -> str:
        await release.wait()
        return "done"

    shared = Coalesced(compute)
    leaving = asyncio.create_task(shared.get())
    staying = asyncio.create_task(shared.get())
    await asyncio.sleep(0)
    leaving.cancel()
    release.set()
    async with asyncio.timeout(5):
        assert await staying == "done"
    assert leaving.cancelled()


async def test_garbage_lines_get_an_error_and_the_connection_lives_on(served) -> None:
    server, _ = served
    reader, writer = await asyncio.open_unix_connection(str(server.path))
    writer.write(b"\xff\xfe not json\n[1, 2]\n")
    await writer.drain()
    first = json.loads(await reader.readline())
    second = json.loads(await reader.readline())
    assert "not a JSON line" in first["error"]
    assert second["error"] == "request must be a JSON object"
    writer.write(b'{"id": 7, "op": "snapshot"}\n')
    await writer.drain()
    assert json.loads(await reader.readline()) == {"id": 7, "ok": True, "result": SMALL_JSON}
    writer.close()


async def test_a_request_line_of_escaped_quotes_is_refused_at_once(served) -> None:
    # A string never closed, full of escaped quotes: the nesting check looked for a
    # string from every quote again, quadratic in the line (34 s of a frozen agent for one
    # 64 KiB line). Answered in the time of one pass now.
    server, _ = served
    reader, writer = await asyncio.open_unix_connection(str(server.path))
    hostile = b'{"op": "snapshot", "x": "' + b'\\"' * ((MAX_REQUEST - 64) // 2)
    writer.write(hostile + b"\n")
    await writer.drain()
    async with asyncio.timeout(1):  # was 34 s; well under a millisecond per KiB now
        answer = json.loads(await reader.readline())
    assert "not a JSON line" in answer["error"]
    assert await _ask(reader, writer, b'{"id": 4, "op": "snapshot"}') == {
        "id": 4,
        "ok": True,
        "result": SMALL_JSON,
    }
    writer.close()


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (
            b'{"id": 1, "op": "message", "message_id": ' + b"9" * 5000 + b"}",
            "request is not a JSON line: Exceeds the limit (4300 digits)",
        ),
        (
            b'{"id": 1, "op": "message", "message_id": ' + b"9" * 30 + b"}",
            "message.message_id: 999999999999999999999999999999 is out of range",
        ),
        (b'{"id": NaN, "op": "snapshot"}', "request is not a JSON line: NaN is not JSON"),
        (
            b'{"id": 1, "op": "messages", "limit": -Infinity}',
            "request is not a JSON line: -Infinity is not JSON",
        ),
        (
            b'{"id": 1, "op": "set_number", "iccid": "\\ud800", "number": "1"}',
            "set_number.iccid: not valid text (a lone surrogate)",
        ),
    ],
    ids=["5000 digits", "past 64 bits", "NaN", "Infinity", "lone surrogate"],
)
async def test_numbers_and_text_json_allows_but_the_agent_cannot_keep_are_refused(
    served, line: bytes, error: str
) -> None:
    server, _ = served
    reader, writer = await asyncio.open_unix_connection(str(server.path))
    answer = await _ask(reader, writer, line)
    assert answer["ok"] is False
    assert answer["error"].startswith(error)
    # Refused in the protocol, not by a handler that failed (an "internal error"), and
    # the connection lives on.
    assert await _ask(reader, writer, b'{"id": 5, "op": "snapshot"}') == {
        "id": 5,
        "ok": True,
        "result": SMALL_JSON,
    }
    writer.close()


async def test_agent_down_is_said_plainly(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="the agent is not running"):
        await ControlClient(tmp_path / "none.sock").call(TakeSnapshot())
