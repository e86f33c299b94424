"""`simedge decode`: PDUs in, one JSON object per line out."""

from __future__ import annotations

import io
import json
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
        {"ref": 300, "total": 2, "seq": 1},
        {"ref": 300, "total": 2, "seq": 2},
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
