"""The control socket over a real unix socket: answers, refusals, events, slow clients."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from agent.control.client import ControlClient
from agent.control.protocol import MAX_LINE, SUBSCRIBER_QUEUE
from agent.control.server import ControlServer
from agent.errors import ControlError


class RecordingHandler:
    """The supervisor's role, reduced to recording what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.release = asyncio.Event()

    async def handle(self, op: str, arguments: dict[str, Any]) -> Any:
        self.calls.append((op, arguments))
        if op == "reset_modem" and arguments["slot"] == "slow":
            await self.release.wait()
            return "slow done"
        if op == "reset_modem" and arguments["slot"] == "missing":
            raise ControlError("no modem in slot missing")
        if op == "takeoff_done":
            raise RuntimeError("handler bug")
        return {"op": op, **arguments}


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
        result = await client.request("set_number", iccid="8970", number="+79161234567")
    assert result == {"op": "set_number", "iccid": "8970", "number": "+79161234567"}
    assert handler.calls == [("set_number", {"iccid": "8970", "number": "+79161234567"})]


async def test_socket_is_group_accessible_only(served) -> None:
    server, _ = served
    assert server.path.stat().st_mode & 0o777 == 0o660


@pytest.mark.parametrize(
    ("op", "arguments", "message"),
    [
        ("reboot_pi", {}, "unknown op 'reboot_pi'"),
        ("reset_modem", {}, "reset_modem: missing slot"),
        ("snapshot", {"verbose": True}, "snapshot: unknown argument verbose"),
        ("reset_modem", {"slot": "missing"}, "no modem in slot missing"),
        ("takeoff_done", {"iccid": "1"}, "internal error: RuntimeError('handler bug')"),
    ],
)
async def test_refusals_say_why(served, op: str, arguments: dict[str, Any], message: str) -> None:
    server, _ = served
    async with ControlClient(server.path) as client:
        with pytest.raises(ControlError) as caught:
            await client.request(op, **arguments)
        assert message in str(caught.value)
        # The connection is still usable after a refusal.
        assert await client.request("snapshot") == {"op": "snapshot"}


async def test_a_slow_operation_does_not_block_other_requests(served) -> None:
    server, handler = served
    async with ControlClient(server.path) as slow_client, ControlClient(server.path) as client:
        slow = asyncio.create_task(slow_client.request("reset_modem", slot="slow"))
        async with asyncio.timeout(5):
            assert await client.request("snapshot") == {"op": "snapshot"}
        assert not slow.done()
        handler.release.set()
        async with asyncio.timeout(5):
            assert await slow == "slow done"


async def test_events_reach_subscribers(served) -> None:
    server, _ = served
    client = ControlClient(server.path)
    stream = client.events()
    async with asyncio.timeout(5):
        assert await anext(stream) == {"event": "subscribed", "data": None}
    server.publish("modem", {"slot": "1-1.2", "text": "[bold]not markup[/]"})
    async with asyncio.timeout(5):
        event = await anext(stream)
    assert event == {"event": "modem", "data": {"slot": "1-1.2", "text": "[bold]not markup[/]"}}
    await stream.aclose()


async def test_a_stalled_subscriber_overflows_instead_of_holding_the_agent(served) -> None:
    server, _ = served
    reader, writer = await asyncio.open_unix_connection(str(server.path))
    writer.write(b'{"id": 0, "op": "subscribe"}\n')
    await writer.drain()
    assert json.loads(await reader.readline())["ok"] is True  # registered from here on
    assert server.subscribers == 1
    # The client reads nothing while far more events than the queue holds are published:
    # publish() must return at once every time (it never awaits).
    payload = {"text": "x" * 1000}
    for _ in range(SUBSCRIBER_QUEUE * 20):
        server.publish("log", payload)
    seen_overflow = False
    async with asyncio.timeout(10):
        while not seen_overflow:
            line = await reader.readline()
            assert line, "stream closed before the overflow notice"
            seen_overflow = json.loads(line)["event"] == "overflow"
    writer.close()


async def test_an_oversized_request_is_refused(served) -> None:
    server, _ = served
    reader, writer = await asyncio.open_unix_connection(str(server.path), limit=MAX_LINE * 2)
    writer.write(b'{"op": "snapshot", "pad": "' + b"x" * (MAX_LINE + 10) + b'"}\n')
    await writer.drain()
    answer = json.loads(await reader.readline())
    assert answer["ok"] is False
    assert "over" in answer["error"]
    writer.close()


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
    assert json.loads(await reader.readline()) == {
        "id": 7,
        "ok": True,
        "result": {"op": "snapshot"},
    }
    writer.close()


async def test_agent_down_is_said_plainly(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="the agent is not running"):
        await ControlClient(tmp_path / "none.sock").request("snapshot")
