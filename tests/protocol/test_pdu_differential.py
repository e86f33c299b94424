"""Our decoder against two independent ones on a generated corpus.

- smspdudecoder (pure Python, in the test extra).
- python-gammu (``gammu.DecodePDU``, libgammu's decoder), when importable: it needs the
  libgammu-dev system package to build, so it is skipped where it is missing.

Known disagreements of the other decoders, checked as such rather than ignored:

- Neither implements the national language shift tables (23.038 Annex A): for those
  PDUs only sender, time and concatenation are compared, and our text is compared with
  the text that was encoded.
- python-gammu's ``Text`` for GSM 7-bit text with escape sequences (``€``, ``{`` ...) is
  longer than the text by one code unit per escape sequence (its ``Length`` counts
  septets, and the binding reads that many units): the surplus is checked to be exactly
  that long and then cut off.
- smspdudecoder returns the timestamp converted to UTC: compared as instants.
- The SCTS year has two digits. We read 00-99 as 2000-2099; libgammu pivots at 90
  (90-99 are 1990s, and python-gammu then garbles them), so the corpus stays in 2000-2089.
- smspdudecoder does not always bound GSM 7-bit text by TP-UDL: when the last octet has
  7 spare bits it may read them as one more septet, an "@" (0x00) with our zero
  padding. (23.038 6.1.2.3.1 has senders of length-less CBS/USSD pad with CR for this
  reason; an SMS has TP-UDL.) Checked as exactly one extra "@" in exactly that case.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest

from agent.protocol import gsm7
from agent.protocol.pdu import SmsDeliver, decode, encode_deliver

smspdudecoder_easy = pytest.importorskip(
    "smspdudecoder.easy", reason="smspdudecoder is in the test extra: pip install -e .[test]"
)


@dataclass(frozen=True)
class Case:
    pdu: bytes
    text: str  # the whole text that was encoded (this PDU may be one part of it)
    national: bool  # uses a national language shift table
    message: int  # which encoded message this PDU belongs to


def build_corpus(seed: int = 23040) -> list[Case]:
    """Every encoding, single and concatenated (8- and 16-bit references), international,
    national and alphanumeric senders, and time zones from -12:00 to +14:00 including
    the odd ones (-03:30, +05:45, +12:45)."""
    rng = random.Random(seed)
    gsm_chars = [c for c in gsm7.DEFAULT_ALPHABET if c != "\x1b"]
    extension = list(gsm7.DEFAULT_EXTENSION.values())
    alphabets = {
        "gsm7": lambda n: "".join(rng.choice(gsm_chars) for _ in range(n)),
        "gsm7-ext": lambda n: "".join(
            rng.choice(extension if rng.random() < 0.2 else gsm_chars) for _ in range(n)
        ),
        "cyrillic": lambda n: "".join(
            rng.choice("абвгдеёжзийклмнопрстуфхцчшщъыьэюя .,!") for _ in range(n)
        ),
        "emoji": lambda n: "".join(rng.choice(["😀", "🚀", "ж", "a", " ", "𝄞"]) for _ in range(n)),
    }
    senders = [
        "+79161234567",
        "+4915112345678",
        "89161234567",
        "1800",
        "VKcom",
        "Google",
        "Sber-Bank",
        "A1",
    ]
    zones = [-48, -14, -4, 0, 1, 8, 13, 23, 36, 51, 56]
    corpus: list[Case] = []
    for number in range(150):
        kind = rng.choice(list(alphabets))
        length = rng.choice([1, 5, 40, 70, 160, 161, 200, 400])
        text = alphabets[kind](length)
        stamp = datetime(
            2000 + rng.randrange(90),
            rng.randrange(1, 13),
            rng.randrange(1, 29),
            rng.randrange(24),
            rng.randrange(60),
            rng.randrange(60),
            tzinfo=timezone(timedelta(minutes=15 * rng.choice(zones))),
        )
        pdus = encode_deliver(
            text,
            rng.choice(senders),
            timestamp=stamp,
            ref_bits=rng.choice([8, 16]),
            message_class=rng.choice([None, None, 0, 1, 2, 3]),
            smsc=rng.choice(["+79168999100", None]),
            reference=number if rng.random() < 0.5 else None,
        )
        corpus.extend(Case(pdu, text, False, number) for pdu in pdus)
    for number, language in enumerate(
        ("turkish", "spanish", "portuguese", "hindi", "tamil", "urdu"), start=1000
    ):
        table = sorted(gsm7.encode_table(*_shift_pair(language)))
        text = "".join(rng.choice(table) for _ in range(90))
        for pdu in encode_deliver(
            text,
            "+905321234567",
            language=language,
            shift="both" if language != "spanish" else "single",
            timestamp=datetime(2024, 5, 1, tzinfo=UTC),
        ):
            corpus.append(Case(pdu, text, True, number))
    return corpus


def _shift_pair(language: str) -> tuple[int, int]:
    ident = gsm7.language_by_name(language).ident
    return (0 if language == "spanish" else ident), ident


def eight_bit_cases() -> list[bytes]:
    """8-bit data PDUs: the encoder writes text only, so these are built by hand."""
    head = bytes.fromhex("07919761989901F0040B919761214365F700")
    stamp = bytes.fromhex("42501021035421")
    return [
        head + bytes((dcs,)) + stamp + bytes((len(data),)) + data
        for dcs, data in ((0x04, bytes(range(20))), (0xF5, b"\xff\x00\x80binary"))
    ]


CORPUS = build_corpus()


def ours(pdu: bytes) -> SmsDeliver:
    sms = decode(pdu)
    assert isinstance(sms, SmsDeliver)
    return sms


def test_corpus_covers_what_it_claims() -> None:
    decoded = [ours(case.pdu) for case in CORPUS]
    assert {sms.encoding for sms in decoded} == {"gsm7", "ucs2"}
    assert {sms.sender_type for sms in decoded} == {"international", "national", "alphanumeric"}
    assert {sms.concat.ref_bits for sms in decoded if sms.concat} == {8, 16}
    assert {sms.timestamp.utcoffset() for sms in decoded} >= {
        timedelta(hours=-3, minutes=-30),
        timedelta(hours=5, minutes=45),
        timedelta(hours=-12),
        timedelta(hours=14),
    }
    assert len(CORPUS) > 150


def test_parts_rejoin_to_the_encoded_texts() -> None:
    joined: dict[int, str] = {}
    for case in CORPUS:
        joined[case.message] = joined.get(case.message, "") + ours(case.pdu).text
    assert all(joined[case.message] == case.text for case in CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.pdu.hex()[:24])
def test_agrees_with_smspdudecoder(case: Case) -> None:
    mine = ours(case.pdu)
    theirs = smspdudecoder_easy.read_incoming_sms(case.pdu.hex().upper())
    assert theirs["sender"] == mine.sender
    assert theirs["date"] == mine.timestamp  # an instant: theirs is converted to UTC
    if mine.concat is None:
        assert theirs["partial"] is False
    else:
        assert theirs["partial"] == {
            "reference": f"{mine.concat.ref}-{mine.concat.total}",
            "parts_count": mine.concat.total,
            "part_number": mine.concat.seq,
        }
    if case.national:  # smspdudecoder has no national language shift tables
        return
    content = theirs["content"]
    if mine.encoding == "gsm7" and content != mine.text:
        # Their known surplus: the zero padding bits read as one more septet, an "@".
        assert content == mine.text + "@"
        assert user_data_length(case.pdu) % 8 == 7
        content = content[: len(mine.text)]
    assert content == mine.text


def user_data_length(pdu: bytes) -> int:
    """TP-UDL of an SMS-DELIVER that starts with the SMSC field."""
    at = pdu[0] + 2  # past the SMSC field and the first octet
    at += 2 + (pdu[at] + 1) // 2  # originating address
    return pdu[at + 1 + 1 + 7]  # past PID, DCS, SCTS


@pytest.mark.parametrize("pdu", eight_bit_cases(), ids=["general-8bit", "group-f-8bit"])
def test_8bit_data_agrees_with_smspdudecoder(pdu: bytes) -> None:
    mine = ours(pdu)
    theirs = smspdudecoder_easy.read_incoming_sms(pdu.hex())
    assert (mine.encoding, theirs["content"]) == ("8bit", mine.data)


gammu_cases = pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.pdu.hex()[:24])


def gammu_module():  # type: ignore[no-untyped-def]
    return pytest.importorskip(
        "gammu",
        reason="python-gammu is not installed (needs libgammu-dev + pkg-config to build)",
    )


@gammu_cases
def test_agrees_with_gammu(case: Case) -> None:
    gammu = gammu_module()
    mine = ours(case.pdu)
    theirs = gammu.DecodePDU(case.pdu)
    assert theirs["Type"] == "Deliver"
    assert theirs["Number"] == mine.sender
    assert theirs["DateTime"] == mine.timestamp
    assert theirs["DateTime"].utcoffset() == mine.timestamp.utcoffset()
    assert theirs["Class"] == (-1 if mine.message_class is None else mine.message_class)
    udh = theirs["UDH"]
    if mine.concat is None:
        assert udh["PartNumber"] == -1
    else:
        ref_key = "ID8bit" if mine.concat.ref_bits == 8 else "ID16bit"
        assert (udh[ref_key], udh["AllParts"], udh["PartNumber"]) == (
            mine.concat.ref,
            mine.concat.total,
            mine.concat.seq,
        )
    if case.national:  # libgammu has no national language shift tables
        return
    text = theirs["Text"]
    if mine.encoding == "gsm7":
        # The binding returns one character per septet, so each escape sequence leaves
        # a surplus past libgammu's NUL terminator, and that surplus is whatever the
        # buffer held before (zeros on one machine, stale text on another). The decoded
        # text is what precedes the terminator; GSM 7-bit never decodes to U+0000.
        assert "\x00" not in mine.text
        escapes = sum(len(gsm7.encode_table()[char]) - 1 for char in mine.text)
        if escapes:
            assert text[len(mine.text)] == "\x00"
        text = text.split("\x00", 1)[0]
    assert text == mine.text


@pytest.mark.parametrize("pdu", eight_bit_cases(), ids=["general-8bit", "group-f-8bit"])
def test_8bit_data_agrees_with_gammu(pdu: bytes) -> None:
    gammu = gammu_module()
    assert gammu.DecodePDU(pdu)["Text"] == ours(pdu).data
