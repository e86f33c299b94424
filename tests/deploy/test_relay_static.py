"""Static checks of the relay (deploy/relay) and the site's tunnel (deploy/tunnel): the
files setup-relay.sh and add-site.sh write, through the real sshd -t, caddy adapt and
validate, systemd-analyze verify and ansible-playbook --syntax-check; each skips, saying
which tool is missing, where it is not installed. The tunnel working end to end, cut and
restored, is ``make test-tunnel`` (tests/tunnel), kept out of ``make test`` for its time.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.deploy.test_deploy_static import ANSIBLE, DEPLOY, _tool

RELAY = DEPLOY / "relay"
TUNNEL_UNIT = DEPLOY / "tunnel" / "simedge-tunnel.service"
SITE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDKl35axWCFm5aIvDeYoqm+A2xv6Gma6R1Eh21U9aZoR"
# The longest a dead link may go unnoticed: the issue asks for "within a minute".
DEAD_LINK_BOUND = 60


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)  # type: ignore[call-overload]


@pytest.fixture
def relay_root(tmp_path: Path) -> Path:
    """setup-relay.sh's files under tmp_path, for an existing account (no account is
    created or changed: --no-account)."""
    root = tmp_path / "root"
    root.mkdir()
    result = _run(
        [str(RELAY / "setup-relay.sh"), "--domain", "relay.example.net", "--root", str(root),
         "--no-account", "--user", "nobody"]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return root


def _add_site(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SIMEDGE_RELAY_ENV": str(root / "etc/simedge-relay/relay.env")}
    return _run(
        [str(root / "usr/local/sbin/simedge-relay-add-site"), "--no-reload", *args], env=env
    )


def test_sshd_accepts_the_relay_snippet(relay_root: Path, tmp_path: Path) -> None:
    sshd = "/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else _tool("sshd")
    if not Path("/run/sshd").is_dir():
        if os.geteuid() != 0:
            pytest.skip("sshd -t needs /run/sshd, which only root can make")
        Path("/run/sshd").mkdir(mode=0o755)
    host_key = tmp_path / "host_key"
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)])
    main = tmp_path / "sshd_config"
    main.write_text(
        f"Include {relay_root}/etc/ssh/sshd_config.d/*.conf\nHostKey {host_key}\nUsePAM no\n"
    )
    result = _run([sshd, "-t", "-f", str(main)])
    assert result.returncode == 0, result.stderr
    # What the tunnel account gets, as sshd resolves it (-T with a connection spec).
    effective = _run([sshd, "-T", "-f", str(main), "-C", "user=nobody,host=site,addr=192.0.2.1"])
    assert effective.returncode == 0, effective.stderr
    settings = dict(line.split(" ", 1) for line in effective.stdout.splitlines() if " " in line)
    assert settings["allowtcpforwarding"] == "remote"
    assert settings["allowstreamlocalforwarding"] == "no"
    assert settings["gatewayports"] == "no"
    assert settings["maxsessions"] == "0"
    assert settings["permittty"] == "no"
    assert settings["passwordauthentication"] == "no"
    assert settings["authorizedkeysfile"] == f"{relay_root}/etc/simedge-relay/authorized_keys"
    interval, count = int(settings["clientaliveinterval"]), int(settings["clientalivecountmax"])
    assert 0 < (count + 1) * interval <= DEAD_LINK_BOUND
    # Nobody else is touched by the Match block.
    others = _run([sshd, "-T", "-f", str(main), "-C", "user=root,host=h,addr=192.0.2.1"])
    assert "maxsessions 0" not in others.stdout


def test_add_site_narrows_the_key_to_its_port_and_maps_its_paths(relay_root: Path) -> None:
    result = _add_site(relay_root, "--metrics", "198.51.100.7", "shop-7", "20001", SITE_KEY)
    assert result.returncode == 0, result.stderr
    assert "public_url: https://relay.example.net/shop-7" in result.stdout
    keys = (relay_root / "etc/simedge-relay/authorized_keys").read_text().splitlines()
    assert keys == [f'restrict,port-forwarding,permitlisten="20001" {SITE_KEY} simedge-site:shop-7']
    # Again with a new key: replaced, not added.
    other_key = SITE_KEY[:-4] + "AAAA"
    assert _add_site(relay_root, "shop-7", "20001", other_key).returncode == 0
    keys = (relay_root / "etc/simedge-relay/authorized_keys").read_text().splitlines()
    assert keys == [
        f'restrict,port-forwarding,permitlisten="20001" {other_key} simedge-site:shop-7'
    ]
    assert "metrics" not in (relay_root / "etc/simedge-relay/sites/shop-7.caddy").read_text()

    caddy = _tool("caddy")
    shop_8 = _add_site(relay_root, "--metrics", "198.51.100.7/32", "shop-8", "20002", SITE_KEY)
    assert shop_8.returncode == 0, shop_8.stderr
    adapted = _run(
        [caddy, "adapt", "--adapter", "caddyfile", "--config",
         str(relay_root / "etc/caddy/Caddyfile")]
    )  # fmt: skip
    assert adapted.returncode == 0, adapted.stderr
    text = json.dumps(json.loads(adapted.stdout))
    assert '"/shop-7/onlinesim/numbers", "/shop-7/healthz"' in text
    assert '"dial": "127.0.0.1:20001"' in text
    assert '"/shop-8/metrics"' in text
    assert "198.51.100.7/32" in text
    assert '"/shop-7/metrics"' not in text  # published only where --metrics said so


def test_caddy_validates_the_relay_with_sites(relay_root: Path, tmp_path: Path) -> None:
    caddy = _tool("caddy")
    assert _add_site(relay_root, "shop-7", "20001", SITE_KEY).returncode == 0
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}  # fmt: skip
    result = _run(
        [caddy, "validate", "--adapter", "caddyfile", "--config",
         str(relay_root / "etc/caddy/Caddyfile")],
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["Shop_7", "20001", SITE_KEY], 'SITE: expected lower-case letters, digits and inner'),
        (["shop-7", "80", SITE_KEY], 'PORT: expected a number from 1024 to 65535, got "80"'),
        (["shop-7", "20001", "ssh-dss AAAA"], "PUBLIC_KEY: expected one OpenSSH public key line"),
        (["--metrics", "all", "shop-7", "20001", SITE_KEY], "--metrics: expected an address"),
        (["shop-7", "20001"], "expected SITE PORT PUBLIC_KEY"),
    ],
)  # fmt: skip
def test_add_site_names_the_bad_input(relay_root: Path, args: list[str], problem: str) -> None:
    result = _add_site(relay_root, *args)
    assert result.returncode != 0
    assert problem in result.stderr
    assert (relay_root / "etc/simedge-relay/authorized_keys").read_text() == ""


def test_one_port_belongs_to_one_site(relay_root: Path) -> None:
    assert _add_site(relay_root, "shop-7", "20001", SITE_KEY).returncode == 0
    taken = _add_site(relay_root, "shop-8", "20001", SITE_KEY)
    assert taken.returncode != 0
    assert "PORT 20001 is already the site shop-7's" in taken.stderr


def test_tunnel_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze")
    text = TUNNEL_UNIT.read_text().replace("\\\n", " ")
    ssh = Path(shlex.split(_unit_settings_text(text)["ExecStart"][0])[0])
    if not ssh.exists():
        pytest.skip(f"{ssh} is not installed (openssh-client)")
    rendered = tmp_path / TUNNEL_UNIT.name
    rendered.write_text(TUNNEL_UNIT.read_text())
    result = _run([analyze, "verify", str(rendered)])
    complaints = [
        line for line in (result.stdout + result.stderr).splitlines() if TUNNEL_UNIT.name in line
    ]
    assert result.returncode == 0, result.stderr
    assert complaints == []


def test_tunnel_unit_forwards_the_webhook_only_and_notices_a_dead_link() -> None:
    text = TUNNEL_UNIT.read_text().replace("\\\n", " ")
    settings = {key: values[-1] for key, values in _unit_settings_text(text).items()}
    assert settings["Restart"] == "always"
    assert int(settings["RestartSec"]) <= 10
    argv = shlex.split(settings["ExecStart"])
    options = dict(argv[i + 1].split("=", 1) for i, arg in enumerate(argv) if arg == "-o")
    assert options["StrictHostKeyChecking"] == "yes"
    assert options["UpdateHostKeys"] == "no"
    assert options["BatchMode"] == "yes"
    assert options["ExitOnForwardFailure"] == "yes"
    # ssh ends once CountMax keepalives went unanswered, checked every Interval: at most
    # (CountMax + 1) x Interval after the last answer.
    interval, count = int(options["ServerAliveInterval"]), int(options["ServerAliveCountMax"])
    assert (count + 1) * interval <= DEAD_LINK_BOUND
    assert argv.count("-R") == 1
    assert "-L" not in argv
    assert "-D" not in argv
    assert argv[argv.index("-R") + 1] == "${RELAY_LISTEN_PORT}:127.0.0.1:${WEBHOOK_PORT}"
    assert "-F" in argv  # no ssh_config can add a forward or a ProxyCommand
    assert settings["User"] == "simedge-tunnel"
    assert settings["StartLimitIntervalSec"] == "0"


def _unit_settings_text(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if re.match(r"^[A-Z]\w*=", line):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value.strip())
    return settings


def test_relay_playbook_passes_syntax_check() -> None:
    playbook = _tool("ansible-playbook")
    result = _run(
        [playbook, "--syntax-check", "-i", str(ANSIBLE / "inventory.example.ini"),
         str(ANSIBLE / "relay.yml")],
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": "/tmp"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--relay", "relay.example.net"], "--relay needs --relay-port"),
        (["--relay-port", "20001"], "--relay-port, --relay-site and --relay-host-key need --relay"),
    ],
)
def test_install_refuses_half_a_relay(args: list[str], problem: str) -> None:
    result = _run([str(DEPLOY / "install.sh"), *args])
    assert result.returncode == 1
    assert problem in result.stderr


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--relay", "relay example"], "--relay: expected HOST or HOST:PORT"),
        (["--relay", "relay.example.net:0"], "the SSH port must be"),
        (
            ["--relay", "relay.example.net", "--relay-port", "22"],
            "--relay-port: expected the relay",
        ),
        (["--relay", "relay.example.net", "--site", "Shop 7"], "--site: expected"),
    ],
)
def test_tunnel_setup_names_the_bad_input(args: list[str], problem: str) -> None:
    port = [] if "--relay-port" in args else ["--relay-port", "20001"]
    result = _run([str(DEPLOY / "tunnel" / "simedge-tunnel-setup.sh"), *args, *port])
    assert result.returncode == 1
    assert problem in result.stderr
