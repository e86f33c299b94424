"""What the decoder tolerates (docs/pdu-decoder.md): SIM record padding after a status
report, the modem's <length>, and salvage of readable SMS with a faulty field.

Vectors are built here from the field layout of TS 23.040 9.2.2 (octet offsets noted),
starting from one SMS-DELIVER the encoder makes and changing the field under test.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import PduError
from agent.protocol.pdu import Problem, SmsDeliver, SmsStatusReport, decode, encode_deliver

STAMP = datetime(2025, 3, 14, 9, 26, 53, tzinfo=timezone(timedelta(hours=3)))
# SMSC +79168999100 (octets 0-7), first octet 04 (8), TP-OA +79161234567 (9-16),
# PID 00 (17), DCS 00 (18), SCTS 52 30 41 90 62 35 21 (19-25), UDL 11 = 17 septets (26),
# "Your code is 4711" packed (27-41).
GOOD = "07919761989901F0040B919761214365F700005230419062352111D9775D0E1ABFC965507A0EA2DD6231"
HEAD, SCTS, UD = GOOD[:38], GOOD[38:52], GOOD[52:]
TEXT = "Your code is 4711"

# The status report of issue 15: reference 120, recipient 52502781 (national), status 0,
# both times 2024-12-08 12:59 +01:00; SMSC field 7 octets, TPDU 23 octets, then a SIM
# record's FF padding (TS 51.011 10.5.3: a record is 176 octets, 1 of them the status).
REPORT = "06918509002100067808A025057218422180219500404221802195004000"
REPORT_TPDU_OCTETS = 23


def test_the_vector_is_what_the_encoder_makes() -> None:
    assert encode_deliver(TEXT, "+79161234567", timestamp=STAMP)[0].hex().upper() == GOOD
    assert decode(GOOD).text == TEXT


# --- item 1: FF padding after a status report ---------------------------------------------


@pytest.mark.parametrize("padding", [1, 2, 175 - len(REPORT) // 2])
def test_a_status_report_padded_with_ff_decodes(padding: int) -> None:
    report = decode(REPORT + "FF" * padding)
    assert isinstance(report, SmsStatusReport)
    one = datetime(2024, 12, 8, 12, 59, tzinfo=timezone(timedelta(hours=1)))
    assert (report.message_reference, report.recipient, report.recipient_type) == (
        120,
        "52502781",
        "national",
    )
    assert (report.status, report.delivered, report.timestamp, report.discharge_time) == (
        0,
        True,
        one,
        one,
    )
    assert (report.pid, report.dcs, report.text, report.problems) == (None, None, "", ())


def test_the_modem_length_cuts_the_padding_whatever_it_holds() -> None:
    # Padding that is not all FF (a reused record) would be read as a TP-PI: <length> says
    # where the TPDU ends, as +CMGR/+CMGL print it.
    report = decode(REPORT + "0712AB" + "FF" * 40, length=REPORT_TPDU_OCTETS)
    assert isinstance(report, SmsStatusReport)
    assert (report.pid, report.dcs, report.status) == (None, None, 0)
    no_smsc = decode(REPORT[14:] + "01" * 9, has_smsc=False, length=REPORT_TPDU_OCTETS)
    assert no_smsc.message_reference == 120


def test_reserved_parameter_indicator_bits_are_ignored() -> None:
    # TP-PI 0x7B: bits 3-6 reserved (ignored), bit 0 PID, bit 1 DCS; then PID 00, DCS 00.
    report = decode(REPORT + "7B0000")
    assert (report.pid, report.dcs, report.text) == (0, 0, "")
    # Bit 7 set: one extension octet follows (reserved, skipped); then the PID it announced.
    report = decode(REPORT + "81" + "00" + "3F")
    assert report.pid == 0x3F


def test_a_status_report_with_user_data_gives_pid_text_and_class() -> None:
    # TP-PI 07: PID 00, DCS F1 (class 1, GSM 7-bit), UDL 2 "hi" (E8 34).
    report = decode(REPORT + "0700F102E834")
    assert (report.pid, report.dcs, report.message_class, report.encoding, report.text) == (
        0,
        0xF1,
        1,
        "gsm7",
        "hi",
    )


def test_a_parameter_indicator_that_announces_missing_fields_is_still_refused() -> None:
    with pytest.raises(PduError) as caught:
        decode(REPORT + "02")
    assert caught.value.field == "data coding scheme"


# --- item 2: salvage ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scts", "offset", "fragment"),
    [
        (SCTS[:12] + "C2", 25, "time zone octet C2 is not decimal"),
        (SCTS[:12] + "A0", 25, "time zone octet A0 is not decimal"),
        ("00" * 7, 19, "all zero: the network sent no time"),
        ("52" + "13" + SCTS[4:], 19, "not a valid time"),  # month 31
        (SCTS[:2] + "3A" + SCTS[4:], 20, "octet 3A is not two decimal digits"),
    ],
)
def test_an_unusable_timestamp_keeps_the_text_and_says_why(
    scts: str, offset: int, fragment: str
) -> None:
    pdu = HEAD + scts + UD
    with pytest.raises(PduError, match=fragment):
        decode(pdu)
    sms = decode(pdu, salvage=True)
    assert isinstance(sms, SmsDeliver)
    assert (sms.text, sms.sender, sms.timestamp) == (TEXT, "+79161234567", None)
    (problem,) = sms.problems
    assert (problem.field, problem.offset) == ("service centre timestamp", offset)
    assert fragment in problem.message
    assert str(problem).startswith(f"service centre timestamp at octet {offset}: ")


def test_user_data_shorter_than_its_length_decodes_what_is_there() -> None:
    # UDL 14 (20 septets = 18 octets) over the 15 octets of 17 septets that are there.
    longer = HEAD + SCTS + "14" + UD[2:]
    with pytest.raises(PduError, match="user data length 20 septets runs past the end"):
        decode(longer)
    sms = decode(longer, salvage=True)
    assert sms.text == TEXT
    assert [problem.field for problem in sms.problems] == ["user data"]
    # Cut in the middle: what is there is the readable part, and it is kept.
    cut = decode(GOOD[:-10], salvage=True)
    assert cut.text == "Your code i"  # 10 octets hold 11 septets
    assert cut.timestamp == STAMP


def test_ucs2_user_data_cut_mid_character_is_flagged_damaged() -> None:
    ucs2 = encode_deliver("Код 4711", "+79161234567", timestamp=STAMP)[0].hex().upper()
    sms = decode(ucs2[:-2], salvage=True)  # the last "1" loses its low octet
    assert sms.text == "Код 471\ufffd"
    assert sms.text_damaged
    assert sms.problems[0].field == "user data"


def test_an_element_overrunning_its_header_keeps_the_text() -> None:
    # First octet 44 (UDHI); DCS 08; UDL 16; UDHL 05, IEI 00 length 07 (past the 5 header
    # octets), then "Код 4711" in UCS2 after the header as the header length says.
    pdu = (
        HEAD[:16]
        + "440B919761214365F70008"
        + SCTS
        + "16"
        + "050007070201"
        + "041A043E043400200034003700310031"
    )
    with pytest.raises(PduError, match="element 00 of length 7 runs past the header"):
        decode(pdu)
    sms = decode(pdu, salvage=True)
    assert (sms.text, sms.udh, sms.concat) == ("Код 4711", (), None)
    assert sms.problems == (
        Problem("user data header", 28, "element 00 of length 7 runs past the header (5 octets)"),
    )


def test_user_data_length_beyond_the_maximum_is_salvaged() -> None:
    # UDL A1 = 161 septets, one more than 23.040 allows, over the same 15 octets.
    sms = decode(HEAD + SCTS + "A1" + UD[2:], salvage=True)
    assert sms.text == TEXT
    assert sms.problems[0].message == "161 septets exceed 160"


def test_several_faults_are_all_listed() -> None:
    sms = decode(HEAD + "00" * 7 + "14" + UD[2:], salvage=True)
    assert sms.text == TEXT
    assert [problem.field for problem in sms.problems] == ["service centre timestamp", "user data"]


@pytest.mark.parametrize(
    ("pdu", "field"),
    [
        (HEAD + "00" * 7, "user data length"),  # ends before the user data
        (HEAD + "00" * 7 + "11", "service centre timestamp"),  # nothing after the length
        (HEAD[:16] + "440B919761214365F70000" + SCTS + "03" + "09", "user data header"),
        (HEAD[:20] + "0B9197", "originating address"),
    ],
)
def test_no_readable_text_is_still_refused(pdu: str, field: str) -> None:
    with pytest.raises(PduError) as caught:
        decode(pdu, salvage=True)
    assert caught.value.field == field
    assert caught.value.raw == pdu


def test_salvage_of_a_sound_pdu_changes_nothing() -> None:
    assert decode(GOOD, salvage=True) == decode(GOOD)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=7, max_size=7))
def test_no_timestamp_ever_costs_the_text(scts: bytes) -> None:
    # Any 7 octets in the SCTS: strict may refuse, salvage always forwards the text.
    sms = decode(HEAD + scts.hex() + UD, salvage=True)
    assert sms.text == TEXT
    if sms.timestamp is None:
        assert sms.problems[0].field == "service centre timestamp"
    else:
        assert sms.timestamp.astimezone(UTC).year >= 2000


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(UD) // 2 - 2))
def test_every_cut_of_the_user_data_keeps_a_prefix_of_the_text(cut_octets: int) -> None:
    octets = len(UD) // 2 - 1 - cut_octets  # user data octets left after the UDL
    pdu = GOOD[: len(GOOD) - 2 * cut_octets]
    sms = decode(pdu, salvage=True)
    assert TEXT.startswith(sms.text)
    assert len(sms.text) == min(17, octets * 8 // 7)


def test_a_lying_length_does_not_turn_the_spare_bits_into_an_at_sign() -> None:
    # 7 septets fill 7 octets with 7 spare bits (23.038 6.1.2.3.1); UDL 09 claims more
    # than the octets hold, so the count is taken from the octets: not "abcdefg@".
    (pdu,) = encode_deliver("abcdefg", "+79161234567", timestamp=STAMP)
    udl_at = len(GOOD) // 2 - 16  # the same head as GOOD: UDL at octet 26
    assert pdu[udl_at] == 7
    lying = pdu[:udl_at] + b"\x09" + pdu[udl_at + 1 :]
    sms = decode(lying, salvage=True)
    assert sms.text == "abcdefg"
    assert sms.problems[0].field == "user data"
