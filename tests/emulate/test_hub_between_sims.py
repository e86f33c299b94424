"""SIMs of one hub text each other and get called, over real ptys and the control socket."""

from __future__ import annotations

import time

import pytest
from smspdudecoder.easy import read_incoming_sms

from agent.errors import ControlError
from agent.protocol.framer import CTRL_Z
from agent.protocol.pdu import encode_submit
from tests.emulate import modems_fixtures
from tests.emulate.modems_fixtures import HubThread
from tests.emulate.test_modems_pty import StartHub, control, open_port

modem_hub = modems_fixtures.modem_hub  # the fixture, registered here


def number_of(hub: HubThread, index: int) -> str:
    return str(control(hub, "list")["modems"][index]["number"])


def test_an_sms_to_a_sim_on_the_hub_arrives_there_after_the_delay(modem_hub: StartHub) -> None:
    hub = modem_hub(count=3, profile="ec25", sms_delay=0.5)
    sender, receiver = open_port(hub, 0), open_port(hub, 2)
    receiver.command("AT+CMGF=0;+CNMI=2,1,0,0,0")
    pdu_hex, length = encode_submit("simedge number check AB12", number_of(hub, 2))
    sender.serial.write(f"AT+CMGS={length}\r".encode())
    sender.expect(rb"> ")
    sent_at = time.monotonic()
    sender.serial.write(pdu_hex.encode() + CTRL_Z)
    sender.expect(rb"\+CMGS: 1\r\n\r\nOK\r\n")
    index = int(receiver.expect(rb'\+CMTI: "SM",(\d+)\r\n').group(1))
    assert time.monotonic() - sent_at >= 0.5  # not before the network's delay
    answer = receiver.command(f"AT+CMGR={index}")
    decoded = read_incoming_sms(answer.split("\r\n")[2])
    assert decoded["sender"] == number_of(hub, 0)
    assert decoded["content"] == "simedge number check AB12"
    (submitted,) = hub.events("submitted")
    assert (submitted["modem"], submitted["to_modem"]) == (0, 2)


def test_an_sms_to_a_number_elsewhere_leaves_the_hub(modem_hub: StartHub) -> None:
    hub = modem_hub(count=2, profile="ec25", sms_delay=0.1)
    sender = open_port(hub, 0)
    pdu_hex, length = encode_submit("hello", "+15550001111")
    sender.serial.write(f"AT+CMGS={length}\r".encode())
    sender.expect(rb"> ")
    sender.serial.write(pdu_hex.encode() + CTRL_Z)
    sender.expect(rb"OK\r\n")
    (submitted,) = hub.events("submitted")
    assert submitted["to_modem"] is None
    assert hub.events("injected") == []


def test_control_sets_credit_and_service(modem_hub: StartHub) -> None:
    hub = modem_hub(count=1, profile="ec25")
    port = open_port(hub, 0)
    port.command("AT+CMEE=1")
    pdu_hex, length = encode_submit("x", "+15550001111")

    def send() -> str:
        port.serial.write(f"AT+CMGS={length}\r".encode())
        port.expect(rb"> ")
        port.serial.write(pdu_hex.encode() + CTRL_Z)
        return port.expect(rb"\r\n(OK|\+CMS ERROR: \d+)\r\n").group(1).decode()

    control(hub, "sim", modem=0, credit=False)
    assert send() == "+CMS ERROR: 21"
    control(hub, "sim", modem=0, credit=True, refusal=42)
    assert send() == "+CMS ERROR: 42"
    control(hub, "sim", modem=0, refusal=None, service=False)
    assert send() == "+CMS ERROR: 331"
    control(hub, "sim", modem=0, service=True)
    assert send() == "OK"
    with pytest.raises(ControlError, match="credit: expected true or false"):
        control(hub, "sim", modem=0, credit="no")


def test_a_call_placed_through_control_rings_until_ath(modem_hub: StartHub) -> None:
    hub = modem_hub(count=1, profile="sim800", ring_interval=0.2)
    port = open_port(hub, 0)
    port.command("AT+CLIP=1")
    answer = control(hub, "call", modem=0, caller="+79031234567", give_up_after=30)
    assert answer["call"] == "call-000001"
    for _ in range(2):  # rings again and again
        port.expect(rb'RING\r\n\r\n\+CLIP: "\+79031234567",145,"",0,"",0\r\n')
    port.command("ATH")
    kinds = [event["kind"] for event in hub.events("call-rejected")]
    assert kinds == ["call-rejected"]
    with pytest.raises(ControlError, match="caller: expected a phone number"):
        control(hub, "call", modem=0, caller="not a number")
