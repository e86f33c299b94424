"""Static checks of deploy/: the systemd units, every shell script, the Ansible playbook
and its simedge.toml template, the udev rules and the Prometheus rules.

Each check runs the real tool (systemd-analyze, shellcheck, ansible) and skips, saying
which tool is missing, where it is not installed. The full install into a Debian root is
``make test-deploy`` (deploy/test-deploy.sh), kept out of ``make test`` for its time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent import config as config_module
from agent.modem.vendors import VENDORS

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "systemd" / "simedge.service"
FIRSTBOOT_UNIT = DEPLOY / "image" / "firstboot" / "simedge-firstboot.service"
ANSIBLE = DEPLOY / "ansible"
ROLE = ANSIBLE / "roles" / "simedge"
INSTALLED_PREFIX = "/opt/simedge"


def _tool(name: str) -> str:
    """The path of ``name``: beside this Python first (the venv's ansible), then PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def _shell_scripts() -> list[Path]:
    """Every script under deploy/: *.sh, and files whose first line names bash or sh."""
    scripts = []
    for path in sorted(DEPLOY.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".sh":
            scripts.append(path)
            continue
        with path.open("rb") as handle:
            first = handle.readline()
        if re.match(rb"#!\s*/(usr/)?bin/(env\s+)?(ba)?sh\b", first):
            scripts.append(path)
    return scripts


def _unit_settings(path: Path) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit file; a key may repeat (DeviceAllow=)."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def _render_unit(unit: Path, tmp_path: Path) -> Path:
    """The unit with its installed prefix pointing at a stub executable under tmp_path,
    as install.sh points it at --prefix: verify checks that ExecStart= exists."""
    prefix = tmp_path / "prefix"
    for relative in ("venv/bin/simedge", "bin/simedge-firstboot"):
        stub = prefix / relative
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    rendered = tmp_path / unit.name
    rendered.write_text(unit.read_text().replace(INSTALLED_PREFIX, str(prefix)))
    return rendered


@pytest.mark.parametrize("unit", [UNIT, FIRSTBOOT_UNIT], ids=lambda p: p.name)
def test_unit_passes_systemd_analyze_verify(unit: Path, tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze")
    rendered = _render_unit(unit, tmp_path)
    result = subprocess.run(
        [analyze, "verify", str(rendered)], capture_output=True, text=True, timeout=60
    )
    # verify only warns (exit 0) about unknown keys: any line naming our unit is a failure.
    complaints = [
        line for line in (result.stdout + result.stderr).splitlines() if unit.name in line
    ]
    assert result.returncode == 0, result.stderr
    assert complaints == []


def test_unit_is_a_watched_notify_service_that_keeps_serial_ports_reachable() -> None:
    settings = _unit_settings(UNIT)
    single = {key: values[-1] for key, values in settings.items()}
    assert single["Type"] == "notify"
    assert int(single["WatchdogSec"]) > 0
    assert single["Restart"] == "always"
    assert int(single["LimitNOFILE"]) >= 4096
    assert single["User"] == "simedge"
    assert "dialout" in single["SupplementaryGroups"].split()
    assert single["RuntimeDirectory"] == "simedge"
    assert single["StateDirectory"] == "simedge"
    assert single["ExecStart"].startswith(f"{INSTALLED_PREFIX}/venv/bin/simedge run --config ")
    for hardening in ("ProtectSystem", "PrivateTmp", "NoNewPrivileges", "ProtectHome"):
        assert single[hardening] in ("yes", "strict"), hardening
    # Hardening that would hide the modems or stop uhubctl from switching port power.
    assert single.get("PrivateDevices", "no") == "no"
    assert single.get("ProtectKernelTunables", "no") == "no"
    allowed = {value.split()[0] for value in settings["DeviceAllow"]}
    assert {"char-ttyUSB", "char-ttyACM", "char-usb_device"} <= allowed


@pytest.mark.parametrize("script", _shell_scripts(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_shellcheck_is_clean(script: Path) -> None:
    shellcheck = _tool("shellcheck")
    result = subprocess.run(
        # -x from the checkout's root: the scripts that source deploy/arm-root.sh name it so.
        [shellcheck, "--shell=bash", "--severity=info", "-x", str(script)],
        cwd=DEPLOY.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    "script",
    [
        "install.sh",
        "uninstall.sh",
        "test-deploy.sh",
        "test-arm.sh",
        "simedge-power-cycle.sh",
        "image/firstboot/simedge-firstboot.sh",
        "test-tunnel.sh",
        "relay/setup-relay.sh",
        "relay/add-site.sh",
        "tunnel/simedge-tunnel-setup.sh",
    ],
)
def test_script_explains_itself_with_help(script: str) -> None:
    result = subprocess.run(
        [str(DEPLOY / script), "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage:")


@pytest.mark.parametrize(
    ("make_folder", "complaint"),
    [
        (False, "--wheelhouse: no such folder"),
        (True, "holds no simedge-*.whl (make it with: pip wheel --wheel-dir DIR SOURCE)"),
    ],
)
def test_install_names_a_wheelhouse_it_cannot_use(
    tmp_path: Path, make_folder: bool, complaint: str
) -> None:
    # Checked with the options, before anything is installed or root is asked for.
    wheelhouse = tmp_path / "wheels"
    if make_folder:
        wheelhouse.mkdir()
        (wheelhouse / "regex-2026.1.1-cp311-cp311-manylinux_2_17_aarch64.whl").touch()
    result = subprocess.run(
        [str(DEPLOY / "install.sh"), "--wheelhouse", str(wheelhouse)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert complaint in result.stderr


@pytest.mark.parametrize("playbook_file", ["site.yml", "prometheus.yml"])
def test_playbook_passes_syntax_check(playbook_file: str) -> None:
    playbook = _tool("ansible-playbook")
    result = subprocess.run(
        [
            playbook,
            "--syntax-check",
            "-i",
            str(ANSIBLE / "inventory.example.ini"),
            str(ANSIBLE / playbook_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": "/tmp"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ansible_template_renders_a_configuration_the_agent_accepts(tmp_path: Path) -> None:
    """The role's simedge.toml.j2 against the agent's own schema, with awkward values:
    a by-path key full of colons, a regular expression with backslashes, quotes."""
    ansible = _tool("ansible")
    (tmp_path / "api_key").write_text("key-0123456789\n")
    (tmp_path / "webhook_token").write_text("token-0123456789abcdef\n")
    for secret in ("api_key", "webhook_token"):
        (tmp_path / secret).chmod(0o600)  # as the role writes them: the agent refuses more
    variables = {
        "simedge_config_dir": str(tmp_path),
        "simedge_base_url": "https://partner.example/api/resellers",
        "simedge_slot_labels": {"platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.2:1.0": 'A "1"'},
        "simedge_ports": ["/dev/ttyAMA0"],
        "simedge_power_cycle_command": "uhubctl -l {usb_path} -a cycle -d 5",
        "simedge_ussd": {"25001": {"code": "*111*0887#", "pattern": r"(\+?7\d{10})"}},
        "simedge_log_level": "DEBUG",
        # A site behind NAT (relay.yml): public_url follows from the relay's name and port.
        "simedge_relay_port": 20001,
        "simedge_relay_host": "relay.example.net",
        "simedge_relay_site": "shop-7",
    }
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(variables))
    rendered = tmp_path / "simedge.toml"
    result = subprocess.run(
        [
            ansible,
            "localhost",
            "-c",
            "local",
            "-i",
            "localhost,",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            "-e",
            f"@{ROLE / 'defaults' / 'main.yml'}",
            "-e",
            f"@{extra}",
            "-m",
            "ansible.builtin.template",
            "-a",
            f"src={ROLE / 'templates' / 'simedge.toml.j2'} dest={rendered}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr

    config = config_module.load(str(rendered))
    assert config.onlinesim.base_url == "https://partner.example/api/resellers"
    assert config.onlinesim.api_key == "key-0123456789"
    assert config.site.slot_labels == {
        "platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.2:1.0": 'A "1"'
    }
    assert config.modems.power_cycle_command == "uhubctl -l {usb_path} -a cycle -d 5"
    assert config.modems.ussd["25001"].pattern == r"(\+?7\d{10})"
    assert config.webhook.public_url == "https://relay.example.net/shop-7"
    assert config.site.name == "localhost"  # simedge_site_name: the inventory name


def test_udev_rules_keep_modemmanager_off_every_known_vendor() -> None:
    rules = (DEPLOY / "udev" / "77-simedge-modems.rules").read_text()
    ignored: set[str] = set()
    for line in rules.splitlines():
        if 'ENV{ID_MM_DEVICE_IGNORE}="1"' in line and not line.startswith("#"):
            match = re.search(r'ATTRS\{idVendor\}=="([0-9a-f|]+)"', line)
            assert match, line
            ignored.update(match.group(1).split("|"))
    assert {device.vid for vendor in VENDORS for device in vendor.usb_devices} <= ignored


def test_alert_rules_and_dashboards_use_only_metrics_the_agent_exports() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with ansible-core")
    metrics = pytest.importorskip("agent.webhook.metrics", reason="needs prometheus_client")
    from tests.deploy import fleet

    exported = fleet.exported_names(metrics.Metrics().render().decode())
    used = fleet.names_used()
    assert any(where.startswith("Simedge") for where in used)
    assert any(where.startswith("simedge-fleet.json") for where in used)
    for where, names in used.items():
        assert names <= exported, f"{where}: unknown {names - exported}"
    assert all(alert.startswith("Simedge") for alert in fleet.rule_expressions())

    for name in ("prometheus.yml", "agent-remote-write.yml"):
        scrape = yaml.safe_load((DEPLOY / "prometheus" / name).read_text())
        assert [job["job_name"] for job in scrape["scrape_configs"]] == ["simedge"]
