"""The emulated modem as a pure state machine: bytes in, bytes out, a clock moved by hand."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime

import pytest
from smspdudecoder.easy import read_incoming_sms

from agent.emulate.modems.modem import ManualClock, Modem, Pending
from agent.emulate.modems.profiles import PROFILES
from agent.emulate.modems.sim import (
    OPERATORS,
    luhn_valid,
    make_sim,
    pack_gsm7_hex,
    unpack_gsm7_hex,
)
from agent.protocol.pdu import encode_deliver

IMEI = "867581040000004"
STAMP = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class Rig:
    """A powered modem with its AT output captured per interface."""

    def __init__(
        self, profile: str, *, operator_index: int | None = None, **options: object
    ) -> None:
        self.clock = ManualClock()
        operator = OPERATORS[operator_index] if operator_index is not None else None
        self.sim = make_sim(random.Random(7), operator)
        self.modem = Modem(
            PROFILES[profile],
            self.sim,
            IMEI,
            self.clock,
            random.Random(1),
            cnma_timeout=5.0,
            network_retry=2.0,
            **options,
        )  # type: ignore[arg-type]
        self.out: dict[int, bytearray] = {}
        for spec in self.modem.profile.ports:
            buffer = bytearray()
            self.out[spec.interface] = buffer
            self.modem.attach(spec.interface, buffer.extend)
        self.at = self.modem.urc_interface
        self.modem.power_on()
        self.clock.advance(0)
        if self.modem.ipr == 0:
            self.modem.feed(self.at, b"AT\r")  # autobaud sync: unanswered

    def take(self, interface: int | None = None) -> bytes:
        buffer = self.out[self.at if interface is None else interface]
        data = bytes(buffer)
        buffer.clear()
        return data

    def talk(self, line: str, interface: int | None = None) -> bytes:
        self.take(interface)
        self.modem.feed(self.at if interface is None else interface, line.encode() + b"\r")
        self.clock.advance(0)
        return self.take(interface)

    def quiet(self) -> None:
        self.talk("ATE0")
        self.take()

    def inject(
        self,
        text: str,
        sender: str = "+79161234567",
        klass: int | None = None,
        sms_id: str = "sms-1",
    ) -> list[bytes]:
        pdus = encode_deliver(text, sender, timestamp=STAMP, message_class=klass)
        self.modem.deliver([Pending(sms_id, n, p, klass) for n, p in enumerate(pdus, 1)])
        self.clock.advance(0)
        return pdus


def test_sim800_autobaud_swallows_the_first_at_until_ipr_is_fixed() -> None:
    clock = ManualClock()
    modem = Modem(PROFILES["sim800"], make_sim(random.Random(1)), IMEI, clock, random.Random(1))
    out = bytearray()
    modem.attach(0, out.extend)
    modem.power_on()
    clock.advance(0)
    assert out == b""  # no RDY, no boot URCs before the rate is known
    modem.feed(0, b"AT\r")
    assert out == b""
    modem.feed(0, b"AT\r")
    assert out == b"AT\r\r\nOK\r\n"
    out.clear()
    modem.feed(0, b"AT+IPR=115200\r")
    modem.feed(0, b"AT+CFUN=1,1\r")
    clock.advance(1)
    assert b"\r\nRDY\r\n" in out
    assert b"\r\nSMS Ready\r\n" in out
    out.clear()
    modem.feed(0, b"AT\r")
    assert out == b"AT\r\r\nOK\r\n"


@pytest.mark.parametrize(
    ("profile", "boot"),
    [
        ("ec25", [b"RDY", b"+CPIN: READY", b"+QUSIM: 1", b"+QIND: SMS DONE"]),
        ("huawei", [b"^BOOT:", b"^RSSI:", b"^MODE:"]),
    ],
)
def test_boot_urcs_per_profile(profile: str, boot: list[bytes]) -> None:
    rig = Rig(profile)
    said = rig.take()
    positions = [said.index(b"\r\n" + line) for line in boot]
    assert positions == sorted(positions)


def test_echo_until_ate0_and_chained_commands() -> None:
    rig = Rig("ec25", operator_index=0)
    assert rig.talk("AT") == b"AT\r\r\nOK\r\n"
    assert rig.talk("ATE0") == b"ATE0\r\r\nOK\r\n"
    assert rig.talk("AT+COPS=3,2;+COPS?") == b'\r\n+COPS: 0,2,"25001",7\r\n\r\nOK\r\n'
    assert rig.talk("AT+COPS=3,0;+COPS?;+CSQ").startswith(b'\r\n+COPS: 0,0,"MTS RUS",7\r\n')
    # echo is per byte as it arrives: the line that turns it on is not echoed itself
    assert rig.talk("ATE1V1+CMEE=1") == b"\r\nOK\r\n"
    assert rig.talk("AT") == b"AT\r\r\nOK\r\n"


def test_cmee_modes_shape_errors() -> None:
    rig = Rig("sim800")
    rig.quiet()
    assert rig.talk("AT+CEREG?") == b"\r\nERROR\r\n"  # SIM800 has no CEREG
    rig.talk("AT+CMEE=1")
    assert rig.talk("AT+CEREG?") == b"\r\n+CME ERROR: 100\r\n"
    rig.talk("AT+CMEE=2")
    assert rig.talk("AT+CEREG?") == b"\r\n+CME ERROR: unknown\r\n"
    assert rig.talk("AT+CMGR=31") == b"\r\n+CMS ERROR: invalid memory index\r\n"
    # a chain stops at its first error, keeping what came before
    assert rig.talk("AT+CSQ;+BOGUS;+CGMI").startswith(b"\r\n+CSQ: ")
    assert b"SIMCOM" not in rig.talk("AT+CSQ;+BOGUS;+CGMI")
    assert Rig("ec25").talk("ATE0;+CEREG?").endswith(b"+CEREG: 0,1\r\n\r\nOK\r\n")


def test_iccid_commands_per_vendor_agree() -> None:
    for profile, command, pattern in (
        ("sim800", "AT+CCID", rb"\r\n(\d{19,20})\r\n"),
        ("ec25", "AT+QCCID", rb"\+QCCID: (\d{19,20})F?\r\n"),
    ):
        rig = Rig(profile, operator_index=2)  # Beeline: a 19-digit ICCID
        rig.quiet()
        match = re.search(pattern, rig.talk(command))
        assert match is not None
        assert match.group(1).decode() == rig.sim.iccid
        assert luhn_valid(rig.sim.iccid)
        assert rig.talk("AT+CCID" if profile == "ec25" else "AT+QCCID").endswith(b"ERROR\r\n")
    rig = Rig("huawei", operator_index=2)
    rig.quiet()
    swapped = re.search(rb"\^ICCID: ([0-9F]{20})", rig.talk("AT^ICCID?"))
    crsm = re.search(rb'\+CRSM: 144,0,"([0-9F]{20})"', rig.talk("AT+CRSM=176,12258,0,0,10"))
    assert swapped is not None
    assert crsm is not None
    assert swapped.group(1) == crsm.group(1)
    digits = swapped.group(1).decode()
    unswapped = "".join(digits[i + 1] + digits[i] for i in range(0, 20, 2))
    assert unswapped == rig.sim.iccid + "F"


def test_identity_and_sim_answers() -> None:
    rig = Rig("ec25", operator_index=6)  # T-Mobile US: a 3-digit MNC
    rig.quiet()
    assert rig.talk("AT+CGSN") == f"\r\n{IMEI}\r\n\r\nOK\r\n".encode()
    assert rig.talk("AT+CIMI") == f"\r\n{rig.sim.imsi}\r\n\r\nOK\r\n".encode()
    assert rig.sim.imsi.startswith("310260")
    assert len(rig.sim.imsi) == 15
    assert rig.talk("AT+CGMI") == b"\r\nQuectel\r\n\r\nOK\r\n"
    assert rig.talk("AT+CPIN?") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
    cnum = rig.talk("AT+CNUM")
    assert (rig.sim.msisdn.encode() in cnum) == rig.sim.number_stored
    rig.modem.remove_sim()
    rig.take()
    rig.talk("AT+CMEE=1")
    assert rig.talk("AT+CPIN?") == b"\r\n+CME ERROR: 10\r\n"
    assert rig.talk("AT+CREG?") == b"\r\n+CREG: 0,0\r\n\r\nOK\r\n"


def test_about_half_the_sims_store_their_number() -> None:
    stored = sum(make_sim(random.Random(seed)).number_stored for seed in range(200))
    assert 70 < stored < 130


def test_cnmi_rejects_what_the_module_lacks() -> None:
    rig = Rig("huawei")
    rig.quiet()
    rig.talk("AT^CURC=0;+CMEE=1")
    assert rig.talk("AT+CNMI=2,1,2,1,0") == b"\r\n+CMS ERROR: 303\r\n"
    assert rig.talk("AT+CNMI=2,1,0,0,0") == b"\r\nOK\r\n"
    assert rig.talk("AT+CNMI?") == b"\r\n+CNMI: 2,1,0,0,0\r\n\r\nOK\r\n"
    assert Rig("sim800").talk("ATE0;+CNMI=2,1,2,1,0").endswith(b"\r\nOK\r\n")


@pytest.mark.parametrize(("profile", "first_index"), [("sim800", 1), ("ec25", 0), ("huawei", 0)])
def test_cmti_cmgr_cmgd(profile: str, first_index: int) -> None:
    rig = Rig(profile)
    rig.quiet()
    rig.talk("AT^CURC=0") if profile == "huawei" else None
    rig.talk("AT+CMGF=0;+CNMI=2,1,0,0,0")
    pdus = rig.inject("Hello from the network")
    assert rig.take() == f'\r\n+CMTI: "SM",{first_index}\r\n'.encode()
    answer = rig.talk(f"AT+CMGR={first_index}")
    length = len(pdus[0]) - 1 - pdus[0][0]
    assert answer == f"\r\n+CMGR: 0,,{length}\r\n{pdus[0].hex().upper()}\r\n\r\nOK\r\n".encode()
    assert rig.talk(f"AT+CMGR={first_index}").startswith(b"\r\n+CMGR: 1,,")  # now read
    assert rig.talk(f"AT+CMGD={first_index}") == b"\r\nOK\r\n"
    assert rig.talk(f"AT+CMGR={first_index}") == b"\r\nOK\r\n"  # empty slot
    assert rig.talk("AT+CPMS?").startswith(b'\r\n+CPMS: "SM",0,30,')


def test_cmgl_lists_every_pdu_and_an_independent_decoder_reads_them() -> None:
    rig = Rig("sim800")
    rig.quiet()
    texts = ["Привет 😀", "x" * 200, "VK code 1234"]
    rig.inject(texts[0], "+79161234567", sms_id="a")
    rig.inject(texts[1], "VKcom", sms_id="b")
    rig.inject(texts[2], "89161234567", sms_id="c")
    listing = rig.talk("AT+CMGL=4").decode()
    entries = re.findall(r"\+CMGL: (\d+),(\d),,(\d+)\r\n([0-9A-F]+)", listing)
    assert [int(e[0]) for e in entries] == [1, 2, 3, 4]
    decoded = []
    for _index, _stat, length, hex_pdu in entries:
        assert int(length) == len(hex_pdu) // 2 - 1 - int(hex_pdu[:2], 16)
        decoded.append(read_incoming_sms(hex_pdu))
    assert decoded[0]["content"] == texts[0]
    assert decoded[0]["sender"] == "+79161234567"
    assert decoded[1]["sender"] == "VKcom"
    assert decoded[1]["content"] + decoded[2]["content"] == texts[1]
    assert decoded[3]["sender"] == "89161234567"
    assert decoded[3]["content"] == texts[2]
    assert rig.talk("AT+CMGD=1,4") == b"\r\nOK\r\n"
    assert rig.talk("AT+CMGL=4") == b"\r\nOK\r\n"


def test_cmt_needs_cnma_and_a_missed_ack_turns_delivery_off() -> None:
    rig = Rig("ec25")
    rig.quiet()
    rig.talk("AT+CSMS=1;+CNMI=2,2,0,0,0")
    pdus = rig.inject("direct one", sms_id="one")
    length = len(pdus[0]) - 1 - pdus[0][0]
    assert rig.take() == f"\r\n+CMT: ,{length}\r\n{pdus[0].hex().upper()}\r\n".encode()
    assert rig.talk("AT+CNMA") == b"\r\nOK\r\n"
    assert rig.talk("AT+CMEE=1;+CNMA") == b"\r\n+CMS ERROR: 340\r\n"
    assert rig.modem.sim is not None
    assert rig.sim.storage.used == 0

    rig.inject("direct two", sms_id="two")
    assert rig.take().startswith(b"\r\n+CMT: ,")
    rig.clock.advance(5.0)  # no ack in time
    assert rig.talk("AT+CNMI?") == b"\r\n+CNMI: 2,0,0,0,0\r\n\r\nOK\r\n"
    rig.clock.advance(2.0)  # the network retries: stored, no indication under <mt>=0
    assert rig.take() == b""
    assert rig.sim.storage.used == 1


def test_class2_is_stored_even_under_direct_delivery() -> None:
    rig = Rig("ec25")
    rig.quiet()
    rig.talk('AT+CSMS=1;+CNMI=2,2,0,0,0;+CPMS="ME","ME","ME"')
    rig.inject("to the SIM", klass=2)
    assert rig.take() == b'\r\n+CMTI: "SM",0\r\n'
    assert rig.sim.storage.used == 1
    assert rig.modem.me.used == 0


def test_full_storage_holds_sms_in_the_network_until_a_slot_frees() -> None:
    rig = Rig("huawei")
    rig.quiet()
    rig.talk("AT^CURC=0;+CNMI=2,1,0,0,0")
    old = encode_deliver("old", "Balance", timestamp=STAMP)[0]
    assert rig.modem.fill_storage([old] * 40) == 30
    rig.inject("waiting")
    assert rig.take() == b'\r\n^SMMEMFULL: "SM"\r\n'
    assert rig.modem.describe()["in_network"] == 1
    assert rig.talk("AT+CMGD=7") == b'\r\nOK\r\n\r\n+CMTI: "SM",7\r\n'


@pytest.mark.parametrize("operator_index", range(len(OPERATORS)))
def test_ussd_answers_with_the_number_in_the_operators_encoding(operator_index: int) -> None:
    rig = Rig("ec25", operator_index=operator_index)
    rig.quiet()
    operator = rig.sim.operator
    assert rig.talk(f'AT+CUSD=1,"{operator.ussd_code}",15') == b"\r\nOK\r\n"
    rig.clock.advance(1)
    match = re.fullmatch(rb'\r\n\+CUSD: 0,"([0-9A-F]+)",(15|72)\r\n', rig.take())
    assert match is not None
    if match.group(2) == b"72":
        text = bytes.fromhex(match.group(1).decode()).decode("utf-16-be")
    else:
        text = unpack_gsm7_hex(match.group(1).decode())
    assert rig.sim.msisdn.lstrip("+") in text
    assert match.group(2) == (b"72" if operator.ussd_encoding == "ucs2" else b"15")


def test_huawei_wants_the_ussd_code_packed() -> None:
    rig = Rig("huawei", operator_index=4)
    rig.quiet()
    rig.talk("AT^CURC=0;+CMEE=1")
    code = rig.sim.operator.ussd_code
    assert rig.talk(f'AT+CUSD=1,"{code}",15') == b"\r\n+CME ERROR: 100\r\n"
    assert rig.talk(f'AT+CUSD=1,"{pack_gsm7_hex(code)}",15') == b"\r\nOK\r\n"
    rig.clock.advance(1)
    assert rig.take().startswith(b'\r\n+CUSD: 0,"')


def test_cfun_reset_reboots_and_loses_settings() -> None:
    rig = Rig("ec25")
    rig.talk("ATE0;+CMEE=2;+CNMI=1,2,0,0,0")
    assert rig.talk("AT+CFUN=1,1") == b"\r\nOK\r\n"
    rig.clock.advance(1)
    assert b"\r\nRDY\r\n" in rig.take()
    assert rig.talk("AT+CMEE?") == b"AT+CMEE?\r\r\n+CMEE: 0\r\n\r\nOK\r\n"
    assert rig.talk("ATE0;+CNMI?").endswith(b"+CNMI: 2,1,0,0,0\r\n\r\nOK\r\n")


def test_ec25_second_at_port_shares_state_and_urcs_go_to_the_first() -> None:
    rig = Rig("ec25")
    assert rig.talk("ATE0;+CMEE=1", interface=3) == b"ATE0;+CMEE=1\r\r\nOK\r\n"
    assert rig.talk("AT+CEREG=9") == b"AT+CEREG=9\r\r\n+CME ERROR: 50\r\n"  # echo per port
    rig.inject("hello")
    assert rig.take() == b'\r\n+CMTI: "SM",0\r\n'
    assert rig.take(3) == b""
    for _ in range(3):
        rig.modem.noise()
    assert rig.take(1).count(b"$GPRMC,") == 3
    assert b"\x7e" in rig.take(0) or rig.take(0) == b""


def test_verbose_off_gives_numeric_results() -> None:
    rig = Rig("ec25")
    assert rig.talk("ATE0V0") == b"ATE0V0\r0\r"
    assert rig.talk("AT+CSQ").endswith(b"\r\n0\r")
    assert rig.talk("AT+NOPE") == b"4\r"


def test_hang_slow_garbage() -> None:
    rig = Rig("ec25")
    rig.quiet()
    rig.modem.set_output_fault("hang", active=True)
    assert rig.talk("AT") == b""
    rig.modem.clear_faults()
    rig.modem.set_output_fault("slow", active=True)
    assert rig.talk("AT") == b""
    rig.clock.advance(3.0)
    assert rig.take() == b"\r\nOK\r\n"
    rig.modem.clear_faults()
    rig.modem.set_output_fault("garbage", active=True)
    noisy = rig.talk("AT+CGMI")
    assert noisy.startswith(b"\r\nQuectel")
    assert noisy.endswith(b"\r\nOK\r\n")
    assert len(noisy) > 17


def test_huawei_chatters_until_curc_0() -> None:
    rig = Rig("huawei")
    rig.take()
    rig.modem.noise()
    assert rig.take().startswith(b"\r\n^RSSI:")
    rig.talk("AT^CURC=0")
    rig.modem.noise()
    assert rig.take() == b""


def test_text_mode_is_minimal_but_readable() -> None:
    rig = Rig("sim800", operator_index=0)
    rig.quiet()
    rig.inject("Hello text mode")
    rig.take()
    answer = rig.talk("AT+CMGF=1;+CMGR=1").decode()
    assert answer.startswith('\r\n+CMGR: "REC UNREAD","+79161234567",,"26/11/25,12:00:00+00"\r\n')
    assert "Hello text mode\r\n\r\nOK" in answer
    assert rig.talk('AT+CMGL="ALL"').startswith(b'\r\n+CMGL: 1,"REC READ","+79161234567"')
    assert rig.talk("AT+CMEE=1;+CMGL=4") == b"\r\n+CMS ERROR: 302\r\n"


def test_ec25_urc_port_is_kept_across_a_reset() -> None:
    rig = Rig("ec25")
    rig.quiet()
    assert rig.talk('AT+QURCCFG="urcport","usbmodem"') == b"\r\nOK\r\n"
    rig.talk("AT+CFUN=1,1")
    rig.clock.advance(5)
    rig.quiet()
    assert b'+QURCCFG: "urcport","usbmodem"' in rig.talk('AT+QURCCFG="urcport"')
    assert rig.talk('AT+QURCCFG="urcport","nowhere"').endswith(b"ERROR\r\n")
    assert Rig("sim800").talk('AT+QURCCFG="urcport"').endswith(b"ERROR\r\n")


@pytest.mark.parametrize(
    ("charset", "string"),
    [
        ("GSM", b"Your balance is \x0112.50"),  # GSM 7-bit default alphabet: '£' is 0x01
        ("IRA", b"Your balance is ?12.50"),  # ASCII has no '£'
        ("8859-1", b"Your balance is \xa312.50"),
        ("UCS2", "Your balance is £12.50".encode("utf-16-be").hex().upper().encode()),
    ],
)
def test_sim800_prints_a_ussd_answer_in_its_te_character_set(charset: str, string: bytes) -> None:
    o2 = next(index for index, op in enumerate(OPERATORS) if op.mcc_mnc == "23410")
    rig = Rig("sim800", operator_index=o2)
    rig.quiet()
    rig.sim.balance = 12.5
    assert rig.talk(f'AT+CSCS="{charset}"') == b"\r\nOK\r\n"
    assert rig.talk(f'AT+CUSD=1,"{rig.sim.operator.balance_code}",15') == b"\r\nOK\r\n"
    rig.clock.advance(1)
    dcs = b"72" if charset == "UCS2" else b"15"
    assert rig.take() == b'\r\n+CUSD: 0,"' + string + b'",' + dcs + b"\r\n"


def test_sim800_in_gsm_escapes_extension_characters() -> None:
    rig = Rig("sim800")
    rig.quiet()
    assert rig.talk('AT+CSCS="GSM"') == b"\r\nOK\r\n"
    assert rig.modem._te_text("€[@$è") == b"\x1be\x1b<\x00\x02\x04"
    assert rig.modem._te_text("日") == b"?"
