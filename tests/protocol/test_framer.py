"""The line framer: any chunking, echo, garbage, URCs glued into responses, bounded memory.

The transcripts below are what a session sees on the wire. Where they come from:
- SIM800: boot sequence from docs/modems.md and the SIM800 Series AT Command Manual V1.09
  URC table (``RDY``, ``+CFUN: 1``, ``+CPIN: READY``, ``Call Ready``, ``SMS Ready``,
  ``UNDER-VOLTAGE WARNNING``); echo as ``AT\\r\\r\\nOK\\r\\n`` as in gammu's logs.
- Quectel EC25: boot from docs/modems.md (``RDY``, ``+CPIN: READY``, ``+QUSIM: 1``,
  ``+QIND: SMS DONE``), answers per the EC25 AT manual.
- Huawei E1752: gammu/gammu issues #126 and #138 (``^RSSI:14``, ``^MODE:5,4``, ``^SRVST:0``,
  ``+CREG: 1, E006B, ABE0016``, ``AT+CPMS="SM","SM"`` answered ``+CPMS: 0,50,0,50,0,50``).
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import CommandFailed
from agent.protocol import framer as framer_module
from agent.protocol import urc
from agent.protocol.commands import parse_cmgl, parse_iccid
from agent.protocol.framer import (
    CTRL_Z,
    AtFramer,
    Echo,
    Event,
    Garbage,
    InfoLine,
    Prompt,
    encode_command,
    encode_sms_body,
)
from agent.protocol.results import (
    FinalResult,
    ResultKind,
    cms_name,
    parse_final_result,
    to_command_failed,
)

PDU = "0791448720003023240DD0E474D81C0EBB010000111011315214000BE474D81C0EBB5DE3771B"
SUBMIT = "0011000B919761111299F80000AA05E8329BFD06"
OK = FinalResult(ResultKind.OK, None, "OK")

# A step: the command the session announces (None: nothing is sent, the modem speaks by
# itself; ("body", pdu): the SMS body after the prompt) and the bytes the modem sends back.
Step = tuple[str | tuple[str, str] | None, bytes]


def run(steps: Iterable[Step], cuts: Iterable[int] = (), framer: AtFramer | None = None) -> list:
    """Feed a transcript, cutting each step's bytes at the given fractions (0..1000)."""
    framer = framer or AtFramer()
    events: list[Event] = []
    cut_list = list(cuts)
    for announce, data in steps:
        if isinstance(announce, tuple):
            framer.expect_body(announce[1])
        elif announce is not None:
            framer.expect(announce)
        points = [*sorted({len(data) * c // 1000 for c in cut_list}), len(data)]
        start = 0
        for point in points:
            events += framer.feed(data[start:point])
            start = point
    return events


def bytewise(steps: Iterable[Step]) -> list:
    framer = AtFramer()
    events: list[Event] = []
    for announce, data in steps:
        if isinstance(announce, tuple):
            framer.expect_body(announce[1])
        elif announce is not None:
            framer.expect(announce)
        for byte in data:
            events += framer.feed(bytes([byte]))
    return events


SIM800: list[Step] = [
    (None, b"\x00\xff\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\nCall Ready\r\n"),
    (None, b"\r\nSMS Ready\r\n"),
    ("AT", b"AT\r\r\nOK\r\n"),
    ("AT+CREG?", b'AT+CREG?\r\r\n+CREG: 2,1,"1A2B","3C4D"\r\n\r\nOK\r\n'),
    ("AT+CSQ", b'AT+CSQ\r\r\n+CSQ: 20,99\r\n\r\n+CMTI: "SM",1\r\n\r\nOK\r\n'),
    ("AT+CMGR=1", b"AT+CMGR=1\r\r\n+CMGR: 0,,24\r\n" + PDU.encode() + b"\r\n\r\nOK\r\n"),
    ("AT+CMGS=20", b"AT+CMGS=20\r\r\n> "),
    (("body", SUBMIT), SUBMIT.encode() + CTRL_Z + b"\r\n+CMGS: 7\r\n\r\nOK\r\n"),
    (None, b"\r\nUNDER-VOLTAGE WARNNING\r\n"),
    ('AT+CUSD=1,"*100#",15', b'AT+CUSD=1,"*100#",15\r\r\nOK\r\n'),
    (None, b'\r\n+CUSD: 0,"Balance 100\r\nrub",15\r\n'),
    # With AT+CSCS="GSM": GSM 7-bit bytes ('£' 0x01, '€' ESC 0x65, 'Ξ' Ctrl-Z's 0x1A).
    (None, b'\r\n+CUSD: 1,"\x01 5\x1be\x1a\r\n1 \x00",15\r\n'),
    ("AT+CMGD=9", b"AT+CMGD=9\r\r\n+CMS ERROR: 321\r\n"),
]

SIM800_EVENTS: list = [
    urc.BootIndication(line="RDY", marker=urc.BootMarker.RDY),
    urc.FunctionalityChanged(line="+CFUN: 1", level=1),
    urc.parse_urc("+CPIN: READY"),
    urc.BootIndication(line="Call Ready", marker=urc.BootMarker.CALL_READY),
    urc.BootIndication(line="SMS Ready", marker=urc.BootMarker.SMS_READY),
    Echo("AT"),
    OK,
    Echo("AT+CREG?"),
    InfoLine('+CREG: 2,1,"1A2B","3C4D"'),
    OK,
    Echo("AT+CSQ"),
    InfoLine("+CSQ: 20,99"),
    urc.SmsStored(line='+CMTI: "SM",1', storage="SM", index=1),
    OK,
    Echo("AT+CMGR=1"),
    InfoLine("+CMGR: 0,,24"),
    InfoLine(PDU),
    OK,
    Echo("AT+CMGS=20"),
    Prompt(),
    Echo(SUBMIT),
    InfoLine("+CMGS: 7"),
    OK,
    urc.PowerEvent(
        line="UNDER-VOLTAGE WARNNING", condition=urc.PowerCondition.UNDER_VOLTAGE_WARNING
    ),
    Echo('AT+CUSD=1,"*100#",15'),
    OK,
    urc.parse_urc('+CUSD: 0,"Balance 100\nrub",15'),
    urc.parse_urc('+CUSD: 1,"£ 5€Ξ\n1 @",15'),
    Echo("AT+CMGD=9"),
    FinalResult(ResultKind.CMS, 321, "+CMS ERROR: 321"),
]

QUECTEL: list[Step] = [
    (None, b"\r\nRDY\r\n\r\n+CPIN: READY\r\n\r\n+QUSIM: 1\r\n\r\n+QIND: SMS DONE\r\n"),
    ("ATE0", b"ATE0\r\r\nOK\r\n"),
    ("AT+QCCID", b"\r\n+QCCID: 8970101006444769013F\r\n\r\nOK\r\n"),
    ("AT+CPIN?", b"\r\n+CPIN: READY\r\n\r\nOK\r\n"),
    (
        "AT+CMGL=4",
        b"\r\n+CMGL: 0,0,,24\r\n"
        + PDU.encode()
        + b"\r\n+CMGL: 3,1,,24\r\n"
        + PDU.encode()
        + b"\r\n\r\nOK\r\n",
    ),
    (None, b"\r\n+CMT: ,24\r\n" + PDU.encode() + b"\r\n"),
    ("AT+CNMA", b"\r\nOK\r\n"),
    ("AT+CPIN?", b"\r\n+CME ERROR: 10\r\n"),
]

QUECTEL_EVENTS: list = [
    urc.BootIndication(line="RDY", marker=urc.BootMarker.RDY),
    urc.parse_urc("+CPIN: READY"),
    urc.QuectelUsim(line="+QUSIM: 1", usim=1),
    urc.QuectelIndication(line="+QIND: SMS DONE", event="SMS DONE", arguments=()),
    Echo("ATE0"),
    OK,
    InfoLine("+QCCID: 8970101006444769013F"),
    OK,
    InfoLine("+CPIN: READY"),
    OK,
    InfoLine("+CMGL: 0,0,,24"),
    InfoLine(PDU),
    InfoLine("+CMGL: 3,1,,24"),
    InfoLine(PDU),
    OK,
    urc.SmsReceived(line=f"+CMT: ,24\n{PDU}", alpha=None, length=24, pdu_hex=PDU),
    OK,
    FinalResult(ResultKind.CME, 10, "+CME ERROR: 10"),
]

HUAWEI: list[Step] = [
    (None, b"\r\n^RSSI:14\r\n\r\n^MODE:5,4\r\n\r\n^SRVST:0\r\n"),
    ('AT+CPMS="SM","SM"', b'AT+CPMS="SM","SM"\r\r\n+CPMS: 0,50,0,50,0,50\r\n\r\nOK\r\n'),
    ("AT^ICCID?", b"\r\n^ICCID: 98070101604474961071\r\n\r\n^RSSI:10\r\n\r\nOK\r\n"),
    (None, b"\r\n+CREG: 1, E006B, ABE0016\r\n\r\n^BOOT:12345678,0,0,0,75\r\n"),
    ("AT+CREG?", b"\r\n+CREG: 2,1, E006B, ABE0016\r\n\r\nOK\r\n"),
    ('AT+CUSD=1,"AA180C3602",15', b"\r\nOK\r\n"),
    (None, b'\r\n+CUSD: 0,"04110430043B0430043D0441",72\r\n\r\n^SMMEMFULL: "SM"\r\n'),
]

HUAWEI_EVENTS: list = [
    urc.parse_urc("^RSSI:14"),
    urc.HuaweiMode(line="^MODE:5,4", sysmode=5, submode=4),
    urc.HuaweiServiceState(line="^SRVST:0", state=0),
    Echo('AT+CPMS="SM","SM"'),
    InfoLine("+CPMS: 0,50,0,50,0,50"),
    OK,
    InfoLine("^ICCID: 98070101604474961071"),
    urc.parse_urc("^RSSI:10"),
    OK,
    urc.parse_urc("+CREG: 1, E006B, ABE0016"),
    urc.parse_urc("^BOOT:12345678,0,0,0,75"),
    InfoLine("+CREG: 2,1, E006B, ABE0016"),
    OK,
    OK,
    urc.parse_urc('+CUSD: 0,"04110430043B0430043D0441",72'),
    urc.StorageFull(line='^SMMEMFULL: "SM"', storage="SM"),
]

TRANSCRIPTS = {
    "sim800": (SIM800, SIM800_EVENTS),
    "quectel": (QUECTEL, QUECTEL_EVENTS),
    "huawei": (HUAWEI, HUAWEI_EVENTS),
}


@pytest.mark.parametrize("name", TRANSCRIPTS)
def test_transcript_in_one_chunk_per_step(name: str) -> None:
    steps, expected = TRANSCRIPTS[name]
    assert run(steps) == expected


@pytest.mark.parametrize("name", TRANSCRIPTS)
def test_transcript_byte_by_byte(name: str) -> None:
    steps, expected = TRANSCRIPTS[name]
    assert bytewise(steps) == expected


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(TRANSCRIPTS)), st.lists(st.integers(0, 1000), max_size=12))
def test_same_events_whatever_the_chunking(name: str, cuts: list[int]) -> None:
    steps, expected = TRANSCRIPTS[name]
    assert run(steps, cuts) == expected


def test_transcript_answers_parse() -> None:
    """The info lines the framer collects are what the typed parsers expect."""
    quectel = run(QUECTEL)
    cmgl = [e.text for e in quectel[10:14]]
    assert [m.index for m in parse_cmgl(cmgl)] == [0, 3]
    huawei = run(HUAWEI)
    assert parse_iccid([huawei[6].text], ("^ICCID",)).digits == "89701010064447690117"


def test_garbage_between_lines_byte_by_byte() -> None:
    noise = b"\xff\xfe\x80\r\n$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n"
    framer = AtFramer()
    framer.expect("AT+CSQ")
    events: list[Event] = []
    for byte in noise + b"\r\n+CSQ: 20,99\r\n" + b"\x00\x00\r\n" + noise + b"OK\r\n":
        events += framer.feed(bytes([byte]))
    kept = [e for e in events if not isinstance(e, Garbage)]
    assert kept == [InfoLine("+CSQ: 20,99"), OK]
    reasons = [e.reason for e in events if isinstance(e, Garbage)]
    assert reasons == ["not UTF-8 text", "NMEA sentence"] * 2


@pytest.mark.parametrize(
    "ending", [b"\r\n", b"\n", b"\r", b"\r\r\n", b"\n\r", b"\r\n\r\n"], ids=repr
)
def test_line_endings(ending: bytes) -> None:
    framer = AtFramer()
    framer.expect("AT+CSQ")
    data = b"AT+CSQ" + ending + b"+CSQ: 20,99" + ending + b'+CMTI: "SM",2' + ending + b"OK" + ending
    assert framer.feed(data) == [
        Echo("AT+CSQ"),
        InfoLine("+CSQ: 20,99"),
        urc.SmsStored(line='+CMTI: "SM",2', storage="SM", index=2),
        OK,
    ]


def test_a_run_of_line_ends_is_one_line_end_even_cut_between_chunks() -> None:
    framer = AtFramer()
    framer.expect("AT+CMGR=1")
    answer = b"\r\n+CMGR: 0,,24\r\n0791\r\n\r\n\r\n\n\rOK\r\n"
    events = []
    for cut in (answer[:3], answer[3:19], answer[19:24], answer[24:27], answer[27:]):
        events += framer.feed(cut)
    assert events == [InfoLine("+CMGR: 0,,24"), InfoLine("0791"), OK]
    assert framer.buffered == 0


def test_the_command_lines_the_framer_remembers_are_bounded() -> None:
    framer = AtFramer()
    for index in range(2000):  # every index of a large ME storage, read and deleted
        framer.expect(f"AT+CMGR={index}")
        assert framer.feed(b"\r\nOK\r\n") == [OK]
    cache = framer_module._pending.cache_info()
    assert cache.currsize <= cache.maxsize == 256


def test_echo_off_and_on() -> None:
    framer = AtFramer()
    framer.expect("AT+CGMM")
    assert framer.feed(b"\r\nEC25\r\n\r\nOK\r\n") == [InfoLine("EC25"), OK]
    framer.expect("AT+CGMM")
    assert framer.feed(b"AT+CGMM\r\r\nEC25\r\n\r\nOK\r\n") == [
        Echo("AT+CGMM"),
        InfoLine("EC25"),
        OK,
    ]
    assert framer.pending is None


@pytest.mark.parametrize(
    ("pending", "line", "is_info"),
    [
        ("AT+CREG?", "+CREG: 0,1", True),
        ("AT+CSQ", "+CREG: 1", False),
        (None, "+CREG: 1", False),
        ("AT+CREG=2", "+CREG: 1", False),
        ("AT+COPS=3,2;+CREG?", "+CREG: 0,1", True),
        ("AT+CPIN?", "+CPIN: READY", True),
        ('AT+CPIN="1234"', "+CPIN: READY", False),
        ("AT+CFUN?", "+CFUN: 1", True),
        ("AT+CFUN=1", "+CFUN: 1", False),
        ("AT+CUSD?", "+CUSD: 1", True),
        ('AT+CUSD=1,"*100#",15', "+CUSD: 1", False),
        ("AT^SYSINFO", "^SYSINFO:2,3,0,5,1", True),
        ("AT+CSQ", "^SYSINFO:2,3,0,5,1", False),
        ("AT+CMGS=20", "+CMGS: 7", True),
        ("AT+CLIP?", "+CLIP: 0,1", True),
    ],
)
def test_urc_or_answer_by_pending_command(pending: str | None, line: str, is_info: bool) -> None:
    framer = AtFramer()
    framer.expect(pending)
    events = framer.feed(line.encode() + b"\r\n")
    assert len(events) == 1
    assert isinstance(events[0], InfoLine) is is_info
    assert isinstance(events[0], urc.Urc) is not is_info


def test_cmt_pdu_split_at_every_point() -> None:
    data = b'\r\n+CMT: "",24\r\n' + PDU.encode() + b"\r\n"
    expected = [urc.SmsReceived(line=f'+CMT: "",24\n{PDU}', alpha=None, length=24, pdu_hex=PDU)]
    for cut in range(len(data) + 1):
        framer = AtFramer()
        framer.expect("AT+CSQ")  # a command pending changes nothing for +CMT
        assert framer.feed(data[:cut]) + framer.feed(data[cut:]) == expected, cut


def test_cmt_without_pdu_is_garbage_and_the_next_line_survives() -> None:
    framer = AtFramer()
    events = framer.feed(b"+CMT: ,24\r\nRING\r\n")
    assert isinstance(events[0], Garbage)
    assert b"+CMT" in events[0].data
    assert events[1] == urc.Ring(line="RING")


def test_multiline_cusd_abandoned_when_a_result_comes() -> None:
    framer = AtFramer()
    framer.expect("AT+CSQ")
    events = framer.feed(b'+CUSD: 0,"no closing quote\r\nOK\r\n')
    assert isinstance(events[0], Garbage)
    assert events[1] == OK


def test_malformed_urc_is_garbage_not_an_exception() -> None:
    events = AtFramer().feed(b"+CMTI: SM\r\n^RSSI: 77\r\n")
    assert [type(e) for e in events] == [Garbage, Garbage]
    assert b"+CMTI: SM" in events[0].data


def test_unknown_line_without_command_is_unknown_urc() -> None:
    assert AtFramer().feed(b"HELLO\r\n") == [urc.UnknownUrc(line="HELLO")]


def test_no_carrier_ends_dial_but_is_a_urc_otherwise() -> None:
    framer = AtFramer()
    framer.expect("ATD+79161234567;")
    assert framer.feed(b"\r\nNO CARRIER\r\n") == [
        FinalResult(ResultKind.NO_CARRIER, None, "NO CARRIER")
    ]
    framer.expect("AT+CSQ")
    assert framer.feed(b"\r\nNO CARRIER\r\n") == [urc.CallEnded(line="NO CARRIER")]
    assert framer.pending == "AT+CSQ"
    assert framer.feed(b"\r\nBUSY\r\n") == [urc.UnknownUrc(line="BUSY")]


def test_numeric_result_codes() -> None:
    framer = AtFramer(numeric_results=True)
    framer.expect("AT+CSQ")
    assert framer.feed(b"+CSQ: 20,99\r\n0\r") == [
        InfoLine("+CSQ: 20,99"),
        FinalResult(ResultKind.OK, None, "0"),
    ]
    framer.expect("AT+CMGD=1")
    assert framer.feed(b"4\r") == [FinalResult(ResultKind.ERROR, None, "4")]
    assert framer.feed(b"2\r") == [urc.Ring(line="2")]
    verbose = AtFramer()
    verbose.expect("AT+CMGF?")
    assert verbose.feed(b"0\r\n") == [InfoLine("0")]


def test_prompt_only_when_expected() -> None:
    framer = AtFramer()
    framer.expect("AT+CMGS=20")
    assert framer.feed(b"\r\n>") == []
    assert framer.feed(b" ") == [Prompt()]
    framer.expect_body(SUBMIT)
    assert framer.feed(SUBMIT.encode() + CTRL_Z) == [Echo(SUBMIT)]
    other = AtFramer()
    other.expect("AT+CSQ")
    assert other.feed(b"> x\r\n") == [InfoLine("> x")]


def test_bounded_buffer_one_megabyte_without_line_end() -> None:
    framer = AtFramer()
    events: list[Event] = []
    chunk = bytes(range(32, 127)) * 43
    for _ in range(1_000_000 // len(chunk)):
        events += framer.feed(chunk)
        assert framer.buffered <= framer.max_line
    assert len(events) == 1
    assert isinstance(events[0], Garbage)
    assert len(events[0].data) == framer.max_line
    framer.expect("AT")
    assert framer.feed(b"tail of the long line\r\nOK\r\n") == [OK]


def test_bounded_buffer_in_one_feed() -> None:
    framer = AtFramer(max_line=64)
    events = framer.feed(b"x" * 1_000_000 + b"\r\nRDY\r\n")
    assert [type(e) for e in events] == [Garbage, urc.BootIndication]
    assert framer.buffered == 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([None, "AT+CSQ", "AT+CREG?", "AT+CMGS=20", "ATD123;"]),
            st.binary(max_size=80),
        ),
        max_size=8,
    )
)
def test_random_bytes_never_raise(steps: list[tuple[str | None, bytes]]) -> None:
    framer = AtFramer(max_line=32)
    for command, data in steps:
        if command:
            framer.expect(command)
        for event in framer.feed(data):
            assert isinstance(event, (FinalResult, InfoLine, Echo, Prompt, Garbage, urc.Urc))
        assert framer.buffered <= 32


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"OK",
                b"+CSQ: 1,2",
                b'+CMTI: "SM",1',
                b"+CMT: ,3",
                b"0011AA",
                b"x" * 20,
                b"\xff\x00",
                b'+CUSD: 0,"a',
                b'b",15',
                b"RING",
                b"> ",
                b"",
                b"AT+CSQ",
            ]
        ),
        max_size=12,
    ),
    st.lists(st.sampled_from([b"\r\n", b"\r", b"\n"]), min_size=12, max_size=12),
    st.lists(st.integers(0, 1000), max_size=10),
)
def test_chunking_invariance_on_random_line_soup(lines, endings, cuts) -> None:
    data = b"".join(line + end for line, end in zip(lines, endings, strict=False))
    whole = AtFramer(max_line=16)
    whole.expect("AT+CMGS=20")
    cut = AtFramer(max_line=16)
    cut.expect("AT+CMGS=20")
    assert run([(None, data)], cuts, cut) == whole.feed(data)


# -- commands out and final results --------------------------------------------------------


def test_encode_command() -> None:
    assert encode_command("AT+CMGR=3") == b"AT+CMGR=3\r"
    assert encode_sms_body("0011AA") == b"0011AA\x1a"
    for bad in ("AT\r+CMGD=1", 'AT+CUSD=1,"ß"', "AT\x1a"):
        with pytest.raises(ValueError, match="ASCII"):
            encode_command(bad)
    with pytest.raises(ValueError, match="hex"):
        encode_sms_body("00X")


@pytest.mark.parametrize(
    ("line", "kind", "code", "name"),
    [
        ("OK", ResultKind.OK, None, "OK"),
        ("ERROR", ResultKind.ERROR, None, "ERROR"),
        ("CONNECT 115200", ResultKind.CONNECT, None, "CONNECT"),
        ("+CME ERROR: 10", ResultKind.CME, 10, "SIM_NOT_INSERTED"),
        ("+CME ERROR: SIM not inserted", ResultKind.CME, 10, "SIM_NOT_INSERTED"),
        ("+CME ERROR: sim busy", ResultKind.CME, 14, "SIM_BUSY"),
        ("+CME ERROR: 11", ResultKind.CME, 11, "SIM_PIN_REQUIRED"),
        ("+CMS ERROR: 322", ResultKind.CMS, 322, "MEMORY_FULL"),
        ("+CMS ERROR: 321", ResultKind.CMS, 321, "INVALID_MEMORY_INDEX"),
        ("+CMS ERROR: SMSC address unknown", ResultKind.CMS, 330, "SMSC_ADDRESS_UNKNOWN"),
        ("+CMS ERROR: 3", ResultKind.CMS, 3, "NETWORK_CAUSE_3"),
        ("+CMS ERROR: 200", ResultKind.CMS, 200, "TP_FAILURE_CAUSE_200"),
        ("+CMS ERROR: 532", ResultKind.CMS, 532, "VENDOR_CMS_532"),
        ("+CME ERROR: 3513", ResultKind.CME, 3513, "VENDOR_CME_3513"),
        ("+CME ERROR: modem on fire", ResultKind.CME, None, "modem on fire"),
    ],
)
def test_final_results(line: str, kind: ResultKind, code: int | None, name: str) -> None:
    result = parse_final_result(line)
    assert result is not None
    assert (result.kind, result.code, result.name) == (kind, code, name)


def test_not_final_results() -> None:
    assert parse_final_result("+CSQ: 1,2") is None
    assert parse_final_result("0") is None
    assert parse_final_result("OKAY") is None


def test_to_command_failed() -> None:
    error = to_command_failed(
        FinalResult(ResultKind.CMS, 322, "+CMS ERROR: 322"), command="AT+CMGW", port="/dev/x"
    )
    assert isinstance(error, CommandFailed)
    assert (error.kind, error.code, error.name, error.raw) == (
        "CMS",
        322,
        "MEMORY_FULL",
        "+CMS ERROR: 322",
    )
    assert "AT+CMGW" in str(error)
    assert "/dev/x" in str(error)
    plain = to_command_failed(FinalResult(ResultKind.ERROR, None, "ERROR"))
    assert (plain.kind, plain.code, plain.name) == ("ERROR", None, "ERROR")
    assert cms_name(340) == "NO_CNMA_ACKNOWLEDGEMENT_EXPECTED"


def test_over_long_line_after_cmt_header_abandons_the_header() -> None:
    framer = AtFramer(max_line=16)
    events = framer.feed(b"+CMT: ,24\r\n" + b"A" * 40 + b"\r\n" + b"RING\r\n")
    assert [type(e) for e in events] == [Garbage, Garbage, urc.Ring]
    assert events[0].data == b"+CMT: ,24"


# A SIM800 with AT+CSCS="GSM" prints a USSD answer in GSM 7-bit bytes: '£' 0x01, '$' 0x02,
# '@' 0x00, '€' as the escape 0x1B then 0x65, 'Ξ' 0x1A (Ctrl-Z's byte), LF 0x0A.
GSM_CUSD = b'\r\n+CUSD: 0,"\x00 Bal \x01100.00 \x02 \x1be \x1a ok\x00",15\r\n'
GSM_TEXT = "@ Bal £100.00 $ € Ξ ok@"


@pytest.mark.parametrize("feed", [run, bytewise], ids=["whole", "bytewise"])
def test_cusd_in_gsm_7_bit_bytes_reads_exactly(feed: object) -> None:
    events = feed([(None, GSM_CUSD + b"RING\r\n")])  # type: ignore[operator]
    assert [type(e) for e in events] == [urc.UssdReceived, urc.Ring]
    assert events[0].response.text == GSM_TEXT
    assert events[0].response.status.name == "DONE"


def test_cusd_menu_in_gsm_bytes_keeps_its_line_breaks() -> None:
    data = b'+CUSD: 1,"\x00Menu\n1 \x01 top-up\r\n2 \x1be\x00",15\r\n'
    for feed in (run, bytewise):
        events = feed([(None, data)])
        assert [type(e) for e in events] == [urc.UssdReceived]
        assert events[0].response.text == "@Menu\n1 £ top-up\n2 €@"


def test_gsm_bytes_outside_a_cusd_string_stay_garbage() -> None:
    events = AtFramer().feed(
        b'+CMTI: "SM",\x01\r\n'  # not +CUSD: control characters, as ever
        b"\x01\x1be\r\n"
        b'+CUSD: 0,"\xa3100",15\r\n'  # a byte above 0x7F is no septet: not GSM either
        b'+CUSD: 0\x01,"x",15\r\n'  # a GSM byte outside the quotes
        b"OK\r\n"
    )
    # ESC outside a +CUSD string still ends the line: "e" is a line of its own.
    assert events[2] == urc.UnknownUrc(line="e")
    assert [type(e) for e in events[:-1]] == [Garbage, Garbage, urc.UnknownUrc, Garbage, Garbage]
    assert events[1].data == b"\x01"
    assert events[3].reason == "not UTF-8 text"
    assert events[-1] == OK


def test_ctrl_z_and_esc_end_the_line_outside_the_cusd_string() -> None:
    events = AtFramer().feed(b'+CUSD: 0,"\x01",15\x1aRING\r\n')
    assert [type(e) for e in events] == [urc.UssdReceived, urc.Ring]
    assert events[0].response.text == "£"


def test_unterminated_gsm_cusd_string_is_bounded() -> None:
    framer = AtFramer(max_line=64)
    events = framer.feed(b'+CUSD: 0,"' + b"\x1a\x01" * 100 + b"\r\n")
    assert [type(e) for e in events] == [Garbage]
    assert len(events[0].data) == 64
    assert framer.buffered == 0
    events = framer.feed(b'+CUSD: 0,"' + b"\x1b\x01\n" * 40 + b"OK\r\n")
    # One line per break until the continuation bound, then the rest is dropped as garbage.
    assert isinstance(events[0], Garbage)
    assert events[-1] == OK
    assert framer.buffered == 0
