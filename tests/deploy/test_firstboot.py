"""The first-boot script against a temporary system (``--root``) and boot partition, with
hostile settings (issue 14, item 9): every value arrives verbatim, nothing in a value is
ever run, and the boot partition keeps no secret, also when the script fails half-way."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "image" / "firstboot" / "simedge-firstboot.sh"
EXAMPLE = ROOT / "deploy" / "config.example.toml"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the first-boot script runs as root only"),
    pytest.mark.skipif(shutil.which("runuser") is None, reason="needs runuser (util-linux)"),
]


def hostile(tmp_path: Path) -> dict[str, str]:
    """Values a careless or malicious simedge.txt may hold: shell, sed, TOML and keyfile
    metacharacters, a command substitution that must never run."""
    run_me = f"$(touch {tmp_path}/pwned)`touch {tmp_path}/pwned`"
    return {
        "API_KEY": f"k3y&#\\1\"'{run_me}",
        "BASE_URL": f"https://partner.example/api/resellers?a=1&b=\\2#frag\"q'{run_me}\\n",
        "WEBHOOK_TOKEN": f"tok&#\\x\"'{run_me}-0123456789",
        "WIFI_SSID": 'Cafe & "Bar" #1',
        "WIFI_PASSWORD": f"p&ss#w\\rd\"'{run_me}",
    }


def make_system(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(root, conf, boot): an installed system under ``root`` as install.sh leaves it,
    its configuration pointing at its own secret files, and an empty boot partition."""
    root, boot, prefix = tmp_path / "root", tmp_path / "boot", tmp_path / "prefix"
    conf = root / "etc" / "simedge"
    conf.mkdir(parents=True)
    boot.mkdir()
    prefix.mkdir()
    (prefix / "venv").symlink_to(sys.prefix)  # the simedge of this checkout
    (conf / "simedge.toml").write_text(EXAMPLE.read_text().replace("/etc/simedge/", f"{conf}/"))
    (conf / "install.env").write_text(f"PREFIX={prefix}\nSERVICE_USER=root\n")
    return root, conf, boot


def write_settings(boot: Path, values: dict[str, str]) -> None:
    lines = ["# from a Windows editor: CRLF line ends", *(f"{k}={v}" for k, v in values.items())]
    (boot / "simedge.txt").write_bytes("\r\n".join(lines).encode() + b"\r\n")


def firstboot(root: Path, boot: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "--boot-dir", str(boot), "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"},
    )


def boot_bytes(boot: Path) -> bytes:
    return b"".join(path.read_bytes() for path in boot.iterdir())


def test_hostile_values_arrive_verbatim_and_the_card_keeps_no_secret(tmp_path: Path) -> None:
    root, conf, boot = make_system(tmp_path)
    values = hostile(tmp_path)
    write_settings(boot, values)
    before = (conf / "simedge.toml").read_text().splitlines()

    result = firstboot(root, boot)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "pwned").exists()

    assert (conf / "api_key").read_text() == values["API_KEY"] + "\n"
    assert (conf / "webhook_token").read_text() == values["WEBHOOK_TOKEN"] + "\n"
    for secret in ("api_key", "webhook_token"):
        assert stat.S_IMODE((conf / secret).stat().st_mode) == 0o600
    document = tomllib.loads((conf / "simedge.toml").read_text())
    assert document["onlinesim"]["base_url"] == values["BASE_URL"]
    after = (conf / "simedge.toml").read_text().splitlines()
    assert [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b] == [6]

    keyfile = root / "etc/NetworkManager/system-connections/simedge-wifi.nmconnection"
    lines = keyfile.read_text().splitlines()
    assert 'ssid=Cafe & "Bar" #1' in lines
    assert "psk=" + values["WIFI_PASSWORD"].replace("\\", "\\\\") in lines
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600

    assert sorted(p.name for p in boot.iterdir()) == ["simedge-firstboot.log"]
    log = (boot / "simedge-firstboot.log").read_text()
    assert "[onlinesim] base_url set to https://partner.example/" in log
    assert "check: " in log
    assert "configuration is valid" in log
    for secret in ("API_KEY", "WEBHOOK_TOKEN", "WIFI_PASSWORD"):
        assert values[secret].encode() not in boot_bytes(boot)


def test_a_failure_half_way_still_wipes_the_settings_and_says_so(tmp_path: Path) -> None:
    root, conf, boot = make_system(tmp_path)
    values = hostile(tmp_path)
    write_settings(boot, values)
    shutil.rmtree(conf)
    conf.write_text("not a folder")  # the first write under /etc/simedge fails (set -e)

    result = firstboot(root, boot)
    assert result.returncode != 0
    assert sorted(p.name for p in boot.iterdir()) == ["simedge-firstboot.log"]
    log = (boot / "simedge-firstboot.log").read_text()
    assert f"FAILED (exit {result.returncode})" in log
    assert "write it again" in log
    for secret in ("API_KEY", "WEBHOOK_TOKEN", "WIFI_PASSWORD"):
        assert values[secret].encode() not in boot_bytes(boot)
    assert not (tmp_path / "pwned").exists()


def test_a_base_url_the_schema_refuses_is_not_applied_and_the_log_says_why(
    tmp_path: Path,
) -> None:
    root, conf, boot = make_system(tmp_path)
    before = (conf / "simedge.toml").read_text()
    (boot / "simedge.toml").write_text(before)  # a whole file too: applied, then wiped
    write_settings(boot, {"BASE_URL": "javascript:alert(1)"})

    result = firstboot(root, boot)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (conf / "simedge.toml").read_text() == before
    log = (boot / "simedge-firstboot.log").read_text()
    assert "BASE_URL not applied: simedge: " in log
    assert 'expected an http:// or https:// URL, got "javascript:alert(1)"' in log
    assert sorted(p.name for p in boot.iterdir()) == ["simedge-firstboot.log"]
