"""``simedge scan`` against emulated modems on real ptys (the hub on its own thread, the
command in the test's thread, as a person would run it next to a running hub)."""

from __future__ import annotations

import json
import os
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.cli import main
from tests.emulate.modems_fixtures import HubThread, modem_hub
from tests.locks_helpers import HOLD_DATA_DIR, holder

__all__ = ["modem_hub"]  # the fixture, used by name

StartHub = Callable[..., HubThread]
PI4 = "platform-fd500000.pcie-pci-0000:01:00.0"
REQUIRED_KEYS = {
    "slot",
    "ports",
    "model",
    "imei",
    "iccid",
    "imsi",
    "number",
    "number_source",
    "operator",
    "signal_dbm",
    "registration",
    "sim_state",
}


@pytest.fixture
def silent_port(tmp_path: Path) -> Iterator[str]:
    """A pty nobody answers on, behind a by-path style link; the glob of its folder."""
    folder = tmp_path / "silent"
    folder.mkdir()
    master, slave = os.openpty()
    tty.setraw(slave)
    (folder / f"{PI4}-usb-0:2.1:1.0-port0").symlink_to(os.ttyname(slave))
    yield f"{folder}/*"
    os.close(master)
    os.close(slave)


def config_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "simedge.toml"
    path.write_text(
        '[onlinesim]\nbase_url = "http://127.0.0.1:9/api"\napi_key = "k3y"\n'
        '[webhook]\ntoken = "0123456789abcdef0123"\n' + body
    )
    return path


def test_json_lists_every_modem_with_its_identity_and_every_ignored_port(
    modem_hub: StartHub, silent_port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = modem_hub(count=3, profile="mixed", seed=4, noise_interval=0.05)
    profiles = [slot.profile.name for slot in hub.hub.slots]
    assert sorted(profiles) == ["ec25", "huawei", "sim800"]  # seed 4: one of each
    assert (
        code(["--no-auto", "--port", f"{hub.hub.directory}/*", "--port", silent_port, "--json"])
        == 0
    )
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert "probing" in err
    assert "found 3 modems" in err

    modems = {modem["slot"]: modem for modem in result["modems"]}
    assert sorted(modems) == ["1.1.1", "1.1.2", "1.1.3"]
    for slot, modem in zip(hub.hub.slots, result["modems"], strict=True):
        assert modem.keys() >= REQUIRED_KEYS
        assert modem["imei"] == slot.modem.imei
        assert modem["iccid"] == slot.modem.sim.iccid
        assert modem["imsi"] == slot.modem.sim.imsi
        assert modem["sim_state"] == "ready"
        assert modem["registration"] == "home"
        assert modem["signal_dbm"] < 0
        assert modem["operator"] == slot.modem.sim.operator.mcc_mnc
        assert modem["state"] == "ready"
        assert modem["number"] == slot.modem.sim.msisdn
        assert modem["number_source"] == ("cnum" if slot.modem.sim.number_stored else "ussd")

    ignored = {port["device"]: port for port in result["ignored"]}
    silent = [port for port in ignored.values() if port["role"] == "silent"]
    assert len(silent) == 1
    assert silent[0]["why"].startswith("silent: 3 x AT unanswered")
    expected_noisy = 2 * profiles.count("ec25")
    assert sum(port["role"] in ("diag", "nmea") for port in ignored.values()) == expected_noisy


def test_listing_shows_labels_numbers_and_why_ports_were_ignored(
    modem_hub: StartHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = modem_hub(count=1, profile="ec25", noise_interval=0.05)
    config = config_file(
        tmp_path,
        f'[site]\nslot_labels = {{ "1.1.1" = "top shelf, left" }}\n'
        f'[modems]\nports = ["{hub.hub.directory}/*"]\n',
    )
    assert code(["--config", str(config), "--no-auto"]) == 0
    out = capsys.readouterr().out
    modem = hub.hub.slots[0].modem
    assert out.startswith("slot 1.1.1 (top shelf, left): Quectel EC25 [ready]")
    assert f"IMEI      {modem.imei}" in out
    assert f"ICCID {modem.sim.iccid}" in out
    assert "number    +" in out
    assert "ignored ports:" in out
    assert "diag: DIAG/binary port" in out
    assert "nmea: GPS/NMEA port" in out


def test_a_pool_with_one_imei_is_listed_as_one_modem_per_module(
    modem_hub: StartHub, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = modem_hub(count=8, profile="pool")
    assert code(["--no-auto", "--port", f"{hub.hub.directory}/*", "--json"]) == 0
    modems = json.loads(capsys.readouterr().out)["modems"]
    assert len(modems) == 8
    assert len({m["imei"] for m in modems}) == 1
    assert len({m["iccid"] for m in modems}) == 8


def test_four_modems_on_one_multi_uart_chip_are_listed_as_four(
    modem_hub: StartHub, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 15 item 4: one USB device (a 4-UART chip the table does not know), four
    # modules: told apart by the IMEI each port names, not merged into one modem.
    hub = modem_hub(count=4, profile="quad")
    assert code(["--no-auto", "--port", f"{hub.hub.directory}/*", "--json"]) == 0
    modems = json.loads(capsys.readouterr().out)["modems"]
    assert [m["slot"] for m in modems] == ["1.1.1", "1.1.1-if1", "1.1.1-if2", "1.1.1-if3"]
    assert {m["imei"] for m in modems} == {slot.modem.imei for slot in hub.hub.slots}
    assert all(m["sim_state"] == "ready" for m in modems)


def test_nothing_found_is_still_a_successful_scan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert code(["--no-auto", "--port", f"{tmp_path}/*"]) == 0
    out, err = capsys.readouterr()
    assert out == "no modems found\n"
    assert "found 0 modems, ignored 0 ports" in err


def test_a_bad_configuration_is_exit_2_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(tmp_path, '[modems]\nports = "/dev/ttyUSB*"\n')
    assert code(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{config}: [modems] ports: expected a list" in err


def code(arguments: list[str]) -> int:
    return main(["scan", *arguments])


def test_refused_while_the_agent_of_the_configuration_runs(
    modem_hub: StartHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = modem_hub(count=1, profile="sim800")
    data = tmp_path / "data"
    data.mkdir()
    config = config_file(
        tmp_path, f'[site]\ndata_dir = "{data}"\n[modems]\nports = ["{hub.hub.directory}/*"]\n'
    )
    with holder(HOLD_DATA_DIR, str(data)) as agent:
        assert code(["--config", str(config), "--no-auto"]) == 1
        out, err = capsys.readouterr()
        assert out == ""
        assert err.startswith(
            f"simedge scan: {data}: another simedge agent (PID {agent.pid}) is already running"
        )
        assert "simedge status" in err
    assert code(["--config", str(config), "--no-auto"]) == 0
    assert "found 1 modems" in capsys.readouterr().err
