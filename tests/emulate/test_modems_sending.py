"""The emulated modem sends SMS (AT+CMGS, PDU and text mode) and takes calls, as a pure
state machine: bytes in, bytes out, a clock moved by hand."""

from __future__ import annotations

import pytest

from agent.emulate.modems.modem import SMS_BODY_LIMIT, Submitted
from agent.protocol.framer import CTRL_Z, ESC
from agent.protocol.pdu import encode_submit
from tests.emulate.test_modems_unit import Rig


def sending_rig(profile: str = "ec25") -> tuple[Rig, list[Submitted]]:
    rig = Rig(profile)
    rig.quiet()
    rig.talk("AT+CMEE=1")
    sent: list[Submitted] = []
    rig.modem.on_submit = sent.append
    return rig, sent


def submit(rig: Rig, pdu_hex: str, length: int) -> tuple[bytes, bytes]:
    """AT+CMGS=<length>, then the body after the prompt: (prompt answer, final answer)."""
    prompt = rig.talk(f"AT+CMGS={length}")
    rig.modem.feed(rig.at, pdu_hex.encode() + CTRL_Z)
    rig.clock.advance(0)
    return prompt, rig.take()


@pytest.mark.parametrize("profile", ["sim800", "ec25", "huawei"])
def test_pdu_mode_send_answers_a_reference_and_hands_the_sms_to_the_network(
    profile: str,
) -> None:
    rig, sent = sending_rig(profile)
    pdu_hex, length = encode_submit("Проверка K7Q2", "+447802000332")
    prompt, final = submit(rig, pdu_hex, length)
    assert prompt == b"\r\n> "
    assert final == b"\r\n+CMGS: 1\r\n\r\nOK\r\n"
    assert sent == [Submitted("+447802000332", "Проверка K7Q2", 1)]
    _, again = submit(rig, *encode_submit("two", "+447802000332"))
    assert again == b"\r\n+CMGS: 2\r\n\r\nOK\r\n"  # TP-MR counts up per SIM


def test_text_mode_send() -> None:
    rig, sent = sending_rig()
    rig.talk("AT+CMGF=1")
    assert rig.talk('AT+CMGS="+79161234567"') == b"\r\n> "
    rig.modem.feed(rig.at, b"plain text" + CTRL_Z)
    assert rig.take() == b"\r\n+CMGS: 1\r\n\r\nOK\r\n"
    assert sent == [Submitted("+79161234567", "plain text", 1)]


def test_escape_cancels_without_sending() -> None:
    rig, sent = sending_rig()
    pdu_hex, length = encode_submit("never", "+79161234567")
    rig.talk(f"AT+CMGS={length}")
    rig.modem.feed(rig.at, pdu_hex.encode() + ESC)
    assert rig.take() == b"\r\nOK\r\n"
    assert sent == []
    assert rig.talk("AT") == b"\r\nOK\r\n"  # back to commands


@pytest.mark.parametrize(
    ("body", "length", "why"),
    [
        ("00110", 20, "odd hex"),
        ("ZZ", 20, "not hex"),
        (encode_submit("hi", "+79161234567")[0], 99, "length is not the TPDU's"),
        # a well-formed SMS-DELIVER is not something a module sends
        (
            "0791448720003023240DD0E474D81C0EBB010000111011315214000BE474D81C0EBB5DE3771B",
            36,
            "a DELIVER",
        ),
    ],
)
def test_a_bad_body_is_cms_304(body: str, length: int, why: str) -> None:
    rig, sent = sending_rig()
    rig.talk(f"AT+CMGS={length}")
    rig.modem.feed(rig.at, body.encode() + CTRL_Z)
    assert rig.take() == b"\r\n+CMS ERROR: 304\r\n", why
    assert sent == []


def test_a_body_past_the_bound_is_refused_and_the_port_recovers() -> None:
    rig, sent = sending_rig()
    rig.talk("AT+CMGS=20")
    rig.modem.feed(rig.at, b"A" * (SMS_BODY_LIMIT + 500))
    assert rig.take() == b"\r\n+CMS ERROR: 304\r\n"
    assert rig.talk("AT") == b"\r\nOK\r\n"
    assert sent == []


def test_the_network_refuses_as_real_smscs_do() -> None:
    rig, sent = sending_rig()
    pdu = encode_submit("probe", "+79161234567")
    rig.sim.credit = False
    assert submit(rig, *pdu)[1] == b"\r\n+CMS ERROR: 21\r\n"  # no credit
    rig.sim.credit = True
    rig.sim.sms_refusal = 38
    assert submit(rig, *pdu)[1] == b"\r\n+CMS ERROR: 38\r\n"
    rig.sim.sms_refusal = None
    rig.modem.set_network(available=False)
    rig.take()
    assert submit(rig, *pdu)[1] == b"\r\n+CMS ERROR: 331\r\n"  # no service
    rig.talk("AT+CMEE=2")
    rig.modem.set_network(available=True)
    rig.sim.credit = False
    assert submit(rig, *pdu)[1] == b"\r\n+CMS ERROR: short message transfer rejected\r\n"
    assert sent == []


def calling_rig(profile: str) -> tuple[Rig, list[tuple[str, str]]]:
    rig = Rig(profile, ring_interval=3.0)
    rig.quiet()
    calls: list[tuple[str, str]] = []
    rig.modem.on_call = lambda kind, call_id, **details: calls.append((kind, call_id))
    return rig, calls


def test_a_call_rings_with_caller_id_every_few_seconds_until_chup() -> None:
    rig, calls = calling_rig("ec25")
    rig.talk("AT+CLIP=1")
    rig.modem.incoming_call("c1", "+79031234567", give_up_after=60)
    clip = b'\r\nRING\r\n\r\n+CLIP: "+79031234567",145,"",0,"",0\r\n'
    assert rig.take() == clip
    rig.clock.advance(3.0)
    assert rig.take() == clip
    assert rig.talk("AT+CHUP") == b"\r\nOK\r\n"
    rig.clock.advance(30.0)
    assert rig.take() == b""  # rejected: no more rings, no NO CARRIER
    assert calls == [("ringing", "c1"), ("rejected", "c1")]


def test_sim800_rejects_with_ath_and_refuses_chup() -> None:
    rig, calls = calling_rig("sim800")
    rig.modem.incoming_call("c1", "89031234567", give_up_after=60)
    assert rig.take() == b"\r\nRING\r\n"  # no +CLIP until AT+CLIP=1
    rig.talk("AT+CLIP=1")
    rig.clock.advance(3.0)
    assert rig.take() == b'\r\nRING\r\n\r\n+CLIP: "89031234567",129,"",0,"",0\r\n'
    assert rig.talk("AT+CMEE=1;+CHUP") == b"\r\n+CME ERROR: 100\r\n"
    assert rig.talk("ATH") == b"\r\nOK\r\n"
    rig.clock.advance(10.0)
    assert rig.take() == b""
    assert calls[-1] == ("rejected", "c1")


def test_a_caller_who_gives_up_ends_with_no_carrier() -> None:
    rig, calls = calling_rig("ec25")
    rig.modem.incoming_call("c1", "+79031234567", give_up_after=7.0)
    rig.clock.advance(7.0)
    assert rig.take().endswith(b"\r\nNO CARRIER\r\n")
    rig.clock.advance(30.0)
    assert rig.take() == b""
    assert calls == [("ringing", "c1"), ("given up", "c1")]


def test_one_call_at_a_time_and_none_without_service() -> None:
    rig, _ = calling_rig("ec25")
    rig.modem.incoming_call("c1", "+79031234567", give_up_after=60)
    with pytest.raises(ValueError, match="already ringing"):
        rig.modem.incoming_call("c2", "+79031234568", give_up_after=60)
    rig.talk("ATH")
    rig.modem.set_network(available=False)
    with pytest.raises(ValueError, match="not on the network"):
        rig.modem.incoming_call("c3", "+79031234569", give_up_after=60)


def test_cmgs_length_outside_a_tpdu_is_refused_before_the_prompt() -> None:
    rig, _ = sending_rig()
    assert rig.talk("AT+CMGS=5") == b"\r\n+CMS ERROR: 304\r\n"
    assert rig.talk("AT+CMGS=165") == b"\r\n+CMS ERROR: 304\r\n"


def test_a_ringing_call_is_lost_with_the_network_or_the_sim() -> None:
    rig, calls = calling_rig("ec25")
    rig.modem.incoming_call("c1", "+79031234567", give_up_after=60)
    rig.modem.set_network(available=False)
    rig.modem.set_network(available=True)
    rig.modem.incoming_call("c2", "+79031234567", give_up_after=60)
    rig.modem.remove_sim()
    rig.take()
    rig.clock.advance(60)
    assert rig.take() == b""  # no ring, no NO CARRIER after the loss
    assert calls == [("ringing", "c1"), ("lost", "c1"), ("ringing", "c2"), ("lost", "c2")]
