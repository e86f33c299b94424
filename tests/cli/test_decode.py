"""`simedge decode`: PDUs in, one JSON object per line out."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent.cli import main
from agent.protocol.pdu import encode_deliver

ROOT = Path(__file__).resolve().parents[2]
SIMEDGE = Path(sys.executable).with_name("simedge")

# ModemManager's test_pdu3 ("hellohello") and test_pdu2 (alphanumeric sender, Cyrillic).
HELLO = "07912143658709F1040B918100551512F20000111010214365000AE8329BFD4697D9EC37"
CYRILLIC = "07919730071111F10414D04937BD2C7797E9D3E614000811309291024061080442043504410442"
STATUS_REPORT = "07914356060013F1065A098136397339F7219011700463802190117004638030"
EIGHT_BIT = "07912143658709F1040B918100551512F20004111010214365000AE8329BFD4697D9EC37DE"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict]]:
    code = main(["decode", *argv])
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines()]


def test_decodes_each_argument_into_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, (hello, cyrillic) = run(capsys, HELLO, CYRILLIC)
    assert code == 0
    assert hello == {
        "pdu": HELLO,
        "type": "deliver",
        "smsc": "+12345678901",
        "sender": "+18005551212",
        "sender_type": "international",
        "timestamp": "2011-01-01T12:34:56+00:00",
        "epoch": 1293885296,
        "text": "hellohello",
        "encoding": "gsm7",
        "concat": None,
        "class": None,
        "pid": 0,
        "dcs": 0,
        "dcs_hex": "00",
        "sender_ton": 1,
        "sender_npi": 1,
        "compressed": False,
        "more_messages": False,
        "status_report": False,
        "reply_path": False,
        "udhi": False,
        "udh": [],
        "data": "68656C6C6F68656C6C6F",  # GSM 7-bit: the septet values, one per octet
        "ports": None,
        "language_single": 0,
        "language_locking": 0,
        "waiting": None,
        "waiting_active": False,
        "text_damaged": False,
        "problems": [],
    }
    assert (cyrillic["sender"], cyrillic["sender_type"], cyrillic["text"]) == (
        "InternetSMS",
        "alphanumeric",
        "тест",
    )
    assert cyrillic["timestamp"] == "2011-03-29T19:20:04+04:00"


def test_text_is_written_as_utf8_not_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    main(["decode", CYRILLIC])
    assert '"text": "тест"' in capsys.readouterr().out


def test_concatenated_parts_report_ref_total_seq(capsys: pytest.CaptureFixture[str]) -> None:
    stamp = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=-3, minutes=-30)))
    pdus = [
        pdu.hex()
        for pdu in encode_deliver("z" * 300, "VKcom", timestamp=stamp, reference=300, ref_bits=16)
    ]
    code, records = run(capsys, *pdus)
    assert code == 0
    assert [record["concat"] for record in records] == [
        {"ref": 300, "total": 2, "seq": 1, "ref_bits": 16},
        {"ref": 300, "total": 2, "seq": 2, "ref_bits": 16},
    ]
    assert records[0]["udh"] == [
        {"iei": 8, "iei_hex": "08", "data": "012C0201"},
    ]
    assert records[0]["timestamp"] == "2024-05-01T12:00:00-03:30"
    assert records[0]["epoch"] == int(stamp.timestamp())


def test_other_pdu_types_and_8bit_data(capsys: pytest.CaptureFixture[str]) -> None:
    code, (report, data) = run(capsys, STATUS_REPORT, EIGHT_BIT)
    assert code == 0
    assert (report["type"], report["recipient"], report["status"], report["delivered"]) == (
        "status_report",
        "639337937",
        0x30,
        False,
    )
    assert (data["encoding"], data["text"], data["data"]) == ("8bit", "", "E8329BFD4697D9EC37DE")


def test_a_bad_pdu_prints_an_error_line_and_the_rest_still_print(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, (first, bad, last) = run(capsys, HELLO, HELLO[:40], CYRILLIC)
    assert code == 1
    assert first["text"] == "hellohello"
    assert last["text"] == "тест"
    assert bad["error"] == (
        "service centre timestamp at octet 19: "
        "a 7-octet timestamp runs past the end of the PDU (20 octets)"
    )
    assert bad["pdu"] == HELLO[:40]
    assert (bad["field"], bad["offset"]) == ("service centre timestamp", 19)


def test_stdin_one_pdu_per_line_blank_lines_skipped(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{HELLO}\n\n   \n{CYRILLIC}\r\n"))
    code, records = run(capsys, "-")
    assert code == 0
    assert [record["text"] for record in records] == ["hellohello", "тест"]


def test_no_smsc_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, (record,) = run(capsys, "--no-smsc", HELLO[16:])
    assert (code, record["smsc"], record["text"]) == (0, None, "hellohello")


def test_installed_console_script_reads_stdin() -> None:
    if not SIMEDGE.exists():
        pytest.skip(f"{SIMEDGE} is missing: run `.venv/bin/pip install -e .` once")
    result = subprocess.run(
        [str(SIMEDGE), "decode", "-", "ZZ"],
        input=f"{CYRILLIC}\n",
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    cyrillic, bad = (json.loads(line) for line in result.stdout.splitlines())
    assert cyrillic["text"] == "тест"
    assert bad["error"] == "hex at octet 0: 'Z' at character 0 is not a hex digit"


# A status report as a SIM record holds it (TS 51.011 10.5.3): 23 TPDU octets, FF padding.
PADDED_REPORT = "06918509002100067808A025057218422180219500404221802195004000" + "FF" * 12
# HELLO with its time-zone octet (octet 25) made C2, which is not decimal.
HELLO_BAD_ZONE = HELLO[:50] + "C2" + HELLO[52:]


def test_a_pasted_modem_transcript_uses_the_announced_lengths(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    transcript = (
        "AT+CMGL=4\r\n"
        f"+CMGL: 1,1,,{len(HELLO) // 2 - 8}\r\n{HELLO}\r\n"
        # The length cuts the padding, whatever it holds (here not FF).
        f'+CMGL: 2,1,"",23\r\n{PADDED_REPORT[:60]}0712AB\r\n'
        "\r\nOK\r\n"
        f"+CMT: ,{len(CYRILLIC) // 2 - 8}\r\n{CYRILLIC}\r\n"
        f"+CDS: 23\r\n{PADDED_REPORT}\r\n"
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(transcript))
    code, records = run(capsys, "-")
    assert code == 0
    assert [(record["pdu"][:10], record["type"], record.get("length")) for record in records] == [
        (HELLO[:10], "deliver", 28),
        (PADDED_REPORT[:10], "status_report", 23),
        (CYRILLIC[:10], "deliver", 31),
        (PADDED_REPORT[:10], "status_report", 23),
    ]
    assert records[1]["pdu"] == PADDED_REPORT[:60] + "0712AB"
    assert (records[1]["reference"], records[1]["pid"], records[1]["delivered"]) == (
        120,
        None,
        True,
    )


def test_no_smsc_and_length_per_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        sys, "stdin", io.StringIO(f"--no-smsc {HELLO[16:]}\n{HELLO}\n--length=23 {PADDED_REPORT}\n")
    )
    code, (tpdu, whole, report) = run(capsys, "-")
    assert code == 0
    assert (tpdu["smsc"], tpdu["text"], tpdu["no_smsc"]) == (None, "hellohello", True)
    assert (whole["smsc"], whole["text"], "no_smsc" in whole) == (
        "+12345678901",
        "hellohello",
        False,
    )
    assert (report["length"], report["status"]) == (23, 0)


def test_salvaged_fields_are_marked_and_strict_refuses_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, (record,) = run(capsys, HELLO_BAD_ZONE)
    assert code == 0
    assert (record["text"], record["timestamp"], "epoch" in record) == ("hellohello", None, False)
    assert record["problems"] == [
        {
            "field": "service centre timestamp",
            "offset": 25,
            "message": "time zone octet C2 is not decimal",
            "text": "service centre timestamp at octet 25: time zone octet C2 is not decimal",
        }
    ]
    code, (refused,) = run(capsys, "--strict", HELLO_BAD_ZONE)
    assert code == 1
    assert refused["pdu"] == HELLO_BAD_ZONE
    assert refused["error"].endswith("time zone octet C2 is not decimal")


def test_a_line_announced_as_a_pdu_that_is_not_hex_is_refused_not_skipped(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        sys, "stdin", io.StringIO(f"+CMGR: 0,,28\r\nno pdu here\r\nOK\r\n{HELLO}\n")
    )
    code, (refused, hello) = run(capsys, "-")
    assert code == 1
    assert (refused["pdu"], refused["field"]) == ("no pdu here", "hex")
    assert hello["text"] == "hellohello"


def test_an_oversized_line_is_refused_by_its_size(capsys: pytest.CaptureFixture[str]) -> None:
    code, (record,) = run(capsys, "00" * 5000)
    assert code == 1
    assert record["error"] == "hex at octet 512: 10000 characters are more than any PDU has (1024)"
    assert len(record["pdu"]) == 1024


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["decode"])
    assert caught.value.code == 2
    assert "HEX" in capsys.readouterr().err


def test_an_internal_error_exits_3_not_1() -> None:
    if not SIMEDGE.exists():
        pytest.skip(f"{SIMEDGE} is missing: run `.venv/bin/pip install -e .` once")
    # Output to a full device fails inside the program: a crash, not a refused PDU.
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [str(SIMEDGE), "decode", HELLO],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 3
    assert "No space left on device" in result.stderr


def test_undecodable_bytes_on_stdin_are_a_refused_line_not_a_crash() -> None:
    if not SIMEDGE.exists():
        pytest.skip(f"{SIMEDGE} is missing: run `.venv/bin/pip install -e .` once")
    result = subprocess.run(
        [str(SIMEDGE), "decode", "-"],
        input=HELLO[:4].encode() + b"\xff" + HELLO[5:].encode() + b"\n" + HELLO.encode() + b"\n",
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"},
    )
    assert result.returncode == 1
    refused, hello = (json.loads(line) for line in result.stdout.splitlines())
    assert refused["error"] == "hex at octet 2: '\ufffd' at character 4 is not a hex digit"
    assert hello["text"] == "hellohello"


def test_the_readme_transcript_decodes_as_the_readme_says(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Decoding what a modem printed", 1)[1]
    transcript = section.split("```\n", 2)[1]
    assert "+CMGL: 1,1,,23" in transcript
    monkeypatch.setattr(sys, "stdin", io.StringIO(transcript))
    code, (code_sms, report, salvaged) = run(capsys, "-")
    assert code == 0
    assert (code_sms["text"], code_sms["timestamp"], code_sms["problems"]) == (
        "Your code is 4711",
        "2025-03-14T09:26:53+03:00",
        [],
    )
    assert (report["reference"], report["recipient"], report["delivered"]) == (
        120,
        "52502781",
        True,
    )
    assert (salvaged["text"], salvaged["timestamp"]) == ("Your code is 4711", None)
    assert salvaged["problems"][0]["message"] == "time zone octet C2 is not decimal"
    assert f'"pdu": "{code_sms["pdu"][:4]}…{code_sms["pdu"][-4:]}"' in section
