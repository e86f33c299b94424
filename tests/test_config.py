"""The configuration file: every problem named by file, key and what is wrong."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agent import config
from agent.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deploy" / "config.example.toml"
TOKEN = "t0ken-t0ken-t0ken-t0ken"

MINIMAL = f"""
[onlinesim]
base_url = "http://127.0.0.1:9/api/resellers"
api_key = "k3y"
[webhook]
token = "{TOKEN}"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "simedge.toml"
    path.write_text(text)
    return path


def test_minimal_file_gets_documented_defaults(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, MINIMAL), environ={})
    assert cfg.onlinesim.base_url == "http://127.0.0.1:9/api/resellers"
    assert cfg.onlinesim.api_key == "k3y"
    assert cfg.onlinesim.takeoff_sum == 50
    assert cfg.site.data_dir == Path("/var/lib/simedge")
    assert cfg.modems.baudrate == 115200
    assert (cfg.webhook.host, cfg.webhook.port) == ("0.0.0.0", 8085)
    assert cfg.webhook.token == TOKEN
    assert cfg.log_level == "INFO"
    assert set(cfg.secrets()) == {"k3y", TOKEN}


def test_secrets_stay_out_of_repr(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, MINIMAL), environ={})
    assert "k3y" not in repr(cfg)
    assert TOKEN not in repr(cfg)


def test_environment_overrides_api_key(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, MINIMAL), environ={"SIMEDGE_API_KEY": "from-env"})
    assert cfg.onlinesim.api_key == "from-env"


FILED_SECRETS = MINIMAL.replace('api_key = "k3y"', 'api_key_file = "key"').replace(
    f'token = "{TOKEN}"', 'token_file = "token"'
)


def write_secrets(tmp_path: Path, key_mode: int = 0o600, token_mode: int = 0o600) -> None:
    for name, text, mode in (("key", "filed-key", key_mode), ("token", TOKEN, token_mode)):
        (tmp_path / name).write_text(text + "\n")
        (tmp_path / name).chmod(mode)


def test_secret_files_are_read_relative_to_the_config(tmp_path: Path) -> None:
    write_secrets(tmp_path, key_mode=0o600, token_mode=0o400)
    cfg = config.load(write(tmp_path, FILED_SECRETS), environ={})
    assert cfg.onlinesim.api_key == "filed-key"
    assert cfg.webhook.token == TOKEN


@pytest.mark.parametrize(
    ("key_mode", "token_mode", "where", "bad_mode"),
    [
        (0o644, 0o600, "[onlinesim] api_key_file: {folder}/key", "0644"),
        (0o640, 0o600, "[onlinesim] api_key_file: {folder}/key", "0640"),
        (0o600, 0o666, "[webhook] token_file: {folder}/token", "0666"),
        (0o600, 0o602, "[webhook] token_file: {folder}/token", "0602"),
        (0o600, 0o620, "[webhook] token_file: {folder}/token", "0620"),
    ],
)
def test_a_secret_file_open_to_group_or_others_is_refused_naming_it_and_its_mode(
    tmp_path: Path, key_mode: int, token_mode: int, where: str, bad_mode: str
) -> None:
    write_secrets(tmp_path, key_mode, token_mode)
    path = write(tmp_path, FILED_SECRETS)
    with pytest.raises(ConfigError) as refused:
        config.load(path, environ={})
    assert str(refused.value) == (
        f"{path}: {where.format(folder=tmp_path)}: mode {bad_mode}, must not be readable or "
        "writable by group or others (chmod 600)"
    )


def test_check_config_refuses_a_world_readable_key_file_with_exit_2(tmp_path: Path) -> None:
    write_secrets(tmp_path, key_mode=0o644)
    path = write(tmp_path, FILED_SECRETS)
    result = run_cli("run", "--check-config", "--config", str(path))
    assert result.returncode == 2
    assert result.stderr == (
        f"simedge: {path}: [onlinesim] api_key_file: {tmp_path}/key: mode 0644, must not be "
        "readable or writable by group or others (chmod 600)\n"
    )
    assert "filed-key" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t + "\n[modems]\nbaud = 9600\n",
            "[modems] baud: unknown key (known: ports, baudrate, health_interval, "
            "command_timeout, power_cycle_command, ussd)",
        ),
        (
            lambda t: t + "\n[modem]\nports = []\n",
            "[modem]: unknown section "
            "(known: onlinesim, site, modems, sims, store, webhook, calls, control, logging)",
        ),
        (
            lambda t: t + "\n[sims]\nprobe_sms_per_day = -1\n",
            "[sims] probe_sms_per_day: expected 0 to 1000",
        ),
        (
            lambda t: t + '\n[calls]\nforward = "yes"\n',
            "[calls] forward: expected true or false, got a string",
        ),
        (
            lambda t: t + '\n[calls]\nforward_text = "Call from {number}"\n',
            "[calls] forward_text: only {caller} and {time} may be filled in ('number')",
        ),
        (
            lambda t: t + '\n[modems]\nbaudrate = "fast"\n',
            "[modems] baudrate: expected an integer, got a string",
        ),
        (
            lambda t: t + "\n[modems]\nbaudrate = 1234\n",
            "[modems] baudrate: expected one of (9600, 19200, 38400, 57600, 115200, 230400, "
            "460800, 921600)",
        ),
        (
            lambda t: t + '\n[modems]\nports = ["/dev/ttyUSB*", 3]\n',
            "[modems] ports: every item must be a string, got an integer",
        ),
        (
            lambda t: t.replace('base_url = "http://127.0.0.1:9/api/resellers"\n', ""),
            "[onlinesim] base_url: required: OnlineSim API base URL, as partner support gives it",
        ),
        (
            lambda t: t.replace('"http://127.0.0.1:9/api/resellers"', '"onlinesim.ru"'),
            '[onlinesim] base_url: expected an http:// or https:// URL, got "onlinesim.ru"',
        ),
        (
            lambda t: t.replace('api_key = "k3y"', ""),
            "[onlinesim] api_key: required: set api_key, api_key_file or SIMEDGE_API_KEY",
        ),
        (
            lambda t: t.replace('api_key = "k3y"', 'api_key = "k3y"\napi_key_file = "f"'),
            "[onlinesim] api_key: give either api_key or api_key_file, not both",
        ),
        (lambda t: t + "\n[webhook]\n", "not valid TOML: Cannot declare ('webhook',) twice"),
        (
            lambda t: t.replace(f'token = "{TOKEN}"', 'token = "short"'),
            "[webhook] token: expected a secret of at least 16 characters",
        ),
        (
            lambda t: t.replace(f'token = "{TOKEN}"', f'token = "{TOKEN}"\nlisten = "8080"'),
            '[webhook] listen: expected "host:port" with a port from 1 to 65535, got "8080"',
        ),
        (
            lambda t: t.replace("[webhook]", "[webhook]\npublic_url = 'relay.example/site-a'"),
            '[webhook] public_url: expected an http:// or https:// URL (or "" for none), got',
        ),
        (
            lambda t: t.replace(
                "[webhook]", "[webhook]\npublic_url = 'https://r.example/a?token=x'"
            ),
            "[webhook] public_url: expected a URL without ?query or #fragment (the token is added)",
        ),
        (
            lambda t: t.replace("[webhook]", "[webhook]\npublic_url = 'https://[2001:db8::1/a'"),
            '[webhook] public_url: expected an http:// or https:// URL (or "" for none), got',
        ),
        (
            lambda t: t.replace("[webhook]", "[webhook]\npublic_url = 'https://r.example:99999/a'"),
            '[webhook] public_url: expected an http:// or https:// URL (or "" for none), got',
        ),
        (
            lambda t: t.replace("http://127.0.0.1:9/api", "http://127.0.0.1:port/api"),
            "[onlinesim] base_url: expected an http:// or https:// URL, got",
        ),
        (
            lambda t: t.replace("[webhook]", "[webhook]\npath = 'hook'"),
            '[webhook] path: expected a path starting with "/", got "hook"',
        ),
        (
            lambda t: t.replace('api_key = "k3y"', 'api_key = "k3y"\ntakeoff_sum = true'),
            "[onlinesim] takeoff_sum: expected an integer or a number, got a boolean",
        ),
        (
            lambda t: t + '\n[logging]\nlevel = "loud"\n',
            "[logging] level: expected one of TRACE, DEBUG, INFO, WARNING, ERROR",
        ),
        (lambda t: "site = 3\n" + t, "[site]: expected a table, got an integer"),
        (
            lambda t: t.replace("[webhook]", "[onlinesim.x]\n[webhook]"),
            "[onlinesim] x: unknown key",
        ),
        (
            lambda t: t + '\n[[store.block]]\nname = "codes"\n',
            '[store] block: rule "codes": give a sender or a text pattern',
        ),
        (
            lambda t: t + '\n[[store.block]]\nname = "codes"\ntext = "(unclosed"\n',
            '[store] block: rule "codes": text is not a regular expression',
        ),
        (
            lambda t: t + '\n[[store.block]]\nname = "all"\ntext = ".*"\n',
            '[store] block: rule "all": text matches an empty value, so it matches every SMS',
        ),
        (
            lambda t: t + '\n[[store.block]]\nname = "big"\nsender = "(?:a{100}){100}"\n',
            '[store] block: rule "big": sender has counted repetitions that multiply to 10,000',
        ),
        (
            lambda t: (
                t + "".join(f'\n[[store.block]]\nname = "r{n}"\ntext = "c{n}"\n' for n in range(33))
            ),
            "[store] block: 33 rules (at most 32",
        ),
        (
            lambda t: t + '\n[[store.block]]\nname = "long"\ntext = "' + "x" * 300 + '"\n',
            '[store] block: rule "long": text is 300 characters long (at most 256)',
        ),
        (
            lambda t: t.replace('api_key = "k3y"', 'api_key = "k3y"\ntakeoff_action = "drop"'),
            '[onlinesim] takeoff_action: expected "offline" or "keep"',
        ),
        (
            lambda t: t.replace('api_key = "k3y"', 'api_key = "k3y"\nnumbers_heartbeat = 600'),
            "[onlinesim] numbers_heartbeat: expected more than 0 and at most 300",
        ),
    ],
)
def test_each_problem_names_file_key_and_problem(tmp_path: Path, edit, message: str) -> None:
    path = write(tmp_path, edit(MINIMAL))
    with pytest.raises(ConfigError) as caught:
        config.load(path, environ={})
    assert str(caught.value).startswith(f"{path}: {message}")


KEEPALIVE = '\n[sims.keepalive."25001"]\ndays = 30\n'


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (
            'ussd = "*321#"\nsms_to = "+79161234567"\nsms_text = "hi"',
            '[sims] keepalive: "25001": expected exactly one action, ussd = "*...#" or'
            ' sms_to = "+..." with sms_text',
        ),
        ("", '[sims] keepalive: "25001": expected exactly one action'),
        (
            'ussd = "*321#"\nsms_text = "hi"',
            '[sims] keepalive: "25001": sms_text goes with sms_to, not with ussd',
        ),
        (
            'sms_to = "+79161234567"\nsms_txt = "hi"',
            '[sims] keepalive: "25001": unknown key sms_txt (known: days, ussd, sms_to, sms_text)',
        ),
        (
            'sms_to = "89161234567"\nsms_text = "hi"',
            "[sims] keepalive: \"25001\": sms_to: '89161234567': (0) Missing or invalid default"
            " region.; give it as +<country><number>",
        ),
        (
            'sms_to = "+7916"\nsms_text = "hi"',
            "[sims] keepalive: \"25001\": sms_to: '+7916' is not a possible phone number",
        ),
        (
            "sms_to = 79161234567\nsms_text = 'hi'",
            '[sims] keepalive: "25001": sms_to: expected a string "+<country><number>", got',
        ),
        (
            'sms_to = "+79161234567"',
            '[sims] keepalive: "25001": sms_text: expected the text to send, one SMS',
        ),
        (
            f'sms_to = "+79161234567"\nsms_text = "{"x" * 161}"',
            '[sims] keepalive: "25001": sms_text: text needs 161 septets; one SMS holds 160'
            " (the keep-alive sends one SMS, not 2 parts)",
        ),
        (
            f'sms_to = "+79161234567"\nsms_text = "{"ж" * 71}"',
            '[sims] keepalive: "25001": sms_text: text needs 142 octets in UCS2; one SMS holds'
            " 140 (the keep-alive sends one SMS, not 2 parts)",
        ),
    ],
)
def test_a_keepalive_policy_needs_one_action_a_possible_number_and_one_sms_of_text(
    tmp_path: Path, policy: str, message: str
) -> None:
    path = write(tmp_path, MINIMAL + KEEPALIVE + policy + "\n")
    with pytest.raises(ConfigError) as caught:
        config.load(path, environ={})
    assert str(caught.value).startswith(f"{path}: {message}")


def test_a_keepalive_sms_policy_is_read_with_its_number_in_e164(tmp_path: Path) -> None:
    sms = 'sms_to = "+7 916 123-45-67"\nsms_text = "Привет"\n'
    text = MINIMAL + KEEPALIVE + sms + '[sims.keepalive."25099"]\ndays = 60\nussd = " *321# "\n'
    keepalive = config.load(write(tmp_path, text), environ={}).sims.keepalive
    assert keepalive == {
        "25001": config.KeepaliveConfig(30.0, sms_to="+79161234567", sms_text="Привет"),
        "25099": config.KeepaliveConfig(60.0, ussd="*321#"),
    }
    # A text of exactly one SMS passes: 160 GSM 7-bit characters, or 70 outside it.
    for fits in ("x" * 160, "ж" * 70):
        policy = f'sms_to = "+79161234567"\nsms_text = "{fits}"\n'
        loaded = config.load(write(tmp_path, MINIMAL + KEEPALIVE + policy), environ={})
        assert loaded.sims.keepalive["25001"].sms_text == fits


def test_public_url_gives_the_webhook_url_to_paste_without_the_secret(tmp_path: Path) -> None:
    text = MINIMAL.replace("[webhook]", "[webhook]\npublic_url = 'https://relay.example/site-a/'")
    webhook = config.load(write(tmp_path, text), environ={}).webhook
    assert webhook.public_url == "https://relay.example/site-a"
    assert webhook.public_webhook_url == (
        "https://relay.example/site-a/onlinesim/numbers?token=TOKEN"
    )
    assert config.load(write(tmp_path, MINIMAL), environ={}).webhook.public_webhook_url == ""


def test_block_rules_are_read(tmp_path: Path) -> None:
    text = MINIMAL + (
        '\n[[store.block]]\nname = "codes"\nsender = "^MTS$"\ntext = "(?i)password"\n'
        '\n[[store.block]]\nname = "bank"\nsender = "BANK"\n'
    )
    cfg = config.load(write(tmp_path, text), environ={})
    assert [(r.name, r.sender, r.text) for r in cfg.store.block] == [
        ("codes", "^MTS$", "(?i)password"),
        ("bank", "BANK", None),
    ]


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read: No such file"):
        config.load(tmp_path / "nope.toml", environ={})


def test_example_documents_exactly_the_schema() -> None:
    document = tomllib.loads(EXAMPLE.read_text())
    assert set(document) == set(config.SCHEMA)
    for section, keys in config.SCHEMA.items():
        assert set(document[section]) == set(keys), section
    # And the example is itself valid, apart from secrets it points to in /etc.
    config._check(document, str(EXAMPLE))


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )


def test_check_config_accepts_a_good_file(tmp_path: Path) -> None:
    result = run_cli("run", "--check-config", "--config", str(write(tmp_path, MINIMAL)))
    assert result.returncode == 0, result.stderr
    assert "configuration is valid" in result.stdout
    assert "k3y" not in result.stdout + result.stderr


def test_check_config_rejects_with_one_line_and_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "\n[modems]\nbaud = 9600\n")
    result = run_cli("run", "--check-config", "--config", str(path))
    assert result.returncode == 2
    expected = (
        f"simedge: {path}: [modems] baud: unknown key (known: ports, baudrate, "
        "health_interval, command_timeout, power_cycle_command, ussd)\n"
    )
    assert result.stderr == expected


def test_check_config_rejects_a_malformed_proxy_variable_naming_it(tmp_path: Path) -> None:
    # The agent reads the proxy variables once at its start; --check-config tells of them.
    env = {name: value for name, value in os.environ.items() if "proxy" not in name.lower()}
    env["ALL_PROXY"] = "http://:3128"
    result = run_cli("run", "--check-config", "--config", str(write(tmp_path, MINIMAL)), env=env)
    assert result.returncode == 2
    assert result.stderr == "simedge: environment: ALL_PROXY: 'http://:3128': no host\n"


def test_readme_documents_every_key() -> None:
    readme = (ROOT / "README.md").read_text()
    for section, keys in config.SCHEMA.items():
        assert f"`[{section}]`" in readme, section
        for key in keys:
            assert f"`{key}`" in readme, f"[{section}] {key} missing from the README"


HOSTILE_URLS = [
    "https://partner.example/api?a=1&b=2",
    "https://partner.example/api#frag",
    "https://partner.example/a\\b\\\\c\\n",
    "https://partner.example/\"quoted\"/'single'",
    "https://partner.example/$(touch x)`id`\x7f\u00fc\u2028",
]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_set_string_writes_any_value_verbatim_and_keeps_the_rest(tmp_path: Path, url: str) -> None:
    path = tmp_path / "simedge.toml"
    path.write_text(EXAMPLE.read_text())
    path.chmod(0o640)
    config.set_string(path, "onlinesim.base_url", url)
    assert tomllib.loads(path.read_text())["onlinesim"]["base_url"] == url
    before, after = EXAMPLE.read_text().split("\n"), path.read_text().split("\n")
    assert [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b] == [6]
    assert path.stat().st_mode & 0o777 == 0o640


def test_set_string_adds_a_missing_key_and_a_missing_section(tmp_path: Path) -> None:
    path = write(tmp_path, '# base_url = "commented out"\n[webhook]\ntoken = "x"')
    config.set_string(path, "onlinesim.base_url", "https://a.example/")
    config.set_string(path, "webhook.path", "/hook#1")
    document = tomllib.loads(path.read_text())
    assert document == {
        "onlinesim": {"base_url": "https://a.example/"},
        "webhook": {"token": "x", "path": "/hook#1"},
    }
    assert path.read_text().startswith('# base_url = "commented out"\n')


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("onlinesim.base_url", "ftp://x", 'expected an http:// or https:// URL, got "ftp://x"'),
        ("onlinesim.nope", "x", "onlinesim.nope: unknown key (expected SECTION.KEY"),
        ("modems.baudrate", "9600", "[modems] baudrate: only string keys can be set this way"),
    ],
)
def test_set_string_refuses_what_the_schema_refuses_and_leaves_the_file(
    tmp_path: Path, key: str, value: str, problem: str
) -> None:
    path = write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError, match=re.escape(problem)):
        config.set_string(path, key, value)
    assert path.read_text() == MINIMAL


def test_set_string_refuses_a_layout_that_would_hide_the_key(tmp_path: Path) -> None:
    # The key's line sits inside a multi-line string: replacing it would not set the key.
    text = '[onlinesim]\napi_key = """\nbase_url = "x"\n"""\nbase_url = "https://a.example"\n'
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="the file's layout hides the key"):
        config.set_string(path, "onlinesim.base_url", "https://b.example")
    assert path.read_text() == text


def test_config_set_reads_the_value_from_stdin(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    url = HOSTILE_URLS[4]
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "config", "set", "onlinesim.base_url",
         "--config", str(path)],
        input=url + "\n", capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert config.load(path, environ={}).onlinesim.base_url == url
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "config", "set", "onlinesim.base_url",
         "--config", str(path)],
        input="https://a.example\nb", capture_output=True, text=True, cwd=ROOT, timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == (f"simedge: {path}: onlinesim.base_url: the value holds a line break\n")


def test_the_site_name_defaults_to_the_hostname_and_is_checked(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, MINIMAL), environ={})
    assert cfg.site.name == socket.gethostname().split(".")[0]
    named = config.load(write(tmp_path, MINIMAL + '\n[site]\nname = "shop-7"\n'), environ={})
    assert named.site.name == "shop-7"
    bad = write(tmp_path, MINIMAL + '\n[site]\nname = "shop 7{x}"\n')
    with pytest.raises(ConfigError, match=r'\[site\] name: expected .* got "shop 7\{x\}"'):
        config.load(bad, environ={})


def test_the_site_name_is_bounded(tmp_path: Path) -> None:
    longest = "s" * 63
    named = config.load(write(tmp_path, MINIMAL + f'\n[site]\nname = "{longest}"\n'), environ={})
    assert named.site.name == longest
    with pytest.raises(ConfigError, match=r"\[site\] name: expected up to 63"):
        config.load(write(tmp_path, MINIMAL + f'\n[site]\nname = "{longest}s"\n'), environ={})


def test_local_paths_are_read_without_the_secret_files(tmp_path: Path) -> None:
    # The dashboard login may read simedge.toml but not the API key or token files.
    path = tmp_path / "simedge.toml"
    path.write_text(
        '[onlinesim]\nbase_url = "http://127.0.0.1:9/api"\n'
        f'api_key_file = "{tmp_path / "unreadable" / "api_key"}"\n'
        f'[webhook]\ntoken_file = "{tmp_path / "unreadable" / "token"}"\n'
        '[site]\ndata_dir = "data"\n[control]\nsocket = "run/control.sock"\n'
    )
    with pytest.raises(ConfigError, match="api_key"):
        config.load(path, environ={})
    assert config.load_local_paths(path) == (
        tmp_path / "run" / "control.sock",
        tmp_path / "data" / "simedge.db",
    )


def test_local_paths_still_check_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "simedge.toml"
    path.write_text('[onlinesim]\nbase_url = "http://127.0.0.1:9/api"\n[control]\nsocket = 7\n')
    with pytest.raises(ConfigError, match=r"\[control\] socket"):
        config.load_local_paths(path)
