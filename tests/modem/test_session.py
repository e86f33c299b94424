"""AtSession over real ptys: against a scripted peer (for exact byte timing) and against
the emulated modems (for real behaviour: errors, URCs, unplug)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable

import pytest

from agent.errors import CommandFailed, CommandTimeout, PortGone
from agent.logs import LINES_PER_SOURCE, TRACE, trace_logger
from agent.modem.session import URC_QUEUE_LIMIT, AtSession
from agent.protocol.pdu import encode_submit
from agent.protocol.urc import RegistrationChanged, SmsStored
from tests.modem.conftest import Reply, ScriptedPeer, StartHub, at_link

MakePeer = Callable[[dict[str, Reply]], ScriptedPeer]


async def test_answer_lines_and_named_errors_from_an_emulated_modem(start_hub: StartHub) -> None:
    hub = await start_hub(profile="ec25")
    session = await AtSession.open(at_link(hub))
    try:
        assert await session.command("AT+CGMI") == ["Quectel"]  # echo is still on: dropped
        await session.command("AT+CMEE=1")
        with pytest.raises(CommandFailed) as failed:
            await session.command("AT+CMGR=200")
        assert failed.value.kind == "CMS"
        assert failed.value.code == 321
        assert failed.value.name == "INVALID_MEMORY_INDEX"
        hub.fault(0, "sim-out")
        with pytest.raises(CommandFailed) as no_sim:
            await session.command("AT+CIMI")
        assert no_sim.value.name == "SIM_NOT_INSERTED"
    finally:
        await session.close()


async def test_urc_inside_a_response_is_delivered_and_the_response_is_whole(
    scripted_peer: MakePeer,
) -> None:
    peer = scripted_peer({"AT+CSQ": b'\r\n+CSQ: 20,99\r\n+CMTI: "SM",3\r\n+CREG: 1\r\n\r\nOK\r\n'})
    session = await AtSession.open(peer.device)
    try:
        assert await session.command("AT+CSQ") == ["+CSQ: 20,99"]
        first, second = session.urcs.get_nowait(), session.urcs.get_nowait()
        assert isinstance(first, SmsStored)
        assert first.index == 3
        assert isinstance(second, RegistrationChanged)
    finally:
        await session.close()


async def test_byte_by_byte_answer_is_framed(scripted_peer: MakePeer) -> None:
    answer = b'\r\n+COPS: 0,2,"25001",7\r\n\r\nOK\r\n'

    def dribble(_line: str) -> bytes:
        loop = asyncio.get_running_loop()
        for position, byte in enumerate(answer):
            loop.call_later(0.001 * position, peer.send, bytes([byte]))
        return b""

    peer = scripted_peer({"AT+COPS?": dribble})
    session = await AtSession.open(peer.device)
    try:
        assert await session.command("AT+COPS?") == ['+COPS: 0,2,"25001",7']
    finally:
        await session.close()


async def test_timeout_leaves_nothing_behind_and_a_late_answer_ends_no_command(
    scripted_peer: MakePeer,
) -> None:
    peer = scripted_peer({"AT+CSQ": None})
    session = await AtSession.open(peer.device)
    try:
        with pytest.raises(CommandTimeout, match=r"AT\+CSQ: no final result"):
            await session.command("AT+CSQ", timeout=0.1)
        assert session._response is None
        assert session._framer.pending is None
        peer.send(b"\r\n+CSQ: 9,99\r\n\r\nOK\r\n")  # the late answer
        peer.script["AT+CGMI"] = b"\r\nSIMCOM_Ltd\r\n\r\nOK\r\n"
        await session.resync(quiet=0.05)
        assert await session.command("AT+CGMI") == ["SIMCOM_Ltd"]
        assert peer.lines == ["AT+CSQ", "AT", "AT+CGMI"]
    finally:
        await session.close()


async def test_a_command_waits_the_sessions_timeout_unless_it_names_one(
    scripted_peer: MakePeer,
) -> None:
    peer = scripted_peer({"AT+CSQ": None, "AT+CREG?": None})
    session = await AtSession.open(peer.device, command_timeout=0.1)
    try:
        with pytest.raises(CommandTimeout, match=r"AT\+CSQ: no final result in 0\.1s"):
            await session.command("AT+CSQ")
        with pytest.raises(CommandTimeout, match=r"AT\+CREG\?: no final result in 0\.05s"):
            await session.command("AT+CREG?", timeout=0.05)
    finally:
        await session.close()


async def test_one_deadline_timer_serves_an_exchange_and_each_command_gets_its_own_time(
    scripted_peer: MakePeer,
) -> None:
    answer = b"\r\n+CMGR: 0,,1\r\n00\r\n\r\nOK\r\n"
    peer = scripted_peer({"AT+CMGR=1": answer, "AT+CMGD=1": None, "AT+CSQ": None})
    session = await AtSession.open(peer.device)
    loop = asyncio.get_running_loop()
    try:
        async with session.exchange():
            await session.command("AT+CMGR=1", timeout=0.1)
            kept = session._deadline_timer
            assert kept is not None  # armed for 0.1 s, kept for the exchange's next command
            started = loop.time()
            with pytest.raises(CommandTimeout, match=r"AT\+CMGD=1: no final result in 0\.3s"):
                await session.command("AT+CMGD=1", timeout=0.3)
            # The first command's timer fired during this one and re-armed for its end.
            assert loop.time() - started >= 0.29
            async with asyncio.timeout(2):  # a shorter deadline than the armed one wins
                await session.command("AT+CMGR=1", timeout=5)
                with pytest.raises(CommandTimeout, match=r"AT\+CSQ: no final result in 0\.05s"):
                    await session.command("AT+CSQ", timeout=0.05)
        assert session._deadline_timer is None  # nothing left behind the exchange
        await session.command("AT+CMGR=1")
        assert session._deadline_timer is None  # nor behind a command on its own
    finally:
        await session.close()


async def test_exchange_holds_the_port_for_its_whole_length(scripted_peer: MakePeer) -> None:
    peer = scripted_peer({})
    session = await AtSession.open(peer.device)
    try:
        inside = asyncio.Event()
        release = asyncio.Event()

        async def multi_step() -> None:
            async with session.exchange():
                await session.command("AT+CMGR=1")
                inside.set()
                await release.wait()
                await session.command("AT+CMGD=1")

        exchange = asyncio.create_task(multi_step())
        await inside.wait()
        other = asyncio.create_task(session.command("AT+CSQ"))
        await asyncio.sleep(0)  # let the other task reach the lock
        assert not other.done()
        release.set()
        await exchange
        await other
        assert peer.lines == ["AT+CMGR=1", "AT+CMGD=1", "AT+CSQ"]
    finally:
        await session.close()


async def test_a_urc_flood_is_dropped_past_the_queue_and_logged_a_few_times(
    scripted_peer: MakePeer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="simedge.modem.session")
    flood = 3 * URC_QUEUE_LIMIT
    # The answer comes after the flood: when it is in, every URC before it was framed.
    answer = b"\r\n" + b"+CREG: 1\r\n" * flood + b"\r\nOK\r\n"

    def pour(_line: str) -> bytes:
        # More than a pty holds: written as the far end makes room.
        loop, rest = asyncio.get_running_loop(), [memoryview(answer)]

        def writable() -> None:
            with contextlib.suppress(BlockingIOError):
                rest[0] = rest[0][os.write(peer.master, rest[0]) :]
            if not rest[0]:
                loop.remove_writer(peer.master)

        loop.add_writer(peer.master, writable)
        return b""

    peer = scripted_peer({"AT": pour})
    session = await AtSession.open(peer.device)
    try:
        await session.command("AT")
        assert session.urcs.qsize() == URC_QUEUE_LIMIT  # nobody consumes them here
        assert session.urcs_dropped == flood - URC_QUEUE_LIMIT
        lines = [r.getMessage() for r in caplog.records if "URC queue full" in r.getMessage()]
        assert len(lines) == LINES_PER_SOURCE  # not 2,048: the rest are counted
    finally:
        await session.close()


async def test_garbage_and_nmea_are_counted_not_answers(scripted_peer: MakePeer) -> None:
    peer = scripted_peer(
        {"AT": b"\x00\xfe\x81\xc3\r\n$GPGGA,123519,4807.038,N,01131.000,E*47\r\n\r\nOK\r\n"}
    )
    session = await AtSession.open(peer.device)
    try:
        assert await session.command("AT") == []
        assert session.garbage == 2
        assert session.nmea_lines == 1
    finally:
        await session.close()


async def test_unplug_fails_the_pending_command_and_sets_closed(start_hub: StartHub) -> None:
    hub = await start_hub(profile="sim800")
    session = await AtSession.open(at_link(hub))
    try:
        hub.fault(0, "hang")
        pending = asyncio.create_task(session.command("AT+CSQ", timeout=5))
        await asyncio.sleep(0)  # the command is written
        hub.fault(0, "unplug")
        with pytest.raises(PortGone):
            await pending
        async with asyncio.timeout(2):
            await session.closed.wait()
        with pytest.raises(PortGone):
            await session.command("AT")
    finally:
        await session.close()


async def test_idle_session_notices_an_unplug(start_hub: StartHub) -> None:
    hub = await start_hub(profile="huawei")
    session = await AtSession.open(at_link(hub))
    try:
        await session.command("AT")
        hub.fault(0, "unplug")
        async with asyncio.timeout(2):
            await session.closed.wait()
        assert isinstance(session.gone_reason, PortGone)
    finally:
        await session.close()


async def test_opening_a_missing_device_is_port_gone(tmp_path) -> None:
    with pytest.raises(PortGone, match="cannot open") as gone:
        await AtSession.open(str(tmp_path / "ttyUSB9"))
    assert gone.value.port == str(tmp_path / "ttyUSB9")


async def test_trace_logs_raw_traffic_of_one_port_only(
    scripted_peer: MakePeer, caplog: pytest.LogCaptureFixture
) -> None:
    peer = scripted_peer({})
    session = await AtSession.open(peer.device, name="modem-a")
    try:
        caplog.set_level(TRACE)
        # As logs.setup() leaves it: traffic off unless a port asks for it.
        logging.getLogger("simedge.trace").setLevel(logging.DEBUG + 1)
        session.set_trace(True)
        await session.command("ATE0")
        traced = [r.getMessage() for r in caplog.records if r.name == trace_logger("modem-a").name]
        assert traced[0] == "-> b'ATE0\\r'"
        assert any("OK" in message for message in traced[1:])
        session.set_trace(False)
        caplog.clear()
        await session.command("AT")
        assert not [r for r in caplog.records if r.name.startswith("simedge.trace")]
    finally:
        session.set_trace(False)
        logging.getLogger("simedge.trace").setLevel(logging.NOTSET)
        await session.close()


async def test_submit_writes_the_body_after_the_prompt_with_echo_on(start_hub: StartHub) -> None:
    hub = await start_hub(profile="ec25")
    session = await AtSession.open(at_link(hub))
    try:
        pdu_hex, length = encode_submit("over the prompt", "+447802000332")
        # Echo is on: the command's and the body's echo are both dropped.
        assert await session.submit(f"AT+CMGS={length}", pdu_hex, timeout=3) == ["+CMGS: 1"]
        assert await session.command("AT") == []  # the port is in step afterwards
        await session.command("AT+CMEE=1")
        with pytest.raises(CommandFailed) as refused:  # an error instead of the prompt
            await session.submit("AT+CMGS=5", pdu_hex, timeout=3)
        assert (refused.value.kind, refused.value.code) == ("CMS", 304)
        hub.slots[0].modem.sim.credit = False  # an error after the body
        with pytest.raises(CommandFailed) as no_credit:
            await session.submit(f"AT+CMGS={length}", pdu_hex, timeout=3)
        assert (no_credit.value.kind, no_credit.value.code) == ("CMS", 21)
    finally:
        await session.close()
    (submitted,) = [event for event in hub.events if event["kind"] == "submitted"]
    assert submitted["recipient"] == "+447802000332"


async def test_a_submit_left_unanswered_is_cancelled_with_esc(scripted_peer: MakePeer) -> None:
    peer = scripted_peer({"AT+CMGS=23": b"\r\n> "})  # the prompt, then nothing
    session = await AtSession.open(peer.device)
    try:
        with pytest.raises(CommandTimeout):
            await session.submit(
                "AT+CMGS=23", "0011000B916407281553F80000AA0AE8329BFD4697D9EC37", timeout=0.3
            )
        assert await session.command("AT") == []
        lines = await peer.received(2)
    finally:
        await session.close()
    # The body and Ctrl-Z, then ESC before the next command: the modem drops the body.
    assert lines[1].endswith("\x1a\x1bAT")
