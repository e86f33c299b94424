"""The hub on real pseudo-terminals, talked to with pyserial as a host program would."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from smspdudecoder.easy import read_incoming_sms

from agent.cli import emulate as emulate_cli
from agent.emulate.modems.control import ControlClient
from agent.emulate.modems.hub import Hub
from agent.emulate.modems.sim import luhn_valid
from agent.errors import ControlError, EmulatorError
from agent.protocol.pdu import decode
from tests.emulate import modems_fixtures
from tests.emulate.modems_fixtures import AtPort, HubThread

modem_hub = modems_fixtures.modem_hub  # the fixture, registered here
StartHub = Callable[..., HubThread]
ROOT = Path(__file__).resolve().parents[2]


def control(hub: HubThread, op: str, **fields: Any) -> dict[str, Any]:
    """One request over the real control socket, from the test's own event loop."""

    async def call() -> dict[str, Any]:
        async with ControlClient(hub.hub.control_path) as client:
            return await client.request(op, **fields)

    return asyncio.run(call())


def open_port(hub: HubThread, index: int = 0, which: int = 0) -> AtPort:
    port = AtPort(hub.at_link(index, which))
    port.sync(autobaud=hub.hub.slots[index].profile.autobaud)
    port.command("ATE0")
    return port


def test_links_and_hub_json_describe_usb_ports(modem_hub: StartHub) -> None:
    hub = modem_hub(count=3, profile="ec25", seed=5)
    directory = hub.hub.directory
    described = json.loads((directory / "hub.json").read_text())
    assert len(described["modems"]) == 3
    first = described["modems"][0]
    assert (first["usb"]["vid"], first["usb"]["pid"], first["usb"]["serial"]) == (
        "2c7c",
        "0125",
        None,
    )
    assert [p["interface"] for p in first["ports"]] == [0, 1, 2, 3]
    for port in first["ports"]:
        link = Path(port["link"])
        assert link.is_symlink()
        assert os.readlink(link) == port["tty"]
        assert link.name.startswith("platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.1.1:1.")
    assert luhn_valid(first["imei"])
    assert first["imei"].startswith(("86681503", "86758104"))
    assert (directory / "control.sock").exists()


def test_same_seed_same_world_and_pools_share_imeis(modem_hub: StartHub) -> None:
    def identities(hub: HubThread) -> list[tuple[Any, ...]]:
        return [
            (m["profile"], m["imei"], m["iccid"], m["imsi"], m["number"])
            for m in control(hub, "list")["modems"]
        ]

    first = identities(modem_hub(count=4, profile="mixed", seed=9))
    assert first == identities(modem_hub(count=4, profile="mixed", seed=9))
    assert first != identities(modem_hub(count=4, profile="mixed", seed=10))
    pool = identities(modem_hub(count=10, profile="pool", seed=1))
    assert len({row[1] for row in pool[:8]}) == 1
    assert pool[8][1] != pool[0][1]
    assert len({row[2] for row in pool}) == 10  # every module has its own SIM


def test_conversation_echo_chaining_and_cmee(modem_hub: StartHub) -> None:
    hub = modem_hub(count=1, profile="sim800")
    port = AtPort(hub.at_link(0))
    port.sync(autobaud=True)
    assert port.command("ATI") == "ATI\r\r\nSIM800 R14.18\r\n\r\nOK\r\n"
    mcc_mnc = hub.hub.slots[0].modem.sim.operator.mcc_mnc
    assert f'+COPS: 0,2,"{mcc_mnc}"\r\n\r\nOK' in port.command("AT+COPS=3,2;+COPS?")
    assert port.command("ATE0").endswith("OK\r\n")
    assert port.command("AT+CEREG?") == "\r\nERROR\r\n"
    port.command("AT+CMEE=2")
    assert port.command("AT+CEREG?") == "\r\n+CME ERROR: unknown\r\n"
    port.close()


def test_cmti_then_cmgr_and_cmgd_over_the_pty(modem_hub: StartHub) -> None:
    hub = modem_hub(count=2, profile="ec25")
    port = open_port(hub, 1)
    port.command("AT+CMGF=0;+CNMI=2,1,0,0,0")
    ids = control(hub, "inject", modem=1, sender="+79161234567", text="Код 1234 😀")["ids"]
    index = int(port.expect(rb'\+CMTI: "SM",(\d+)\r\n').group(1))
    answer = port.command(f"AT+CMGR={index}")
    pdu = re.search(r"\+CMGR: 0,,\d+\r\n([0-9A-F]+)\r\n", answer)
    assert pdu is not None
    decoded = read_incoming_sms(pdu.group(1))
    assert (decoded["sender"], decoded["content"]) == ("+79161234567", "Код 1234 😀")
    assert port.command(f"AT+CMGD={index}").endswith("OK\r\n")
    assert port.command("AT+CMGL=4") == "\r\nOK\r\n"
    kinds = [
        e["kind"] for e in hub.events("stored") + hub.events("injected") if e["sms_id"] == ids[0]
    ]
    assert sorted(kinds) == ["injected", "stored"]
    port.close()


def test_second_ec25_at_port_shares_the_modem(modem_hub: StartHub) -> None:
    hub = modem_hub(count=1, profile="ec25")
    first, second = open_port(hub, 0, 0), open_port(hub, 0, 1)
    second.command("AT+CMGF=0;+CNMI=2,1,0,0,0")
    control(hub, "inject", modem=0, sender="VKcom", text="hello")
    first.expect(rb'\+CMTI: "SM",0\r\n')  # URCs go to the first AT port (if2)
    assert "+CMGR: 0,," in second.command("AT+CMGR=0")
    first.close()
    second.close()


def test_cmt_with_cnma_then_a_missed_ack_turns_delivery_off(modem_hub: StartHub) -> None:
    hub = modem_hub(count=1, profile="sim800", cnma_timeout=0.4, network_retry=0.1)
    port = open_port(hub)
    port.command("AT+CMGF=0;+CSMS=1;+CNMI=2,2,0,0,0")
    control(hub, "inject", modem=0, sender="+15550001111", text="first")
    cmt = port.expect(rb"\+CMT: ,(\d+)\r\n([0-9A-F]+)\r\n")
    assert read_incoming_sms(cmt.group(2).decode())["content"] == "first"
    assert port.command("AT+CNMA").endswith("OK\r\n")
    control(hub, "inject", modem=0, sender="+15550001111", text="second")
    port.expect(rb"\+CMT: ,\d+\r\n[0-9A-F]+\r\n")
    # no ack: the modem sets <mt> to 0 and the network's retry lands silently in storage
    port.read_until(lambda _data: bool(hub.events("stored")), timeout=3)
    assert "+CNMI: 2,0,0,0,0" in port.command("AT+CNMI?")
    listing = port.command("AT+CMGL=4")
    pdu = re.search(r"\+CMGL: 1,0,,\d+\r\n([0-9A-F]+)", listing)
    assert pdu is not None
    assert read_incoming_sms(pdu.group(1))["content"] == "second"
    assert [e["kind"] for e in hub.call(lambda: list(hub.hub.events))].count("unacked") == 1
    port.close()


def test_storage_full_then_freed(modem_hub: StartHub) -> None:
    hub = modem_hub(count=1, profile="huawei")
    port = open_port(hub)
    port.command("AT^CURC=0;+CMGF=0;+CNMI=2,1,0,0,0")
    control(hub, "fault", modem=0, kind="storage-full")
    assert '+CPMS: "SM",30,30' in port.command("AT+CPMS?")
    control(hub, "inject", modem=0, sender="+2348031234567", text="waiting for room")
    port.expect(rb'\^SMMEMFULL: "SM"\r\n')
    assert control(hub, "list")["modems"][0]["in_network"] == 1
    port.command("AT+CMGD=0,4")
    assert port.expect(rb'\+CMTI: "SM",(\d+)\r\n').group(1) == b"0"
    port.close()


def test_faults_hang_slow_garbage_reboot(modem_hub: StartHub) -> None:
    hub = modem_hub(count=1, profile="ec25")
    port = open_port(hub)
    control(hub, "fault", modem=0, kind="hang")
    port.serial.write(b"AT\r")
    with pytest.raises(AssertionError, match="timed out"):
        port.read_until(lambda data: b"OK" in data, timeout=0.3)
    control(hub, "fault", modem=0, kind="clear")
    assert port.command("AT") == "\r\nOK\r\n"
    control(hub, "fault", modem=0, kind="slow", seconds=0.3)
    port.serial.write(b"AT\r")
    with pytest.raises(AssertionError, match="timed out"):
        port.read_until(lambda data: b"OK" in data, timeout=0.15)
    port.read_until(lambda data: b"OK" in data, timeout=2)
    control(hub, "fault", modem=0, kind="clear")
    control(hub, "fault", modem=0, kind="garbage")
    noisy = port.command("AT+CGMI").encode("latin-1")
    assert b"\r\nQuectel" in noisy
    assert len(noisy) > len(b"\r\nQuectel\r\n\r\nOK\r\n")
    control(hub, "fault", modem=0, kind="clear")
    port.command("AT+CMEE=2")
    control(hub, "fault", modem=0, kind="reboot")
    port.expect(rb"\+QIND: SMS DONE\r\n")
    assert "+CMEE: 0" in port.command("AT+CMEE?")
    port.close()


def test_unplug_removes_the_link_and_replug_brings_a_new_pty(modem_hub: StartHub) -> None:
    hub = modem_hub(count=2, profile="sim800")
    link = Path(hub.at_link(1))
    port = open_port(hub, 1)
    control(hub, "fault", modem="1-1.1.2", kind="unplug")
    assert not link.exists()
    assert not link.is_symlink()
    # the device vanished: EIO, or pyserial's SerialException (an OSError) for a hangup
    with pytest.raises(OSError, match=r"Input/output error|returned no data"):
        port.read_until(lambda data: b"OK" in data, timeout=1)
    port.close()
    described = json.loads((hub.hub.directory / "hub.json").read_text())
    assert described["modems"][1]["ports"][0]["present"] is False
    assert control(hub, "list")["modems"][1]["plugged"] is False
    control(hub, "fault", modem=link.name, kind="replug")
    # the same name again; the pty behind it is new (the kernel may reuse the number)
    assert link.is_symlink()
    assert Path(os.readlink(link)).exists()
    port = open_port(hub, 1)  # autobauds again after power-up
    assert port.command("AT+CPIN?").endswith("+CPIN: READY\r\n\r\nOK\r\n")
    port.close()


def test_sim_out_sim_in_and_registration(modem_hub: StartHub) -> None:
    hub = modem_hub(count=1, profile="ec25")
    port = open_port(hub)
    port.command("AT+CMEE=1;+CMGF=0;+CNMI=2,1,0,0,0")
    old_iccid = control(hub, "list")["modems"][0]["iccid"]
    control(hub, "fault", modem=0, kind="sim-out")
    assert port.command("AT+CPIN?").endswith("+CME ERROR: 10\r\n")
    with pytest.raises(ControlError, match="no SIM"):
        control(hub, "inject", modem=0, sender="+79161234567", text="nobody home")
    control(hub, "fault", modem=0, kind="sim-in")
    port.expect(rb"\+QIND: SMS DONE\r\n")
    state = control(hub, "list")["modems"][0]
    assert state["iccid"] != old_iccid
    assert luhn_valid(state["iccid"])
    assert state["iccid"] in port.command("AT+QCCID")
    port.command("AT+CREG=1")
    control(hub, "fault", modem=0, kind="deregister")
    port.expect(rb"\+CREG: 2\r\n")
    control(hub, "inject", modem=0, sender="+79161234567", text="after coverage returns")
    assert "+CREG: 1,2" in port.command("AT+CREG?")
    control(hub, "fault", modem=0, kind="reregister")
    port.expect(rb"\+CREG: 1\r\n")
    port.expect(rb'\+CMTI: "SM",0\r\n')
    port.close()


def test_cli_inject_fault_list(modem_hub: StartHub, capsys: pytest.CaptureFixture[str]) -> None:
    hub = modem_hub(count=2, profile="sim800")
    parser = argparse.ArgumentParser()
    emulate_cli.configure(parser)
    directory = str(hub.hub.directory)

    def run(*argv: str) -> int:
        args = parser.parse_args(argv)
        return args.handler(args)

    assert (
        run(
            "inject",
            "--dir",
            directory,
            "--modem",
            "1",
            "--sender",
            "VKcom",
            "--text",
            "n{n} " + "x" * 200,
            "--count",
            "3",
            "--rate",
            "50",
            "--shuffle-parts",
            "--duplicate-part",
            "1",
            "--tz",
            "+12",
        )
        == 0
    )
    ids = capsys.readouterr().out.split()
    assert ids == [f"sms-00000{n}" for n in (1, 2, 3)]
    assert run("fault", "--dir", directory, "--modem", "0", "--kind", "deregister") == 0
    assert run("list", "--dir", directory, "--json") == 0
    state = json.loads(capsys.readouterr().out)
    assert state[0]["registration"] == 2
    assert run("fault", "--dir", directory, "--modem", "7", "--kind", "hang") == 1
    assert "no such modem" in capsys.readouterr().err
    port = open_port(hub, 1)
    port.read_until(lambda _data: len(hub.events("stored")) == 9, timeout=3)
    listing = port.command("AT+CMGL=4")
    texts = [read_incoming_sms(p) for p in re.findall(r"\r\n([0-9A-F]{20,})", listing)]
    assert {t["content"][:3] for t in texts if t["partial"]["part_number"] == 1} == {
        "n1 ",
        "n2 ",
        "n3 ",
    }
    port.close()


def test_inject_options_shape_what_the_network_sends(modem_hub: StartHub) -> None:
    hub = modem_hub(count=1, profile="ec25")
    text = "0123456789" * 40  # three parts
    dropped = control(
        hub,
        "inject",
        modem=0,
        sender="+79161234567",
        text=text,
        drop_part=2,
        ref16=True,
        message_class=1,
        tz_quarters=-20,
    )["ids"][0]
    stored = [e for e in hub.events("stored") if e["sms_id"] == dropped]
    assert sorted(e["part"] for e in stored) == [1, 3]
    modem = hub.hub.slots[0].modem
    assert modem.sim is not None
    sms = [decode(s.pdu) for _, s in modem.sim.storage.items()]
    assert {s.concat.ref_bits for s in sms if s.concat} == {16}
    assert {s.message_class for s in sms} == {1}
    assert {s.timestamp.utcoffset().total_seconds() for s in sms} == {-5 * 3600}
    injected = [e for e in hub.events("injected") if e["sms_id"] == dropped]
    assert all(i["t"] <= s["t"] for i, s in zip(injected, stored, strict=True))
    with pytest.raises(ControlError, match="drop_part"):
        control(hub, "inject", modem=0, sender="+79161234567", text="short", drop_part=2)


def test_the_modems_command_runs_until_sigterm(tmp_path: Path) -> None:
    directory = tmp_path / "hub"
    command = [sys.executable, "-m", "agent.cli", "emulate"]
    arguments = ["modems", "--count", "2", "--dir", str(directory), "--profile", "pool"]
    with subprocess.Popen(
        [*command, *arguments], stdout=subprocess.PIPE, text=True, cwd=ROOT
    ) as process:
        try:
            assert process.stdout is not None
            ready = process.stdout.readline()
            assert ready.startswith("modem hub ready modems=2 ports=2 ")
            listed = subprocess.run(
                [*command, "list", "--dir", str(directory), "--json"],
                capture_output=True,
                text=True,
                cwd=ROOT,
                check=True,
                timeout=60,
            )
            modems = json.loads(listed.stdout)
            assert [m["slot"] for m in modems] == ["1-1.1.1", "1-1.1.2"]
            assert modems[0]["imei"] == modems[1]["imei"]  # a pool board: one IMEI
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
    assert list(directory.iterdir()) == []


async def test_a_failed_start_leaves_nothing_behind(tmp_path: Path) -> None:
    directory = tmp_path / ("x" * 110)  # too long a path for the control socket
    hub = Hub(directory, count=2, profile="ec25")
    with pytest.raises(EmulatorError, match="control socket"):
        await hub.start()
    assert list(directory.iterdir()) == []
    with pytest.raises(EmulatorError, match="profile"):
        Hub(tmp_path, count=1, profile="nokia3310")


async def test_concurrent_first_requests_share_one_control_connection(tmp_path: Path) -> None:
    """Found by make chaos: the client connected outside its lock, so concurrent first
    requests each opened a connection and replaced each other's streams."""
    async with Hub(tmp_path / "hub", count=2, profile="sim800", seed=1) as hub:
        client = ControlClient(hub.control_path)
        try:
            answers = await asyncio.gather(*(client.list() for _ in range(8)))
        finally:
            await client.close()
    assert all(len(modems) == 2 for modems in answers)


def test_inject_many_hands_a_burst_over_before_any_modem_stores_it(modem_hub: StartHub) -> None:
    """A burst over 64 modems in one control request: every SMS is with its modem before
    the first one is stored (so before any +CMTI is printed), not a round trip apart."""
    hub = modem_hub(count=64, profile="sim800")
    burst = [
        {"modem": index, "sender": "+79161234567", "text": f"burst {index} code 4711"}
        for index in range(64)
    ]
    ids = control(hub, "inject_many", messages=burst)["ids"]
    assert [len(each) for each in ids] == [1] * 64
    sms_ids = [each[0] for each in ids]
    injected = {e["sms_id"]: e for e in hub.events("injected") if e["sms_id"] in sms_ids}
    stored = {e["sms_id"]: e for e in hub.events("stored") if e["sms_id"] in sms_ids}
    assert set(injected) == set(stored) == set(sms_ids)
    assert [injected[sms_id]["modem"] for sms_id in sms_ids] == list(range(64))
    assert max(e["seq"] for e in injected.values()) < min(e["seq"] for e in stored.values())
    modem = hub.hub.slots[63].modem
    assert modem.sim is not None
    assert [decode(record.pdu).text for _, record in modem.sim.storage.items()] == [
        "burst 63 code 4711"
    ]


def test_inject_many_refuses_a_bad_batch_whole_naming_the_entry(modem_hub: StartHub) -> None:
    hub = modem_hub(count=2, profile="sim800")
    good = {"modem": 0, "sender": "+79161234567", "text": "fine"}
    for batch, expected in (
        ([good, {**good, "modem": 7}], r"messages\[1\]: modem: no such modem"),
        ([good, {**good, "colour": "red"}], r"messages\[1\].*unknown \['colour'\]"),
        ([{"modem": 1, "text": "no sender"}], r"messages\[0\].*missing \['sender'\]"),
        ([good, {**good, "drop_part": 2}], r"messages\[1\]: drop_part"),
        ([], "messages: expected a list of 1 to 1024 injections"),
        ([good] * 1025, "messages: expected a list of 1 to 1024 injections"),
    ):
        with pytest.raises(ControlError, match=expected):
            control(hub, "inject_many", messages=batch)
    assert hub.events("injected") == []  # a refused batch hands nothing over
    with pytest.raises(ControlError, match="messages: expected a list"):
        control(hub, "inject_many", messages={"modem": 0})
    assert len(control(hub, "inject_many", messages=[good] * 1024)["ids"]) == 1024
