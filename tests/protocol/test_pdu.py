"""SMS PDU decoding and encoding (TS 23.040 / 23.038) against published vectors, by
property, and against hostile input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.errors import PduError
from agent.protocol import gsm7
from agent.protocol.pdu import (
    Concat,
    Ports,
    SmsDeliver,
    SmsStatusReport,
    SmsSubmit,
    decode,
    encode_deliver,
)

# --- published vectors -------------------------------------------------------------------
# MM = ModemManager, src/tests/test-sms-part-3gpp.c (real PDUs captured from networks).

MM_PDU1 = (  # test_pdu1: extension characters, negative time zone (-05:00)
    "07912104442961F4040B916171957291F800001120821105050A6AC8B2BC7C9A83C220F6DB7D2ECB41ED"
    "F27C1E3E97411BDE06754FD3D1A0F9BB5D0695F1F4B29B5C2683C6E8B03C3CA697E5F34D6AE303D1D1F2"
    "F7DD0D4ABB59A0797D8C0685E7A00028EC26832A960B28EC2683BE6050780EBA97D96C17"
)
MM_PDU2 = (  # test_pdu2: alphanumeric sender "InternetSMS", UCS2 Cyrillic
    "07919730071111F10414D04937BD2C7797E9D3E614000811309291024061080442043504410442"
)
MM_PDU3 = (  # test_pdu3: the classic "hellohello"
    "07912143658709F1040B918100551512F20000111010214365000AE8329BFD4697D9EC37"
)
MM_PDU3_8BIT = (  # test_pdu3_8bit: DCS 0x04, 8-bit data
    "07912143658709F1040B918100551512F20004111010214365000AE8329BFD4697D9EC37DE"
)
MM_DCSF1 = (  # test_pdu_dcsf1: DCS 0xF1 (class 1), 160 septets, SFR France
    "07913306091093F0040485810000F111604231805180A049B7F90D9A1AA5A01668F8769BD3E4B29B9E2E"
    "B359A03FC85D06A9C3ED707A0EA2CBC3EE79BB4CA7CBCBA05643617DA7C76990FD4D979741EE77DD5E0E"
    "D741ED371D442E83E0E1F9BC0CD281E677D9B84C06C1DF7539E85C9097E520FB9B2E2F83C6EF369C5E06"
    "4D8D52D0BC2E07DDEF77D7DC2C7799E5A0771D040FCB41F402BB0047BFDD6550B80ECAD966"
)
MM_UDHI = (  # test_pdu_udhi: KPN NL welcome message, 16-bit concatenation reference
    "07911356131313F64004850120390011609232239180A006080400100201D7327BFD6EB340E2321BF46E83"
    "EA7790F59D1E97DBE1341B442F83C465763D3DA797E56537C81D0ECB41AB59CC1693C16031D96C064241"
    "E5656838AF03A96230982A269BCD462917C8FA4E8FCBED709A0D7ABBE9F6B0FB5C7683D27350984D4FAB"
    "C9A0B33C4C4FCF5D20EBFB2D079DCB62793DBD06D9C36E50FB2D4E97D9A0B49B5E96BBCB"
)
MM_MULTIPART_1 = (  # test_pdu_multipart, part 1 of 2, 8-bit reference 0x4C, -04:00
    "07912160130320F5440B916171056429F5000021405291650569A00500034C0201A9E8F41C949E83C220"
    "7B599E07B1DFEE33885E9ED341E4F23C7D7697C920FA1B54C697E5E3F4BC0C6AD7D9F434081E96D341E3"
    "303C2C4EB3D3F4BC0B94A483E6E8779D4D06CDD1EF3BA80E0785E7A0B7BB0C6A97E7F3F0B9CC02B9DF74"
    "50780EA2DFDF2C50780EA2A3CBA0BA9B5C96B3F369F71954768FDFE4B4FB0C9297E1F2F2BCECA6CF41"
)
MM_MULTIPART_2 = (
    "07912160130320F6440B916171056429F5000021405291651569320500034C0202E9E8301D44479741F0"
    "B09C3E0785E56590BCCC0ED3CB6410FD0D7ABBCBA0B0FB4D4797E52E10"
)
MM_SUBMIT = (  # test_pdu_stored_by_us: an SMS-SUBMIT listed by AT+CMGL, no SMSC
    "002100098136397339F70008224F60597D4F60597D4F60597D4F60597D4F60597D4F60597D4F60597D4F60597D4F60"
)
MM_STATUS_REPORT = (  # test_pdu_not_stored: an SMS-STATUS-REPORT
    "07914356060013F1065A098136397339F7219011700463802190117004638030"
)
# The receive example of the developershome.com SMS tutorial ("How are you?").
DEVELOPERSHOME = "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07"

# Built for these tests from TS 23.040 9.2.3.24.15/16 and the code points of TS 23.038
# Annex A, packed by the naive bit-string packer of test_gsm7 (reference_pack); no SMSC,
# sender +905321234567, SCTS 2024-05-01 12:30:45 +03:00.
SPANISH_SINGLE = (  # UDH 24 01 02; "Sí, señor: más": í = ESC 0x69, á = ESC 0x61 (A.2.2)
    "00440B910935123254760000425010210354211503240102986ED22CD0BCDC7FCB75A0F6263C07"
)
PORTUGUESE_LOCKING = (  # UDH 25 01 03; "Ação ê": ç 0x09, ã 0x7B, ê 0x04 (A.3.3)
    "00440B910935123254760000425010210354210B032501030826F66F1001"
)
TURKISH_BOTH = (  # UDH 24 01 01 25 01 01; "Şişli ğ€": Ş 0x1C, ş 0x1D, ğ 0x0C, ESC 0x65
    "00440B9109351232547600004250102103542111062401012501019C74879D06313665"
)
# UCS2 with a surrogate pair (U+1F600 = D83D DE00, UTF-16 per RFC 2781): "Hi😀".
UCS2_EMOJI = "00040B919761214365F70008425010210354210800480069D83DDE00"


def zone(hours: float) -> timezone:
    return timezone(timedelta(hours=hours))


@pytest.mark.parametrize(
    ("pdu", "smsc", "sender", "sender_type", "timestamp", "text", "encoding"),
    [
        pytest.param(
            MM_PDU1,
            "+12404492164",
            "+16175927198",
            "international",
            datetime(2011, 2, 28, 11, 50, 50, tzinfo=zone(-5)),
            "Here's a longer message [{with some extended characters}] thrown in, such as "
            "£ and ΩΠΨ and §¿ as well.",
            "gsm7",
            id="mm-extension-negative-zone",
        ),
        pytest.param(
            MM_PDU2,
            "+79037011111",
            "InternetSMS",
            "alphanumeric",
            datetime(2011, 3, 29, 19, 20, 4, tzinfo=zone(4)),
            "тест",
            "ucs2",
            id="mm-alphanumeric-ucs2-cyrillic",
        ),
        pytest.param(
            MM_PDU3,
            "+12345678901",
            "+18005551212",
            "international",
            datetime(2011, 1, 1, 12, 34, 56, tzinfo=UTC),
            "hellohello",
            "gsm7",
            id="mm-hellohello",
        ),
        pytest.param(
            MM_DCSF1,
            "+33609001390",
            "1800",
            "unknown",
            datetime(2011, 6, 24, 13, 8, 15, tzinfo=zone(2)),
            "Info SFR - Confidentiel, à ne jamais transmettre -\r\nVoici votre nouveau mot de "
            "passe : sw2ced pour gérer votre compte SFR sur www.sfr.fr ou par téléphone au 963",
            "gsm7",
            id="mm-dcs-f1-160-septets",
        ),
        pytest.param(
            DEVELOPERSHOME,
            "+31624000000",
            "+31641600986",
            "international",
            datetime(2002, 8, 26, 19, 37, 41, tzinfo=UTC),
            "How are you?",
            "gsm7",
            id="developershome",
        ),
        pytest.param(
            UCS2_EMOJI,
            None,
            "+79161234567",
            "international",
            datetime(2024, 5, 1, 12, 30, 45, tzinfo=zone(3)),
            "Hi😀",
            "ucs2",
            id="ucs2-surrogate-pair",
        ),
    ],
)
def test_published_deliver_vectors(
    pdu: str,
    smsc: str | None,
    sender: str,
    sender_type: str,
    timestamp: datetime,
    text: str,
    encoding: str,
) -> None:
    sms = decode(pdu)
    assert isinstance(sms, SmsDeliver)
    assert (sms.smsc, sms.sender, sms.sender_type) == (smsc, sender, sender_type)
    assert sms.timestamp == timestamp
    assert sms.timestamp.utcoffset() == timestamp.utcoffset()
    assert (sms.text, sms.encoding) == (text, encoding)
    assert not sms.text_damaged


def test_class_1_from_the_data_coding_group_f() -> None:
    sms = decode(MM_DCSF1)
    assert (sms.dcs, sms.message_class, sms.sender_npi) == (0xF1, 1, 5)


def test_class_0_flash_message() -> None:
    # ModemManager's test_pdu3 with TP-DCS set to 0xF0 (23.038 4: group F, class 0) and,
    # second, to 0x10 (general data coding with a class: class 0).
    for dcs in ("F0", "10"):
        flash = MM_PDU3[:36] + dcs + MM_PDU3[38:]
        sms = decode(flash)
        assert (sms.message_class, sms.encoding, sms.text) == (0, "gsm7", "hellohello")


def test_8bit_data_keeps_the_octets_and_has_no_text() -> None:
    sms = decode(MM_PDU3_8BIT)
    assert (sms.encoding, sms.text) == ("8bit", "")
    assert sms.data == bytes.fromhex("E8329BFD4697D9EC37DE")


def test_first_octet_flags_and_pid() -> None:
    sms = decode(MM_UDHI)
    assert (sms.udhi, sms.more_messages, sms.status_report, sms.reply_path) == (
        True,
        True,
        False,
        False,
    )
    assert sms.pid == 0x39
    assert not decode(MM_PDU3).more_messages  # TP-MMS set: nothing more waiting


def test_16bit_concatenation_reference() -> None:
    sms = decode(MM_UDHI)
    assert sms.concat == Concat(ref=0x0010, total=2, seq=1, ref_bits=16)
    assert sms.text.startswith("Welkom, bel om uw Voicemail")
    assert sms.timestamp == datetime(2011, 6, 29, 23, 32, 19, tzinfo=zone(2))


def test_8bit_concatenation_reference_and_its_parts() -> None:
    first, second = decode(MM_MULTIPART_1), decode(MM_MULTIPART_2)
    assert first.concat == Concat(ref=0x4C, total=2, seq=1, ref_bits=8)
    assert second.concat == Concat(ref=0x4C, total=2, seq=2, ref_bits=8)
    assert first.text + second.text == (
        "This is a very long test designed to exercise multi part capability. It should "
        "show up as one message, not as two, as the underlying encoding represents that "
        "the parts are related to one another. "
    )
    assert first.timestamp.utcoffset() == timedelta(hours=-4)


@pytest.mark.parametrize(
    ("pdu", "text", "single", "locking"),
    [
        pytest.param(SPANISH_SINGLE, "Sí, señor: más", 2, 0, id="spanish-single"),
        pytest.param(PORTUGUESE_LOCKING, "Ação ê", 0, 3, id="portuguese-locking"),
        pytest.param(TURKISH_BOTH, "Şişli ğ€", 1, 1, id="turkish-both"),
    ],
)
def test_national_language_shift_vectors(pdu: str, text: str, single: int, locking: int) -> None:
    sms = decode(pdu, has_smsc=True)
    assert (sms.text, sms.language_single, sms.language_locking) == (text, single, locking)


def test_submit_is_recognised() -> None:
    sms = decode(MM_SUBMIT)
    assert isinstance(sms, SmsSubmit)
    assert (sms.smsc, sms.recipient, sms.encoding) == (None, "639337937", "ucs2")
    assert sms.text == "你好你好你好你好你好你好你好你好你"
    assert sms.status_report_request


def test_status_report_is_recognised() -> None:
    sms = decode(MM_STATUS_REPORT)
    assert isinstance(sms, SmsStatusReport)
    assert (sms.smsc, sms.recipient, sms.message_reference, sms.status) == (
        "+34656000311",
        "639337937",
        0x5A,
        0x30,
    )
    assert sms.discharge_time == datetime(2012, 9, 11, 7, 40, 36, tzinfo=zone(2))
    assert not sms.delivered  # 0x30: temporary error, the SMSC stopped trying


def test_no_smsc_flag_reads_the_tpdu_directly() -> None:
    sms = decode(DEVELOPERSHOME[16:], has_smsc=False)
    assert (sms.smsc, sms.text) == (None, "How are you?")


def test_hex_may_be_lower_case_and_surrounded_by_whitespace() -> None:
    assert decode(f"  {MM_PDU3.lower()}\r\n").text == "hellohello"


# --- data coding groups --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dcs", "encoding", "message_class", "compressed"),
    [
        (0x00, "gsm7", None, False),
        (0x04, "8bit", None, False),
        (0x08, "ucs2", None, False),
        (0x0C, "gsm7", None, False),  # reserved alphabet: read as the default (23.038 4)
        (0x11, "gsm7", 1, False),
        (0x1A, "ucs2", 2, False),
        (0x15, "8bit", 1, False),
        (0x20, "gsm7", None, True),
        (0x48, "ucs2", None, False),  # automatic deletion group
        (0x80, "gsm7", None, False),  # reserved coding groups 0x8_-0xB_
        (0xB7, "gsm7", None, False),
        (0xC0, "gsm7", None, False),  # message waiting, discard
        (0xD9, "gsm7", None, False),  # message waiting, store, active, fax
        (0xE8, "ucs2", None, False),  # message waiting, store, UCS2
        (0xF3, "gsm7", 3, False),
        (0xF6, "8bit", 2, False),
    ],
)
def test_every_coding_group(
    dcs: int, encoding: str, message_class: int | None, compressed: bool
) -> None:
    # ModemManager's 10-octet test_pdu3_8bit with TP-DCS replaced: UDL 10 is 10 septets
    # (9 octets) for GSM 7-bit and 10 octets otherwise, both present.
    pdu = bytes.fromhex(MM_PDU3_8BIT)
    sms = decode(pdu[:18] + bytes((dcs,)) + pdu[19:])
    assert (sms.dcs, sms.encoding, sms.message_class, sms.compressed) == (
        dcs,
        encoding,
        message_class,
        compressed,
    )
    if compressed:
        assert (sms.text, sms.data) == ("", bytes.fromhex("E8329BFD4697D9EC37DE"))
    elif encoding == "gsm7":
        assert sms.text == "hellohello"


def test_message_waiting_group_reports_kind_and_state() -> None:
    pdu = bytes.fromhex(MM_PDU3)
    sms = decode(pdu[:18] + b"\xd8" + pdu[19:])  # store, indication active, voicemail
    assert (sms.waiting, sms.waiting_active, sms.text) == ("voicemail", True, "hellohello")


# --- user data header -----------------------------------------------------------------------


def deliver_with_udh(udh: bytes, body: bytes, dcs: int = 0x04) -> bytes:
    """An 8-bit SMS-DELIVER with the given header elements (no SMSC field)."""
    ud = bytes((len(udh),)) + udh + body
    return (
        bytes.fromhex("440B919761214365F700")
        + bytes((dcs,))
        + bytes.fromhex("42501021035421")
        + bytes((len(ud),))
        + ud
    )


def test_ports_and_unknown_elements_are_kept() -> None:
    udh = bytes.fromhex("0504 0B84 23F0".replace(" ", "")) + bytes.fromhex("7002ABCD")
    sms = decode(deliver_with_udh(udh, b"\x01\x02"), has_smsc=False)
    assert sms.ports == Ports(destination=2948, source=9200, bits=16)
    assert [(element.iei, element.data) for element in sms.udh] == [
        (0x05, bytes.fromhex("0B8423F0")),
        (0x70, bytes.fromhex("ABCD")),
    ]
    assert sms.data == b"\x01\x02"
    eight = decode(deliver_with_udh(bytes.fromhex("04021020"), b""), has_smsc=False)
    assert eight.ports == Ports(destination=0x10, source=0x20, bits=8)


def test_impossible_concatenation_values_are_ignored() -> None:
    for values in ("000301 00 01", "000301 02 00", "000301 02 03"):
        udh = bytes.fromhex(values.replace(" ", ""))
        assert decode(deliver_with_udh(udh, b"x"), has_smsc=False).concat is None


# --- encoding -------------------------------------------------------------------------------

TS = datetime(2024, 5, 1, 12, 30, 45, tzinfo=zone(3))


def decoded_parts(pdus: list[bytes]) -> list[SmsDeliver]:
    parts = [decode(pdu) for pdu in pdus]
    assert all(isinstance(part, SmsDeliver) for part in parts)
    return parts  # type: ignore[return-value]


def test_encoder_picks_the_alphabet_and_the_part_sizes() -> None:
    assert decode(encode_deliver("hi €", "+1", timestamp=TS)[0]).encoding == "gsm7"
    assert decode(encode_deliver("hi Ж", "+1", timestamp=TS)[0]).encoding == "ucs2"
    assert decode(encode_deliver("hi", "+1", timestamp=TS, encoding="ucs2")[0]).encoding == ("ucs2")
    assert len(encode_deliver("a" * 160, "+1", timestamp=TS)) == 1
    assert [len(p.text) for p in decoded_parts(encode_deliver("a" * 161, "+1", timestamp=TS))] == [
        153,
        8,
    ]
    sixteen = decoded_parts(encode_deliver("a" * 161, "+1", timestamp=TS, ref_bits=16))
    assert [len(part.text) for part in sixteen] == [152, 9]
    assert len(encode_deliver("ж" * 70, "+1", timestamp=TS)) == 1
    assert [len(p.text) for p in decoded_parts(encode_deliver("ж" * 71, "+1", timestamp=TS))] == [
        67,
        4,
    ]
    ucs16 = decoded_parts(encode_deliver("ж" * 71, "+1", timestamp=TS, ref_bits=16))
    assert [len(part.text) for part in ucs16] == [66, 5]


def test_encoder_never_splits_an_escape_or_a_surrogate_pair() -> None:
    parts = decoded_parts(encode_deliver("a" * 152 + "€" * 5, "+1", timestamp=TS))
    assert parts[0].text == "a" * 152  # the escape pair would not fit in septet 153
    emoji = decoded_parts(encode_deliver("ж" * 66 + "😀" * 3, "+1", timestamp=TS))
    assert emoji[0].text == "ж" * 66
    assert not emoji[0].text_damaged


def test_encoder_senders_class_reference_and_smsc() -> None:
    (pdu,) = encode_deliver("x", "VKcom", timestamp=TS, smsc=None, message_class=0, reference=7)
    sms = decode(pdu)
    assert (sms.smsc, sms.sender, sms.sender_type, sms.message_class) == (
        None,
        "VKcom",
        "alphanumeric",
        0,
    )
    national = decode(encode_deliver("x", "89161234567", timestamp=TS, smsc="79168999100")[0])
    assert (national.sender, national.sender_type, national.smsc) == (
        "89161234567",
        "national",
        "79168999100",
    )
    parts = decoded_parts(
        encode_deliver("y" * 200, "+1", timestamp=TS, reference=0xABCD, ref_bits=16)
    )
    assert {part.concat.ref for part in parts if part.concat} == {0xABCD}
    again = encode_deliver("y" * 200, "+1", timestamp=TS)
    assert again == encode_deliver("y" * 200, "+1", timestamp=TS)  # reproducible reference


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ref_bits": 12}, "ref_bits"),
        ({"message_class": 4}, "message_class"),
        ({"encoding": "latin1"}, "encoding"),
        ({"encoding": "gsm7", "text": "Ж"}, "outside"),
        ({"reference": 256}, "does not fit"),
        ({"sender": "ThisIsTooLongForAnSMS"}, "longer than 11"),
        ({"sender": "Жук"}, "not GSM 7-bit"),
        ({"smsc": "+12ab"}, "not a phone number"),
        ({"timestamp": datetime(2024, 1, 1)}, "timezone-aware"),
        ({"timestamp": datetime(2024, 1, 1, tzinfo=timezone(timedelta(minutes=10)))}, "quarter"),
        ({"timestamp": datetime(1999, 1, 1, tzinfo=UTC)}, "2000-2099"),
        ({"language": "turkish", "shift": "sideways"}, "shift"),
        ({"language": "spanish", "shift": "locking"}, "no locking shift table"),
        ({"text": "x" * 153 * 256}, "at most 255"),
    ],
)
def test_encoder_rejects_what_no_smsc_would_send(kwargs: dict, message: str) -> None:
    arguments = {"text": "x", "sender": "+1", "timestamp": TS, **kwargs}
    text = arguments.pop("text")
    sender = arguments.pop("sender")
    with pytest.raises(ValueError, match=message):
        encode_deliver(text, sender, **arguments)


def test_negative_and_odd_time_zones_survive_the_round_trip() -> None:
    for minutes in (-15 * 47, -210, -15, 0, 345, 15 * 56, 15 * 79):
        stamp = datetime(2031, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(minutes=minutes)))
        assert decode(encode_deliver("t", "+1", timestamp=stamp)[0]).timestamp.utcoffset() == (
            timedelta(minutes=minutes)
        )


# --- properties -----------------------------------------------------------------------------

GSM_CHARS = [char for char in gsm7.DEFAULT_ALPHABET if char != "\x1b"] + list(
    gsm7.DEFAULT_EXTENSION.values()
)
senders = st.one_of(
    st.from_regex(r"\+[1-9][0-9]{4,14}", fullmatch=True),
    st.from_regex(r"[0-9]{3,12}", fullmatch=True),
    st.text(alphabet="ABCXYZabcxyz0189 -", min_size=1, max_size=11).filter(
        lambda s: not s.isdigit() and not s.startswith("+")
    ),
)


def assert_round_trip(pdus: list[bytes], text: str, sender: str) -> None:
    parts = decoded_parts(pdus)
    assert "".join(part.text for part in parts) == text
    assert {part.sender for part in parts} == {sender}
    if len(parts) > 1:
        assert [part.concat.seq for part in parts if part.concat] == list(range(1, len(parts) + 1))


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=GSM_CHARS, max_size=400), senders, st.sampled_from([8, 16]))
def test_round_trip_gsm_alphabet_with_extensions(text: str, sender: str, ref_bits: int) -> None:
    pdus = encode_deliver(text, sender, timestamp=TS, ref_bits=ref_bits)
    assert all(decode(pdu).encoding == "gsm7" for pdu in pdus)
    assert_round_trip(pdus, text, sender)


@st.composite
def national_text(draw: st.DrawFn) -> tuple[str, str, str]:
    language = draw(st.sampled_from([lang for lang in gsm7.LANGUAGES.values() if lang.ident]))
    shifts = ["single", "locking", "both"] if language.locking else ["single"]
    shift = draw(st.sampled_from(shifts))
    locking = language.ident if shift in ("locking", "both") else 0
    single = language.ident if shift in ("single", "both") else 0
    alphabet = sorted(gsm7.encode_table(locking, single))
    return language.name, shift, draw(st.text(alphabet=alphabet, max_size=300))


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(national_text(), senders)
def test_round_trip_every_national_shift_table(case: tuple[str, str, str], sender: str) -> None:
    language, shift, text = case
    pdus = encode_deliver(text, sender, timestamp=TS, language=language, shift=shift)
    assert_round_trip(pdus, text, sender)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(alphabet=st.characters(codec="utf-16", exclude_categories=("Cs",)), max_size=200),
    senders,
    st.sampled_from([8, 16]),
)
@example(text="😀" * 40, sender="+79161234567", ref_bits=8)
def test_round_trip_ucs2_with_astral_characters(text: str, sender: str, ref_bits: int) -> None:
    pdus = encode_deliver(text, sender, timestamp=TS, encoding="ucs2", ref_bits=ref_bits)
    assert_round_trip(pdus, text, sender)


# --- hostile input --------------------------------------------------------------------------


def decode_error(raw: bytes | str, *, has_smsc: bool = True) -> PduError | None:
    """The PduError decoding raises, or None; any other exception fails the test."""
    try:
        decode(raw, has_smsc=has_smsc)
    except PduError as exc:
        return exc
    return None


@settings(max_examples=400)
@given(st.binary(max_size=200), st.booleans())
def test_random_bytes_raise_nothing_but_pdu_error(raw: bytes, has_smsc: bool) -> None:
    error = decode_error(raw, has_smsc=has_smsc)
    if error is not None:
        assert error.field
        assert 0 <= error.offset <= len(raw)
        assert error.raw == raw


@settings(max_examples=300)
@given(st.text(alphabet="0123456789abcdefABCDEF \n\x00Zж", max_size=120))
def test_random_strings_raise_nothing_but_pdu_error(text: str) -> None:
    error = decode_error(text)
    if error is not None:
        assert error.field
        assert error.raw == text


def test_whitespace_inside_the_hex_is_not_a_hex_digit() -> None:
    with pytest.raises(PduError, match="' ' at character 4 is not a hex digit"):
        decode(MM_PDU3[:4] + " " + MM_PDU3[4:])


@settings(max_examples=200)
@given(
    st.sampled_from([MM_PDU1, MM_PDU2, MM_UDHI, MM_SUBMIT, MM_STATUS_REPORT, TURKISH_BOTH]),
    st.data(),
)
def test_mutated_real_pdus_raise_nothing_but_pdu_error(pdu: str, data: st.DataObject) -> None:
    raw = bytearray(bytes.fromhex(pdu))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] = data.draw(st.integers(0, 255))
    error = decode_error(bytes(raw))
    assert error is None or error.field


@pytest.mark.parametrize("pdu", [MM_PDU1, MM_PDU2, MM_UDHI, MM_SUBMIT, MM_STATUS_REPORT])
def test_every_truncation_is_a_pdu_error_naming_a_field(pdu: str) -> None:
    raw = bytes.fromhex(pdu)
    for length in range(len(raw)):
        with pytest.raises(PduError) as caught:
            decode(raw[:length])
        assert caught.value.field
        assert caught.value.offset <= length


@pytest.mark.parametrize(
    ("pdu", "field", "offset", "fragment"),
    [
        ("0791", "smsc", 0, "length 7 runs past the end of the PDU (2 octets)"),
        (MM_PDU3[:-1], "hex", 35, "odd number of hex digits (71)"),
        (MM_PDU3[:10] + "zz" + MM_PDU3[12:], "hex", 5, "'z' at character 10"),
        ("07912143658709F1042891", "originating address", 9, "length 40 exceeds"),
        (
            "07912143658709F1040B918100",
            "originating address",
            9,
            "length 11 runs past the end of the PDU (13 octets)",
        ),
        (MM_PDU3[:-2], "user data", 26, "user data length 10 septets runs past the end"),
        (MM_PDU3[:52] + "A1" + MM_PDU3[54:], "user data length", 26, "161 septets exceed 160"),
        ("07912143658709F1070B918100551512F2", "first octet", 8, "message type 3 is reserved"),
        (
            "07912143658709F1040B918100551512F20000111310214365000AE8",
            "service centre timestamp",
            19,
            "not a valid time",
        ),
        (
            "07912143658709F1040B918100551512F20000111010214365A0",
            "service centre timestamp",
            25,
            "time zone octet A0 is not decimal",
        ),
        (
            "07912143658709F1040B918100551512F20000111A10214365000AE8",
            "service centre timestamp",
            20,  # the faulty octet itself, the timestamp's second
            "1A is not two decimal digits",
        ),
    ],
)
def test_errors_name_the_field_and_offset(pdu: str, field: str, offset: int, fragment: str) -> None:
    with pytest.raises(PduError) as caught:
        decode(pdu)
    assert caught.value.field == field
    assert caught.value.offset == offset
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f"{field} at octet {offset}: ")
    assert caught.value.raw == pdu


def test_header_lengths_that_lie_are_pdu_errors() -> None:
    with pytest.raises(PduError, match="header length 9 runs past the user data"):
        decode(bytes.fromhex("440B919761214365F70004425010210354210309000300"), has_smsc=False)
    with pytest.raises(PduError, match="element 00 of length 7 runs past the header"):
        decode(deliver_with_udh(bytes.fromhex("000701"), b""), has_smsc=False)
    with pytest.raises(PduError, match="UDHI is set but user data is empty"):
        decode(bytes.fromhex("440B919761214365F7000442501021035421" + "00"), has_smsc=False)
    # gsm7: a 3-octet header takes 4 septets; a UDL of 3 septets cannot hold it.
    with pytest.raises(PduError, match="longer than the 3 septets"):
        decode(
            bytes.fromhex("440B919761214365F7000042501021035421" + "03" + "027000"),
            has_smsc=False,
        )


def test_damaged_ucs2_is_replaced_and_flagged_not_fatal() -> None:
    head = "00040B919761214365F7000842501021035421"
    odd = decode(head + "03" + "004100")
    assert (odd.text, odd.text_damaged) == ("A\ufffd", True)
    lone = decode(head + "04" + "D83D0041")
    assert (lone.text, lone.text_damaged) == ("\ufffdA", True)
