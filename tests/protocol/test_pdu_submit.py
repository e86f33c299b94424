"""SMS-SUBMIT encoding (what AT+CMGS sends) against a published vector, our decoder and
smspdudecoder's independent SMS-SUBMIT decoder."""

from __future__ import annotations

from io import StringIO

import pytest

from agent.protocol import pdu
from agent.protocol.pdu import SmsSubmit, encode_submit

smspdu_fields = pytest.importorskip(
    "smspdudecoder.fields", reason="smspdudecoder is in the test extra: pip install -e .[test]"
)

# The SMS-SUBMIT example every PDU tutorial since the early 2000s works through (the
# dreamfabric.com "SMS messages and the PDU format" page): "hellohello" to +46708251358,
# SMSC from the SIM, validity 0xAA.
PUBLISHED = ("hellohello", "+46708251358", "0011000B916407281553F80000AA0AE8329BFD4697D9EC37")


def test_the_published_vector_byte_for_byte() -> None:
    text, recipient, expected = PUBLISHED
    assert encode_submit(text, recipient) == (expected, len(expected) // 2 - 1)


CASES = [
    ("simedge number check K7Q2X9WD4MPA", "+79161234567", "gsm7"),
    ("{curly} [square] ~tilde~ €uro", "+447802000332", "gsm7"),
    ("Проверка номера K7Q2X9", "+2348031000000", "ucs2"),
    ("emoji 🙂 needs a surrogate pair", "89161234567", "ucs2"),
    ("x" * 160, "+12063130004", "gsm7"),
    ("ж" * 70, "+919810051914", "ucs2"),
]


@pytest.mark.parametrize(("text", "recipient", "encoding"), CASES)
def test_our_decoder_reads_back_what_we_encode(text: str, recipient: str, encoding: str) -> None:
    pdu_hex, length = encode_submit(text, recipient)
    assert length == len(pdu_hex) // 2 - 1  # AT+CMGS counts the TPDU without the SMSC octet
    sms = pdu.decode(pdu_hex)
    assert isinstance(sms, SmsSubmit)
    assert (sms.text, sms.recipient, sms.encoding) == (text, recipient, encoding)
    assert sms.smsc is None
    assert sms.message_reference == 0
    assert sms.validity == 0xAA
    assert not sms.problems


@pytest.mark.parametrize(("text", "recipient", "encoding"), CASES)
def test_smspdudecoder_reads_what_we_encode(text: str, recipient: str, encoding: str) -> None:
    pdu_hex, _ = encode_submit(text, recipient)
    theirs = smspdu_fields.SMSSubmit.decode(StringIO(pdu_hex))
    assert theirs["header"]["mti"] == "submit"
    assert theirs["dcs"]["encoding"] == {"gsm7": "gsm", "ucs2": "ucs2"}[encoding]
    number = theirs["recipient"]["number"]
    assert number == recipient.lstrip("+")
    assert theirs["user_data"]["data"] == text


def test_forcing_ucs2_on_plain_text() -> None:
    sms = pdu.decode(encode_submit("abc", "+79161234567", encoding="ucs2")[0])
    assert isinstance(sms, SmsSubmit)
    assert (sms.encoding, sms.text) == ("ucs2", "abc")


@pytest.mark.parametrize(
    ("text", "recipient", "encoding", "problem"),
    [
        ("x" * 161, "+79161234567", None, "161 septets"),
        ("€" * 81, "+79161234567", None, "162 septets"),  # each € is an escape pair
        ("ж" * 71, "+79161234567", None, "142 octets"),
        ("ж", "+79161234567", "gsm7", "outside the GSM 7-bit"),
        ("hi", "+79161234567", "latin1", "encoding must be"),
        ("hi", "MegaFon", None, "not a phone number"),
        ("hi", "+7916-123", None, "not a phone number"),
    ],
)
def test_what_one_sms_cannot_carry_is_refused_by_name(
    text: str, recipient: str, encoding: str | None, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        encode_submit(text, recipient, encoding=encoding)
