"""Typed response parsers: the vendor forms met in the field, and bad lines that must give
AtParseError naming the line (never another exception).

Sources of the sample lines: 27.007/27.005 syntax, the SIM800 and Quectel EC25 AT manuals,
gammu's issue tracker for Huawei E1752 logs (gammu/gammu#126: ``+CREG: 1, E006B, ABE0016``
without quotes, ``+CPMS: 0,50,0,50,0,50``), and docs/modems.md.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import AtParseError
from agent.protocol import commands
from agent.protocol.commands import (
    Iccid,
    Imei,
    MessageStatus,
    PinStatus,
    Registration,
    UssdEncoding,
    UssdStatus,
)
from agent.protocol.results import ResultKind, cme_name, cms_name

# -- +CSQ --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "dbm", "bars"),
    [
        ("+CSQ: 0,0", -113, 0),
        ("+CSQ: 1,99", -111, 0),
        ("+CSQ: 2,99", -109, 1),
        ("+CSQ: 20,99", -73, 4),
        ("+CSQ: 31,0", -51, 5),
        ("+CSQ: 99,99", None, None),
    ],
)
def test_csq(line: str, dbm: int | None, bars: int | None) -> None:
    signal = commands.parse_csq([line])
    assert (signal.dbm, signal.bars) == (dbm, bars)


@pytest.mark.parametrize("line", ["+CSQ: 32,99", "+CSQ: 20", "+CSQ: x,99", "+CSQ: 20,8", "CSQ"])
def test_csq_rejects(line: str) -> None:
    with pytest.raises(AtParseError) as caught:
        commands.parse_csq([line])
    assert caught.value.raw == line
    assert line in str(caught.value)


# -- registration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "domain", "mode", "status", "area", "cell", "act"),
    [
        ("+CREG: 0,1", "CREG", 0, Registration.HOME, None, None, None),
        ('+CREG: 2,5,"1A2B","3C4D"', "CREG", 2, Registration.ROAMING, "1A2B", "3C4D", None),
        ('+CGREG: 2,1,"1a2b","01C3F4A",7', "CGREG", 2, Registration.HOME, "1A2B", "01C3F4A", 7),
        ('+CEREG: 2,1,"00C3","0A1B2C3",7', "CEREG", 2, Registration.HOME, "00C3", "0A1B2C3", 7),
        ("+CREG: 0,2", "CREG", 0, Registration.SEARCHING, None, None, None),
        ("+CEREG: 0,6", "CEREG", 0, Registration.SMS_ONLY_HOME, None, None, None),
    ],
)
def test_registration_query(line, domain, mode, status, area, cell, act) -> None:
    result = commands.parse_registration([line])
    assert (result.domain, result.mode, result.status) == (domain, mode, status)
    assert (result.area, result.cell, result.act) == (area, cell, act)


def test_registration_urc_forms() -> None:
    plain = commands.parse_registration_urc("+CREG: 1")
    assert plain.registered
    assert plain.mode is None
    huawei = commands.parse_registration_urc("+CREG: 1, E006B, ABE0016")  # gammu/gammu#126
    assert (huawei.area, huawei.cell) == ("E006B", "ABE0016")
    lte = commands.parse_registration_urc('+CEREG: 5,"00C3","0A1B2C3",7')
    assert lte.status is Registration.ROAMING
    assert lte.act == 7


def test_registered_property() -> None:
    assert {s for s in Registration if s.registered} == {
        Registration.HOME,
        Registration.ROAMING,
        Registration.SMS_ONLY_HOME,
        Registration.SMS_ONLY_ROAMING,
        Registration.CSFB_NOT_PREFERRED_HOME,
        Registration.CSFB_NOT_PREFERRED_ROAMING,
    }
    assert not commands.parse_registration(["+CREG: 0,3"]).registered


@pytest.mark.parametrize(
    "line", ["+CREG: 0", "+CREG: 0,12", '+CREG: 2,1,"1A2B"', '+CREG: 2,1,"XYZ","1"', "+CSQ: 0,1"]
)
def test_registration_rejects(line: str) -> None:
    with pytest.raises(AtParseError, match=r"CREG|CSQ|registration"):
        commands.parse_registration([line])


# -- +COPS -------------------------------------------------------------------------------


def test_cops_forms() -> None:
    alpha = commands.parse_cops(['+COPS: 0,0,"MTS RUS",7'])
    assert (alpha.mode, alpha.format, alpha.name, alpha.act) == (0, 0, "MTS RUS", 7)
    assert alpha.mcc_mnc is None
    numeric = commands.parse_cops(['+COPS: 0,2,"25001",2'])
    assert numeric.mcc_mnc == ("250", "01")
    assert commands.parse_cops(['+COPS: 1,2,"310260"']).mcc_mnc == ("310", "260")
    only_mode = commands.parse_cops(["+COPS: 0"])
    assert only_mode.name is None
    assert only_mode.format is None


@pytest.mark.parametrize("line", ["+COPS: 0,0", "+COPS: 9", '+COPS: 0,7,"x"', "+COPS:"])
def test_cops_rejects(line: str) -> None:
    with pytest.raises(AtParseError):
        commands.parse_cops([line])


# -- +CPIN -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "status"),
    [
        ("+CPIN: READY", PinStatus.READY),
        ("+CPIN: SIM PIN", PinStatus.SIM_PIN),
        ("+CPIN: SIM PUK", PinStatus.SIM_PUK),
        ("+CPIN: NOT INSERTED", PinStatus.NOT_INSERTED),
        ('+CPIN: "READY"', PinStatus.READY),
        ("+CPIN: ph-net pin", PinStatus.PH_NET_PIN),
    ],
)
def test_cpin(line: str, status: PinStatus) -> None:
    assert commands.parse_cpin([line]) is status


def test_cpin_rejects_unknown_status() -> None:
    with pytest.raises(AtParseError, match="SIM LOST"):
        commands.parse_cpin(["+CPIN: SIM LOST"])


@pytest.mark.parametrize(
    ("kind", "code", "status"),
    [
        ("CME", 10, PinStatus.NOT_INSERTED),
        ("CMS", 310, PinStatus.NOT_INSERTED),
        ("CME", 14, PinStatus.NOT_READY),
        ("CMS", 314, PinStatus.NOT_READY),
        ("CMS", 312, PinStatus.PH_SIM_PIN),
        ("CME", 12, PinStatus.SIM_PUK),
        ("CMS", 316, PinStatus.SIM_PUK),
        ("CME", 13, None),  # SIM failure
        ("CMS", 315, None),  # SIM wrong
        ("CMS", 10, None),  # call barred: the CMS table's 10 is not a SIM's
        ("ERROR", None, None),
    ],
)
def test_cpin_from_failure(kind: str, code: int | None, status: PinStatus | None) -> None:
    assert commands.pin_status_from_failure(kind, code) is status


def test_every_sim_error_code_is_named_alike_in_both_tables() -> None:
    """A code in the one map is the same SIM condition whichever table it is from."""
    by_status: dict[PinStatus, set[str]] = {}
    for (kind, code), status in commands.SIM_ERROR_STATUS.items():
        name = (cme_name if kind is ResultKind.CME else cms_name)(code)
        by_status.setdefault(status, set()).add(name)
    assert all(len(names) == 1 for names in by_status.values()), by_status


# -- +CPMS -------------------------------------------------------------------------------


def test_cpms_query() -> None:
    usage = commands.parse_cpms_query(['+CPMS: "SM",3,30,"SM",3,30,"ME",0,23'])
    assert [(u.storage, u.used, u.total) for u in usage] == [
        ("SM", 3, 30),
        ("SM", 3, 30),
        ("ME", 0, 23),
    ]
    assert not usage[0].full
    full = commands.parse_cpms_query(['+CPMS: "SM",50,50,"SM",50,50,"SM",50,50'])
    assert full[0].full


@pytest.mark.parametrize(
    ("parser", "line"),
    [
        (commands.parse_cpms_query, '+CPMS: "SM",3'),
        (commands.parse_cpms_query, "+CPMS: 3,30,3,30,3,30"),
    ],
)
def test_cpms_rejects(parser, line: str) -> None:
    with pytest.raises(AtParseError):
        parser([line])


# -- +CMGL / +CMGR -----------------------------------------------------------------------

PDU_A = "07919761989901F0040B919701119905F80000211062917314400CC8329BFD065DDF72363904"
PDU_B = "0791448720003023240DD0E474D81C0EBB010000111011315214000BE474D81C0EBB5DE3771B"


def test_cmgl_several_entries() -> None:
    lines = ["+CMGL: 1,0,,24", PDU_A, '+CMGL: 4,1,"",36', PDU_B.lower()]
    stored = commands.parse_cmgl(lines)
    assert [(s.index, s.status, s.length) for s in stored] == [
        (1, MessageStatus.RECEIVED_UNREAD, 24),
        (4, MessageStatus.RECEIVED_READ, 36),
    ]
    assert stored[1].pdu_hex == PDU_B
    assert commands.parse_cmgl([]) == []


@pytest.mark.parametrize(
    "lines",
    [
        ["+CMGL: 1,0,,24"],
        ["+CMGL: 1,0,,24", "not hex"],
        ["+CMGL: 1,9,,24", PDU_A],
        ["+CMGL: 1,0,24", PDU_A],
        ["+CMGL: 1,0,,24", PDU_A + "0"],
    ],
)
def test_cmgl_rejects(lines: list[str]) -> None:
    with pytest.raises(AtParseError):
        commands.parse_cmgl(lines)


def test_cmgr() -> None:
    stored = commands.parse_cmgr(["+CMGR: 0,,24", PDU_A])
    assert stored is not None
    assert (stored.index, stored.status, stored.pdu_hex) == (None, 0, PDU_A)
    assert commands.parse_cmgr([]) is None
    assert commands.parse_cmgr(["+CMGR: 0,,0"]) is None  # empty index, SIM800 style
    with pytest.raises(AtParseError):
        commands.parse_cmgr(["+CMGR: 0,,24"])


def test_cmgs_reference() -> None:
    assert commands.parse_cmgs(["+CMGS: 12"]) == 12
    with pytest.raises(AtParseError):
        commands.parse_cmgs(["+CMGS: 300"])


# -- +CNUM -------------------------------------------------------------------------------


def test_cnum_forms() -> None:
    assert commands.parse_cnum([]) == []
    numbers = commands.parse_cnum(
        [
            '+CNUM: "Line 1","+79161234567",145',
            '+CNUM: ,"79161234568",145,4,4',
            '+CNUM: "","89161234569",129',
            '+CNUM: "+79161234570",145',
            '+CNUM: "Own","+79161234571"',
        ]
    )
    assert [n.international for n in numbers] == [
        "+79161234567",
        "+79161234568",
        "89161234569",
        "+79161234570",
        "+79161234571",
    ]
    assert numbers[0].alpha == "Line 1"
    assert numbers[1].alpha is None


@pytest.mark.parametrize("line", ['+CNUM: "x","abc",145', "+CNUM: 1", '+CNUM: "x","+7916",z'])
def test_cnum_rejects(line: str) -> None:
    with pytest.raises(AtParseError):
        commands.parse_cnum([line])


# -- +CUSD -------------------------------------------------------------------------------

BALANCE_PACKED = "C2303BEC1E9775A0180CE6AAC140D2AAD00572D6DBE2B21CB4BAE562B6986C46ABD96E"
BALANCE_TEXT = "Balance: 100.50 RUB. Number +79161234567"


@pytest.mark.parametrize(
    ("line", "text", "encoding"),
    [
        (f'+CUSD: 0,"{BALANCE_PACKED}",15', BALANCE_TEXT, UssdEncoding.GSM7_PACKED_HEX),
        ('+CUSD: 0,"E8329BFD4697D9EC37",15', "hellohello", UssdEncoding.GSM7_PACKED_HEX),
        (f'+CUSD: 0,"{BALANCE_TEXT}",15', BALANCE_TEXT, UssdEncoding.TEXT),
        (
            '+CUSD: 0,"04110430043B0430043D04410020003100300020044004430431",72',
            "Баланс 10 руб",
            UssdEncoding.UCS2_HEX,
        ),
        # Huawei with AT+CSCS="UCS2": DCS says GSM 7-bit, the string is UCS2 hex.
        ('+CUSD: 0,"004F004B0020003100300030",15', "OK 100", UssdEncoding.UCS2_HEX),
        ('+CUSD: 0,"79161234567",15', "79161234567", UssdEncoding.TEXT),
        ('+CUSD: 0,"1234",15', "1234", UssdEncoding.TEXT),
        ('+CUSD: 1,"Menu:\n1. Balance",0', "Menu:\n1. Balance", UssdEncoding.TEXT),
        ('+CUSD: 0,"Hi",72', "Hi", UssdEncoding.TEXT),
        ('+CUSD: 0,"414243",68', "ABC", UssdEncoding.OCTETS_HEX),
    ],
)
def test_cusd_decoding(line: str, text: str, encoding: UssdEncoding) -> None:
    response = commands.parse_cusd([line])
    assert (response.text, response.encoding) == (text, encoding)


def test_cusd_status_only() -> None:
    response = commands.parse_cusd(["+CUSD: 4"])
    assert response.status is UssdStatus.NOT_SUPPORTED
    assert response.text is None
    assert commands.parse_cusd(['+CUSD: 2,"bye"']).dcs is None


@pytest.mark.parametrize("line", ["+CUSD: 9", '+CUSD: 0,"x",999', '+CUSD: 0,"unclosed,15', ""])
def test_cusd_rejects(line: str) -> None:
    with pytest.raises(AtParseError):
        commands.parse_cusd([line])


# -- ICCID -------------------------------------------------------------------------------

ICCID_20 = "89701010064447690117"  # Luhn-valid
ICCID_19 = "8970101006444769013"  # Luhn-valid


@pytest.mark.parametrize(
    ("line", "prefixes", "digits"),
    [
        (f"+CCID: {ICCID_20}", ("+CCID",), ICCID_20),
        (f'+CCID: "{ICCID_20}"', ("+CCID",), ICCID_20),
        (f"{ICCID_20}", ("+CCID",), ICCID_20),
        (f"{ICCID_20}", (), ICCID_20),
        (f"+QCCID: {ICCID_19}F", ("+QCCID",), ICCID_19),
        (f"+CICCID: {ICCID_20}", ("+CCID", "+CICCID"), ICCID_20),
        ("^ICCID: 98070101604474961071", ("^ICCID",), ICCID_20),  # Huawei, nibble-swapped
        (f"^ICCID: {ICCID_20}", ("^ICCID",), ICCID_20),  # Huawei firmware that swaps back
        (f"ICCID: {ICCID_20}", ("!ICCID", "ICCID"), ICCID_20),
        ('+CRSM: 144,0,"98070101604474961071"', (), ICCID_20),
        ('+CRSM: 144,0,"980701016044749610F3"', ("+CCID",), ICCID_19),
    ],
)
def test_iccid_vendor_forms(line: str, prefixes: tuple[str, ...], digits: str) -> None:
    assert commands.parse_iccid([line], prefixes) == Iccid(digits, True)


def test_iccid_answer_of_another_command_is_refused() -> None:
    with pytest.raises(AtParseError, match=r"expected \+QCCID") as caught:
        commands.parse_iccid([f"+CCID: {ICCID_20}"], ("+QCCID",))
    assert caught.value.raw == f"+CCID: {ICCID_20}"


def test_iccid_bad_check_digit_is_reported_not_rejected() -> None:
    assert commands.parse_iccid(["+QCCID: 89860318760228040001"], ("+QCCID",)).luhn_valid is False


@pytest.mark.parametrize(
    "line",
    ["+CCID: 1234", "+CCID: 8970ABC", '+CRSM: 148,4,""', '+CRSM: 144,0,"98F"', "+CSQ: 1"],
)
def test_iccid_rejects(line: str) -> None:
    with pytest.raises(AtParseError) as caught:
        commands.parse_iccid([line])
    assert caught.value.raw == line


# -- IMEI / IMSI -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line", ["490154203237518", "+CGSN: 490154203237518", '+CGSN: "490154203237518"']
)
def test_imei_forms(line: str) -> None:
    assert commands.parse_imei([line]) == Imei("490154203237518", True)


def test_imei_check_digit() -> None:
    assert commands.parse_imei(["490154203237519"]).luhn_valid is False
    assert commands.parse_imei(["4901542032375101"]).luhn_valid is None  # IMEISV
    with pytest.raises(AtParseError):
        commands.parse_imei(["+CGSN: 12345"])


@pytest.mark.parametrize(
    ("line", "mcc", "mnc"),
    [
        ("250011234567890", "250", "01"),
        ("310260123456789", "310", "260"),
        ("+CIMI: 405854123456789", "405", "854"),
        ("722070123456789", "722", "070"),
        ("262011234567890", "262", "01"),
    ],
)
def test_imsi(line: str, mcc: str, mnc: str) -> None:
    imsi = commands.parse_imsi([line])
    assert (imsi.mcc, imsi.mnc, imsi.plmn) == (mcc, mnc, mcc + mnc)


def test_imsi_rejects_a_line_of_no_digits() -> None:
    with pytest.raises(AtParseError):
        commands.parse_imsi(["ERROR"])


# -- identification and settings ---------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "text"),
    [
        (["+CGMM: EC25"], "EC25"),
        (["SIMCOM_Ltd"], "SIMCOM_Ltd"),
        (["Revision:1418B04SIM800L24"], "1418B04SIM800L24"),
        (['+CGMR: "21.180.01.00.00"'], "21.180.01.00.00"),
    ],
)
def test_text_value(lines: list[str], text: str) -> None:
    assert commands.parse_text_value(lines) == text


def test_ati_forms() -> None:
    quectel = commands.parse_ati(["Quectel", "EC25", "Revision: EC25EFAR06A06M4G"])
    assert (quectel.manufacturer, quectel.model, quectel.revision) == (
        "Quectel",
        "EC25",
        "EC25EFAR06A06M4G",
    )
    huawei = commands.parse_ati(
        [
            "Manufacturer: huawei",
            "Model: E3372",
            "Revision: 21.180.01.00.00",
            "IMEI: 490154203237518",
            "+GCAP: +CGSM,+DS,+ES",
        ]
    )
    assert (huawei.manufacturer, huawei.model, huawei.imei) == (
        "huawei",
        "E3372",
        "490154203237518",
    )
    assert commands.parse_ati(["SIM800 R14.18"]).model == "SIM800 R14.18"
    with pytest.raises(AtParseError):
        commands.parse_ati([])


def test_settings() -> None:
    assert commands.parse_cnmi(["+CNMI: 2,1,0,0,0"]) == commands.MessageIndication(2, 1, 0, 0, 0)
    assert commands.parse_cnmi(["+CNMI: 1,1"]).bm is None
    with pytest.raises(AtParseError):
        commands.parse_cnmi(["+CNMI: ,1"])


def test_two_lines_where_one_is_expected() -> None:
    with pytest.raises(AtParseError, match="one information line"):
        commands.parse_csq(["+CSQ: 20,99", "+CSQ: 21,99"])


# -- robustness --------------------------------------------------------------------------

PARSERS = [
    commands.parse_csq,
    commands.parse_registration,
    commands.parse_cops,
    commands.parse_cpin,
    commands.parse_cpms_query,
    commands.parse_cmgl,
    commands.parse_cmgr,
    commands.parse_cmgs,
    commands.parse_cnum,
    commands.parse_cusd,
    commands.parse_iccid,
    commands.parse_imei,
    commands.parse_imsi,
    commands.parse_text_value,
    commands.parse_ati,
    commands.parse_cnmi,
]

PREFIXES = [
    "+CSQ",
    "+CREG",
    "+COPS",
    "+CPIN",
    "+CPMS",
    "+CMGL",
    "+CMGR",
    "+CMGS",
    "+CNUM",
    "+CUSD",
    "+CCID",
    "+CRSM",
    "+CGSN",
    "+CIMI",
    "+CCLK",
    "+CSCS",
    "+CNMI",
    "+CMEE",
    "+CSMS",
    "^ICCID",
    "",
]

# Lines that look like answers: a known prefix and arguments drawn from AT-ish pieces.
plausible_lines = st.builds(
    lambda prefix, parts: f"{prefix}: {','.join(parts)}" if prefix else ",".join(parts),
    st.sampled_from(PREFIXES),
    st.lists(
        st.one_of(
            st.integers(-5, 400).map(str),
            st.text("0123456789ABCDEF", max_size=24),
            st.text('0123456789ABCDEF"/:+-, ', max_size=24),
            st.text(max_size=12),
        ),
        max_size=8,
    ),
)


@given(st.sampled_from(PARSERS), st.lists(st.one_of(plausible_lines, st.text()), max_size=4))
def test_parsers_raise_only_at_parse_error(parser, lines: list[str]) -> None:
    error = parse_error_of(parser, lines)
    assert error is None or isinstance(error.raw, str)


def parse_error_of(parser, lines: list[str]) -> AtParseError | None:
    """The AtParseError ``parser`` raises on ``lines`` (any other exception propagates)."""
    try:
        parser(lines)
    except AtParseError as exc:
        return exc
    return None


# -- chained answers ---------------------------------------------------------------------


def test_split_chained_gives_each_command_its_lines() -> None:
    lines = ["+CSQ: 20,99", "", "+CREG: 0,1", "+cpin: READY", '+CPMS: "SM",0,30,"SM",0,30']
    answers = commands.split_chained(lines, ("+CSQ", "+CREG", "+CPIN", "+CNMI", "+CPMS"))
    assert answers == {
        "+CSQ": ["+CSQ: 20,99"],
        "+CREG": ["+CREG: 0,1"],
        "+CPIN": ["+cpin: READY"],
        "+CNMI": [],  # a modem that skipped one: its parser says so, not the split
        "+CPMS": ['+CPMS: "SM",0,30,"SM",0,30'],
    }
    assert commands.parse_csq(answers["+CSQ"]).dbm == -73
    with pytest.raises(AtParseError, match=r"\+CNMI"):
        commands.parse_cnmi(answers["+CNMI"])


def test_split_chained_refuses_a_line_it_cannot_place() -> None:
    with pytest.raises(AtParseError, match="'SIM800C R14' answers none of") as caught:
        commands.split_chained(["+CSQ: 20,99", "SIM800C R14"], ("+CSQ", "+CREG"))
    assert caught.value.raw == "SIM800C R14"


# -- +CPMS=? (27.005 3.2.2: lists of supported mem1, mem2, mem3) ----------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '+CPMS: ("SM","ME","MT"),("SM","ME","MT"),("SM","ME","MT")',
            (("SM", "ME", "MT"),) * 3,
        ),
        ('+CPMS: ("SM","ME","SM_P","ME_P","MT"),("SM","ME"),("sm")', (
            ("SM", "ME", "SM_P", "ME_P", "MT"), ("SM", "ME"), ("SM",))),
        ('+CPMS: ("SM")', (("SM",),)),
        ('+CPMS: ("BM","SM","SR"),("SM"),("SM")', (("BM", "SM", "SR"), ("SM",), ("SM",))),
    ],
)  # fmt: skip
def test_cpms_support_lists_each_memory(line: str, expected: tuple) -> None:
    assert commands.parse_cpms_support([line]) == expected


@pytest.mark.parametrize(
    "line", ['+CPMS: "SM",3,30,"SM",3,30,"SM",3,30', "+CPMS: ()", "+CPMS: (" + "x" * 500 + ")"]
)
def test_cpms_support_without_lists_is_a_parse_error_naming_the_line(line: str) -> None:
    with pytest.raises(AtParseError, match=r"\+CPMS: expected lists of storages"):
        commands.parse_cpms_support([line])
