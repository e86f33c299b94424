"""URC recognition by prefix and the typed events, line by line.

Lines from the SIM800 Series AT Command Manual V1.09 (URC table: ``UNDER-VOLTAGE WARNNING``,
``NORMAL POWER DOWN``, ``Call Ready``, ``SMS Ready``), the Quectel EC25 AT manual
(``+QIND: SMS DONE``, ``+QUSIM: 1``) and Huawei E1752 logs in gammu/gammu#126 and #138
(``^RSSI:14``, ``^MODE:5,4``, ``^SRVST:0`` without a space after the colon).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import AtParseError
from agent.protocol import urc
from agent.protocol.commands import PinStatus, Registration, UssdStatus

PDU = "0791448720003023240DD0E474D81C0EBB010000111011315214000BE474D81C0EBB5DE3771B"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('+CMTI: "SM",3', urc.SmsStored(line='+CMTI: "SM",3', storage="SM", index=3)),
        ('+CMTI: "ME", 12', urc.SmsStored(line='+CMTI: "ME", 12', storage="ME", index=12)),
        (
            '+CDSI: "SR",1',
            urc.StatusReportStored(line='+CDSI: "SR",1', storage="SR", index=1),
        ),
        ("RDY", urc.BootIndication(line="RDY", marker=urc.BootMarker.RDY)),
        ("Call Ready", urc.BootIndication(line="Call Ready", marker=urc.BootMarker.CALL_READY)),
        ("SMS Ready", urc.BootIndication(line="SMS Ready", marker=urc.BootMarker.SMS_READY)),
        ("+CFUN: 1", urc.FunctionalityChanged(line="+CFUN: 1", level=1)),
        ("+QUSIM: 1", urc.QuectelUsim(line="+QUSIM: 1", usim=1)),
        ("^SRVST:0", urc.HuaweiServiceState(line="^SRVST:0", state=0)),
        ("^MODE:5,4", urc.HuaweiMode(line="^MODE:5,4", sysmode=5, submode=4)),
        ("^SIMST: 255", urc.HuaweiSimState(line="^SIMST: 255", state=255, lock=None)),
        ('^SMMEMFULL: "SM"', urc.StorageFull(line='^SMMEMFULL: "SM"', storage="SM")),
        ("RING", urc.Ring(line="RING")),
        ("NO CARRIER", urc.CallEnded(line="NO CARRIER")),
        (
            '+CLIP: "+79161234567",145,"",0,"",0',
            urc.CallerId(
                line='+CLIP: "+79161234567",145,"",0,"",0', number="+79161234567", type=145
            ),
        ),
    ],
)
def test_one_line_urcs(line: str, expected: urc.Urc) -> None:
    assert urc.urc_name(line) is not None
    assert urc.parse_urc(line) == expected


def test_signal_and_registration_urcs() -> None:
    rssi = urc.parse_urc("^RSSI:14")
    assert isinstance(rssi, urc.SignalChanged)
    assert rssi.signal.dbm == -85
    registration = urc.parse_urc('+CGREG: 1,"1A2B","01C3F4A",7')
    assert isinstance(registration, urc.RegistrationChanged)
    assert registration.registration.status is Registration.HOME
    assert registration.registration.domain == "CGREG"


def test_sim_and_quectel_urcs() -> None:
    sim = urc.parse_urc("+CPIN: NOT INSERTED")
    assert isinstance(sim, urc.SimStatusChanged)
    assert sim.status is PinStatus.NOT_INSERTED
    done = urc.parse_urc("+QIND: SMS DONE")
    assert isinstance(done, urc.QuectelIndication)
    assert done.boot_marker
    csq = urc.parse_urc('+QIND: "csq",20,99')
    assert isinstance(csq, urc.QuectelIndication)
    assert (csq.event, csq.arguments, csq.boot_marker) == ("csq", ("20", "99"), False)


@pytest.mark.parametrize(
    ("line", "condition"),
    [
        ("UNDER-VOLTAGE WARNNING", urc.PowerCondition.UNDER_VOLTAGE_WARNING),
        ("UNDER-VOLTAGE POWER DOWN", urc.PowerCondition.UNDER_VOLTAGE_POWER_DOWN),
        ("OVER-VOLTAGE WARNNING", urc.PowerCondition.OVER_VOLTAGE_WARNING),
        ("OVER-VOLTAGE POWER DOWN", urc.PowerCondition.OVER_VOLTAGE_POWER_DOWN),
        ("NORMAL POWER DOWN", urc.PowerCondition.NORMAL_POWER_DOWN),
    ],
)
def test_power_urcs(line: str, condition: urc.PowerCondition) -> None:
    event = urc.parse_urc(line)
    assert isinstance(event, urc.PowerEvent)
    assert event.condition is condition


def test_boot_markers() -> None:
    boot = [
        "RDY",
        "+CFUN: 1",
        "+CPIN: READY",
        "Call Ready",
        "SMS Ready",
        "+QUSIM: 1",
        "+QIND: PB DONE",
        "SMS DONE",
        "PB DONE",
    ]
    assert all(urc.parse_urc(line).boot_marker for line in boot)
    not_boot = ['+CMTI: "SM",1', "^RSSI:14", "^BOOT:12345678,0,0,0,75", "RING", "+CREG: 1"]
    assert not any(urc.parse_urc(line).boot_marker for line in not_boot)


def test_vendor_indications() -> None:
    boot_noise = urc.parse_urc("^BOOT:12345678,0,0,0,75")
    assert isinstance(boot_noise, urc.VendorIndication)
    assert (boot_noise.name, boot_noise.arguments) == ("^BOOT", ("12345678", "0", "0", "0", "75"))
    unknown_huawei = urc.parse_urc("^DSFLOWRPT:0000000A,00000000")
    assert isinstance(unknown_huawei, urc.VendorIndication)
    tz = urc.parse_urc('+CTZV: "+12"')
    assert isinstance(tz, urc.VendorIndication)
    assert tz.arguments == ("+12",)


def test_ussd_urc() -> None:
    event = urc.parse_urc('+CUSD: 0,"E8329BFD4697D9EC37",15')
    assert isinstance(event, urc.UssdReceived)
    assert event.response.status is UssdStatus.DONE
    assert event.response.text == "hellohello"


def test_two_line_urcs() -> None:
    cmt = urc.parse_pdu_urc("+CMT: ,24", PDU.lower())
    assert cmt == urc.SmsReceived(
        line=f"+CMT: ,24\n{PDU.lower()}", alpha=None, length=24, pdu_hex=PDU
    )
    named = urc.parse_pdu_urc('+CMT: "Alice",24', PDU)
    assert isinstance(named, urc.SmsReceived)
    assert named.alpha == "Alice"
    cds = urc.parse_pdu_urc("+CDS: 25", PDU)
    assert isinstance(cds, urc.StatusReportReceived)
    assert cds.length == 25
    cbm = urc.parse_pdu_urc("+CBM: 88", PDU)
    assert isinstance(cbm, urc.BroadcastReceived)


@pytest.mark.parametrize(
    ("header", "pdu"),
    [("+CMT: ,24", "hello there"), ("+CMT: ,x", PDU), ("+CMTI: 1", PDU), ("+CMT: ,24", "ABC")],
)
def test_two_line_urc_rejects(header: str, pdu: str) -> None:
    with pytest.raises(AtParseError):
        urc.parse_pdu_urc(header, pdu)


@pytest.mark.parametrize(
    "line", ["+CSQ: 20,99", "+CMGS: 12", "OK", "hello", "+CMGL: 1,0,,24", "^", "0791AB"]
)
def test_not_urcs(line: str) -> None:
    assert urc.urc_name(line) is None
    with pytest.raises(AtParseError):
        urc.parse_urc(line)


@pytest.mark.parametrize(
    "line",
    ['+CMTI: "SM"', "+CMTI: SM,x", "^RSSI: 40", "^MODE:", "+CFUN: on", "+CPIN: ???", "+CMT: ,24"],
)
def test_malformed_urc_raises_at_parse_error(line: str) -> None:
    with pytest.raises(AtParseError) as caught:
        urc.parse_urc(line)
    assert caught.value.raw


URC_PREFIXES = sorted({*urc.COLON_URCS, *urc.TWO_LINE_URCS, "^BOOT", "^XYZ"})


@given(
    st.sampled_from(URC_PREFIXES),
    st.lists(st.one_of(st.integers(-3, 300).map(str), st.text(max_size=10)), max_size=6),
)
def test_random_urc_lines_raise_only_at_parse_error(prefix: str, parts: list[str]) -> None:
    line = f"{prefix}: {','.join(parts)}"
    try:
        event = urc.parse_urc(line)
    except AtParseError:
        return
    assert isinstance(event, urc.Urc)
    assert event.line == line.strip()
