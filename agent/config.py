"""The configuration: one TOML file, checked whole at start.

Every key is declared once in ``SCHEMA`` (type, default, check, one line of help); the
loader rejects unknown keys, wrong types and missing required values with one message that
names the file, the key and the problem, e.g.::

    /etc/simedge/simedge.toml: [webhook] listen: expected "host:port", got "8080"

``deploy/config.example.toml`` documents every key; a test checks that it and ``SCHEMA``
agree, so neither can drift. ``SIMEDGE_API_KEY`` in the environment overrides the key.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

from agent.errors import ConfigError
from agent.usbpath import label_key_problem

API_KEY_ENV = "SIMEDGE_API_KEY"
DATABASE_NAME = "simedge.db"  # in [site] data_dir


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

Check = Callable[[Any], str | None]  # returns a problem, or None when the value is fine


@dataclass(frozen=True)
class Key:
    """One configuration key: its TOML type, default (or REQUIRED) and an extra check."""

    type: type | tuple[type, ...]
    default: Any
    help: str
    check: Check | None = None
    item_type: type | None = None  # for lists and tables: the type of each item / value


def _listen_problem(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return f'expected "host:port" with a port from 1 to 65535, got "{value}"'
    return None


def _http_url(value: str) -> SplitResult | None:
    """``value`` split, when it is an http(s) URL with a host and a port that can be."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  # raises ValueError for a port out of range or not a number
    except ValueError:  # also "https://[2001:db8::1/": a bracket left open
        return None
    return parts if parts.scheme in ("http", "https") and parts.hostname else None


def _url_problem(value: str) -> str | None:
    if _http_url(value) is None:
        return f'expected an http:// or https:// URL, got "{value}"'
    return None


def _public_url_problem(value: str) -> str | None:
    """Empty (no public address known), or the https:// base OnlineSim reaches this site by."""
    if not value:
        return None
    parts = _http_url(value)
    if parts is None:
        return f'expected an http:// or https:// URL (or "" for none), got "{value}"'
    if parts.query or parts.fragment:
        return f'expected a URL without ?query or #fragment (the token is added), got "{value}"'
    return None


def _path_problem(value: str) -> str | None:
    return None if value.startswith("/") else f'expected a path starting with "/", got "{value}"'


def _positive(value: float) -> str | None:
    return None if value > 0 else f"expected a number above 0, got {value}"


def _not_negative(value: float) -> str | None:
    return None if value >= 0 else f"expected 0 or more, got {value}"


def _token_problem(value: str) -> str | None:
    if len(value) < 16:
        return "expected a secret of at least 16 characters (it guards an internet-facing URL)"
    return None


def _recipe_problem(network: str, recipe: object, third: str) -> str | None:
    """What is wrong with one USSD recipe table of ``[modems.ussd]`` or ``[sims.balance]``:
    ``code``, ``pattern`` and ``third`` (region or currency), all strings."""
    if problem := _network_problem(network):
        return problem
    if not isinstance(recipe, dict) or not isinstance(recipe.get("code"), str):
        return f'"{network}": expected a table with code = "*...#"'
    unknown = set(recipe) - {"code", "pattern", third}
    if unknown:
        return f'"{network}": unknown key {sorted(unknown)[0]} (known: code, pattern, {third})'
    if not all(isinstance(value, str) for value in recipe.values()):
        return f'"{network}": code, pattern and {third} must be strings'
    return None


def _ussd_problem(recipes: dict[str, Any]) -> str | None:
    """Each entry: "MCCMNC" = {code = "*100#", pattern = "regex with a number", region = "RU"}."""
    for network, recipe in recipes.items():
        if problem := _recipe_problem(network, recipe, "region"):
            return problem
        try:
            re.compile(recipe.get("pattern", ""))
        except re.error as exc:
            return f'"{network}": pattern is not a regular expression: {exc}'
    return None


def _network_problem(network: str) -> str | None:
    if not (network.isdigit() and len(network) in (5, 6)):
        return f'"{network}": expected the network as MCC+MNC, 5 or 6 digits'
    return None


def _balance_problem(recipes: dict[str, Any]) -> str | None:
    """Each entry: "MCCMNC" = {code = "*100#", pattern = "...(?P<amount>...)", currency}."""
    for network, recipe in recipes.items():
        if problem := _recipe_problem(network, recipe, "currency"):
            return problem
        if recipe.get("pattern"):
            # Loaded here only when a pattern is configured: it brings the regex package.
            from agent.modem.balance import balance_pattern_problem

            if problem := balance_pattern_problem(recipe["pattern"]):
                return f'"{network}": pattern {problem}'
    return None


KEEPALIVE_KEYS = ("days", "ussd", "sms_to", "sms_text")


def _keepalive_problem(policies: dict[str, Any]) -> str | None:
    """Each entry: "MCCMNC" = {days = 90, ussd = "*100#"} or {days, sms_to, sms_text}."""
    for network, policy in policies.items():
        if problem := _network_problem(network):
            return problem
        if not isinstance(policy, dict):
            return f'"{network}": expected a table with days and ussd, or days, sms_to and sms_text'
        unknown = set(policy) - set(KEEPALIVE_KEYS)
        if unknown:
            known = ", ".join(KEEPALIVE_KEYS)
            return f'"{network}": unknown key {sorted(unknown)[0]} (known: {known})'
        days = policy.get("days")
        if isinstance(days, bool) or not isinstance(days, int | float) or not 1 <= days <= 3650:
            return f'"{network}": days must be a number from 1 to 3650, got {days!r}'
        if ("ussd" in policy) == ("sms_to" in policy):
            return (
                f'"{network}": expected exactly one action, ussd = "*...#" or sms_to = "+..."'
                " with sms_text"
            )
        if "ussd" in policy:
            if "sms_text" in policy:
                return f'"{network}": sms_text goes with sms_to, not with ussd'
            if not isinstance(policy["ussd"], str) or not policy["ussd"].strip():
                return f'"{network}": expected ussd = "*...#", the code to dial as the keep-alive'
        elif problem := _keepalive_sms_problem(policy.get("sms_to"), policy.get("sms_text")):
            return f'"{network}": {problem}'
    return None


def _keepalive_sms_problem(sms_to: object, sms_text: object) -> str | None:
    """The number must be a possible international one; the text must fit one SMS."""
    # Loaded here only when an SMS action is configured: it brings phonenumbers.
    from agent.modem.own_number import international_number
    from agent.protocol.pdu import encode_submit

    if not isinstance(sms_to, str):
        return f'sms_to: expected a string "+<country><number>", got {sms_to!r}'
    try:
        recipient = international_number(sms_to.strip())
    except ValueError as exc:
        return f"sms_to: {exc}"
    if not isinstance(sms_text, str) or not sms_text.strip():
        return "sms_text: expected the text to send, one SMS (160 GSM 7-bit or 70 UCS2 characters)"
    try:
        encode_submit(sms_text, recipient)
    except ValueError as exc:
        return f"sms_text: {exc} (the keep-alive sends one SMS, not {_sms_parts(sms_text)} parts)"
    return None


def _sms_parts(text: str) -> int:
    """How many concatenated parts ``text`` would need: 153 septets or 67 UCS2 units each."""
    from agent.protocol import gsm7

    units = gsm7.encode_chars(text)
    if units is not None:
        return -(-len(b"".join(units)) // 153)
    return -(-len(text.encode("utf-16-be", "surrogatepass")) // 134)


def _keepalive_config(policy: dict[str, Any]) -> KeepaliveConfig:
    """A policy _keepalive_problem passed, its number in E.164."""
    if "ussd" in policy:
        return KeepaliveConfig(float(policy["days"]), ussd=policy["ussd"].strip())
    from agent.modem.own_number import international_number

    return KeepaliveConfig(
        float(policy["days"]),
        sms_to=international_number(policy["sms_to"].strip()),
        sms_text=policy["sms_text"],
    )


def _slot_labels_problem(labels: dict[str, str]) -> str | None:
    """Each key names a slot as hardware.md documents: by-path name or short slot."""
    for key in labels:
        if problem := label_key_problem(key):
            return problem
    return None


# A site's name is a Prometheus label value, a file name of the fleet's target files and
# an Ansible inventory name: one short word of letters, digits, dots, dashes, underscores.
SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def _site_name_problem(name: str) -> str | None:
    if not name or SITE_NAME.fullmatch(name):
        return None
    return (
        f'expected up to 63 letters, digits, ".", "-" or "_" starting with a letter or digit '
        f'(or "" for the hostname), got "{name}"'
    )


def site_name_or_hostname(name: str, source: str = "") -> str:
    """The configured name, else this machine's hostname (its first label: a Pi named
    "shop-7.lan" is site "shop-7"); a hostname that is no valid site name is refused."""
    if name:
        return name
    host = socket.gethostname().split(".")[0]
    if not SITE_NAME.fullmatch(host):
        raise ConfigError(
            source, "[site] name", f'the hostname "{host}" is no site name: set [site] name'
        )
    return host


def _power_cycle_problem(command: str) -> str | None:
    try:
        command.format(device="", slot="", usb_path="")
    except (KeyError, IndexError, ValueError) as exc:
        return f"expected only the placeholders {{device}}, {{slot}}, {{usb_path}}: {exc}"
    return None


def _block_problem(rules: list[dict[str, Any]]) -> str | None:
    """Each rule: a name and a sender and/or text pattern, checked by the very code the
    agent matches with (agent.store.blocking), so a rule that loads is a rule that runs."""
    if not rules:
        return None
    # Imported here: the store package loads peewee, which a config without rules skips.
    from agent.errors import BlockRuleError
    from agent.store.blocking import CONFIGURED, MAX_RULES, BlockRule

    if len(rules) > MAX_RULES:
        return f"{len(rules)} rules (at most {MAX_RULES}: each costs time on every SMS)"
    names: set[str] = set()
    for number, rule in enumerate(rules, 1):
        name = rule.get("name")
        if not isinstance(name, str) or not name:
            return f"rule {number}: expected a name"
        if name in names:
            return f'rule "{name}": the name is used twice'
        names.add(name)
        unknown = set(rule) - {"name", "sender", "text"}
        if unknown:
            return f'rule "{name}": unknown key {sorted(unknown)[0]} (known: name, sender, text)'
        try:
            BlockRule(name, rule.get("sender"), rule.get("text"), source=CONFIGURED)
        except BlockRuleError as exc:
            where = f"{exc.part} " if exc.part else ""
            return f'rule "{name}": {where}{exc.problem}'
    return None


def _forward_text_problem(template: str) -> str | None:
    if not template.strip():
        return "expected a text"
    if len(template) > 160:
        return f"expected at most 160 characters, got {len(template)}"
    try:
        template.format(caller="+79161234567", time="2026-01-01T00:00:00+00:00")
    except (KeyError, IndexError, ValueError) as exc:
        return f"only {{caller}} and {{time}} may be filled in ({exc})"
    return None


def _level_problem(value: str) -> str | None:
    levels = ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR")
    return None if value.upper() in levels else f"expected one of {', '.join(levels)}"


BAUDRATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)

SCHEMA: dict[str, dict[str, Key]] = {
    "onlinesim": {
        "base_url": Key(
            str, REQUIRED, "OnlineSim API base URL, as partner support gives it", _url_problem
        ),
        "api_key": Key(str, "", "API key (or use api_key_file, or SIMEDGE_API_KEY)"),
        "api_key_file": Key(
            str, "", "file holding the API key (mode 0600 or 0400: no group or other access)"
        ),
        "takeoff_sum": Key(
            (int, float), 50, "RUB earned before a SIM may be swapped; 0 disables", _not_negative
        ),
        "timeout": Key(
            (int, float), 10, "seconds before an API call is abandoned and retried", _positive
        ),
        "takeoff_interval": Key(
            (int, float), 600, "seconds between takeOffNumbers checks", _positive
        ),
        "takeoff_action": Key(
            str,
            "keep",
            'a number listed for take-off: "offline" leaves the online list at once, "keep"'
            " stays until the SIM is swapped",
            lambda v: None if v in ("offline", "keep") else 'expected "offline" or "keep"',
        ),
        "numbers_debounce": Key(
            (int, float),
            5,
            "seconds: a flapping port sends at most one numbers list per window",
            _positive,
        ),
        "numbers_heartbeat": Key(
            (int, float),
            240,
            "seconds between unchanged numbers lists (proof the site is up; at most 300)",
            lambda v: None if 0 < v <= 300 else "expected more than 0 and at most 300",
        ),
        "max_in_flight": Key(
            int,
            8,
            "addMessage requests at once (different SIMs; one SIM's SMS go in order)",
            lambda v: None if 1 <= v <= 64 else "expected 1 to 64",
        ),
    },
    "site": {
        "name": Key(
            str,
            "",
            "the site's name on /metrics and in the fleet's alerts; empty: the hostname",
            _site_name_problem,
        ),
        "data_dir": Key(str, "/var/lib/simedge", "folder of the SQLite store"),
        "slot_labels": Key(
            dict,
            {},
            "USB path -> label painted on the hub",
            _slot_labels_problem,
            item_type=str,
        ),
    },
    "modems": {
        "ports": Key(list, [], "extra globs of serial devices to watch", item_type=str),
        "baudrate": Key(
            int,
            115200,
            "serial speed for every modem port",
            lambda v: None if v in BAUDRATES else f"expected one of {BAUDRATES}",
        ),
        "health_interval": Key(
            (int, float), 30, "seconds between signal/registration/SIM checks", _positive
        ),
        "command_timeout": Key(
            (int, float), 5, "seconds an AT command may take before it counts as a hang", _positive
        ),
        "power_cycle_command": Key(
            str,
            "",
            "shell command that power-cycles one modem ({device}, {slot}, {usb_path}); empty: none",
            _power_cycle_problem,
        ),
        "ussd": Key(
            dict,
            {},
            'own-number USSD per network: "MCCMNC" = {code, pattern, region}',
            _ussd_problem,
            item_type=dict,
        ),
    },
    "sims": {
        "balance_interval": Key(
            (int, float),
            86400,
            "seconds between balance questions to each SIM (each at its own time of day)",
            lambda v: None if v >= 600 else "expected at least 600 seconds",
        ),
        "balance_fresh": Key(
            (int, float),
            172800,
            "seconds a balance is told to OnlineSim (sendNumbersOnline) after it was read",
            _positive,
        ),
        "low_balance": Key(
            (int, float),
            0,
            "a balance below this is shown as low and alerted on (in the SIM's currency)",
        ),
        "balance": Key(
            dict,
            {},
            'balance USSD per network: "MCCMNC" = {code, pattern, currency}',
            _balance_problem,
            item_type=dict,
        ),
        "keepalive": Key(
            dict,
            {},
            'keep prepaid SIMs alive per network: "MCCMNC" = {days, ussd} or'
            " {days, sms_to, sms_text}; none: off",
            _keepalive_problem,
            item_type=dict,
        ),
        "probe_sms_per_day": Key(
            int,
            0,
            "SMS a day the site may spend finding unknown numbers by texting another SIM of"
            " the site (one attempt per SIM a day); 0: never",
            lambda v: None if 0 <= v <= 1000 else "expected 0 to 1000",
        ),
        "probe_timeout": Key(
            (int, float),
            600,
            "seconds a number probe's SMS may take to arrive before it counts as failed",
            lambda v: None if 10 <= v <= 86400 else "expected 10 to 86400",
        ),
    },
    "store": {
        "retention_days": Key(
            (int, float), 30, "days a forwarded SMS is kept before it is pruned", _positive
        ),
        "multipart_timeout": Key(
            (int, float),
            600,
            "seconds to wait for the missing parts of a long SMS before forwarding what came",
            _positive,
        ),
        "block": Key(
            list,
            [],
            "confidential SMS kept but never uploaded: [[store.block]] name, sender, text",
            _block_problem,
            item_type=dict,
        ),
    },
    "webhook": {
        "listen": Key(str, "0.0.0.0:8085", "address OnlineSim calls", _listen_problem),
        "path": Key(str, "/onlinesim/numbers", "path of the webhook", _path_problem),
        "token": Key(str, "", "secret in the webhook URL (or use token_file)"),
        "token_file": Key(
            str, "", "file holding the webhook token (mode 0600 or 0400, as api_key_file)"
        ),
        "public_url": Key(
            str,
            "",
            "the URL OnlineSim reaches this site by (router port forward or relay), without"
            " the webhook path; empty: not known, not checked",
            _public_url_problem,
        ),
    },
    "calls": {
        "forward": Key(
            bool,
            False,
            "forward each incoming call's caller ID to OnlineSim as a message from the caller",
        ),
        "forward_text": Key(
            str,
            "Call from {caller}",
            "text of that message: {caller} (E.164 as the network gave it), {time} (UTC)",
            _forward_text_problem,
        ),
    },
    "control": {
        "socket": Key(str, "/run/simedge/control.sock", "unix socket the dashboard talks to"),
    },
    "logging": {
        "level": Key(str, "INFO", "TRACE, DEBUG, INFO, WARNING or ERROR", _level_problem),
    },
}


@dataclass(frozen=True)
class OnlineSimConfig:
    base_url: str
    api_key: str = field(repr=False)
    takeoff_sum: float = 50
    timeout: float = 10
    takeoff_interval: float = 600
    takeoff_action: str = "keep"
    numbers_debounce: float = 5
    numbers_heartbeat: float = 240
    max_in_flight: int = 8


@dataclass(frozen=True)
class BlockRuleConfig:
    name: str
    sender: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class StoreConfig:
    retention_days: float = 30
    multipart_timeout: float = 600
    block: tuple[BlockRuleConfig, ...] = ()


@dataclass(frozen=True)
class SiteConfig:
    name: str
    data_dir: Path
    slot_labels: Mapping[str, str]


@dataclass(frozen=True)
class UssdRecipeConfig:
    """How to ask one network for the SIM's own number: the USSD code, a regular
    expression whose first group (or whole match) is the number, and the number's region
    (ISO 3166 code) for numbers answered without a country code."""

    code: str
    pattern: str = ""
    region: str = ""


@dataclass(frozen=True)
class ModemsConfig:
    ports: tuple[str, ...]
    baudrate: int
    health_interval: float = 30
    command_timeout: float = 5
    power_cycle_command: str = ""
    ussd: Mapping[str, UssdRecipeConfig] = field(default_factory=dict)


@dataclass(frozen=True)
class BalanceRecipeConfig:
    """How to ask one network for the balance: the USSD code, a regular expression with
    a group ``(?P<amount>...)`` (and optionally ``(?P<currency>...)``), and the currency
    (ISO 4217) when the answer does not say it."""

    code: str
    pattern: str = ""
    currency: str = ""


@dataclass(frozen=True)
class KeepaliveConfig:
    """Keep a network's prepaid SIMs alive before ``days`` pass without a chargeable
    event: dial ``ussd``, or send ``sms_text`` to ``sms_to`` (E.164); exactly one."""

    days: float
    ussd: str | None = None
    sms_to: str | None = None
    sms_text: str = ""


@dataclass(frozen=True)
class SimsConfig:
    balance_interval: float = 86400
    balance_fresh: float = 172800
    low_balance: float = 0
    balance: Mapping[str, BalanceRecipeConfig] = field(default_factory=dict)
    keepalive: Mapping[str, KeepaliveConfig] = field(default_factory=dict)
    probe_sms_per_day: int = 0
    probe_timeout: float = 600

    @property
    def keepalive_days(self) -> dict[str, float]:
        """MCC+MNC -> days, for the networks a keep-alive policy covers."""
        return {network: policy.days for network, policy in self.keepalive.items()}


@dataclass(frozen=True)
class CallsConfig:
    forward: bool = False
    forward_text: str = "Call from {caller}"


@dataclass(frozen=True)
class WebhookConfig:
    host: str
    port: int
    path: str
    token: str = field(repr=False)
    public_url: str = ""

    @property
    def public_webhook_url(self) -> str:
        """What to paste into OnlineSim's settings, without the secret: the token is
        shown as TOKEN (the person reads it from the token file)."""
        return f"{self.public_url}{self.path}?token=TOKEN" if self.public_url else ""


@dataclass(frozen=True)
class Config:
    source: str
    onlinesim: OnlineSimConfig
    site: SiteConfig
    modems: ModemsConfig
    webhook: WebhookConfig
    control_socket: Path
    log_level: str
    store: StoreConfig = field(default_factory=StoreConfig)
    sims: SimsConfig = field(default_factory=SimsConfig)
    calls: CallsConfig = field(default_factory=CallsConfig)

    @property
    def database(self) -> Path:
        """The store's SQLite file: the agent writes it; status and the dashboard read it."""
        return self.site.data_dir / DATABASE_NAME

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a log line."""
        return tuple(s for s in (self.onlinesim.api_key, self.webhook.token) if s)


def load(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, check and resolve the configuration file; raise ConfigError on any problem."""
    raw = _read_toml(path)
    return from_mapping(raw, source=str(path), environ=os.environ if environ is None else environ)


def load_local_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The control socket and the database of the configuration file, checked against the
    schema but without reading its secret files: for the dashboard, which runs as a login
    (deploy/ssh) that may read simedge.toml but not the API key or the webhook token."""
    source = str(path)
    values = _check(_read_toml(path), source)
    base = Path(source).absolute().parent
    return base / values["control"]["socket"], base / values["site"]["data_dir"] / DATABASE_NAME


def _read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, None, f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(source, None, f"not UTF-8 text: {exc}") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, None, f"not valid TOML: {exc}") from exc


def from_mapping(
    raw: Mapping[str, Any], *, source: str = "<built-in>", environ: Mapping[str, str] | None = None
) -> Config:
    """Check a parsed TOML document against SCHEMA and build the typed Config."""
    values = _check(raw, source)
    environ = {} if environ is None else environ
    # Absolute, so every path read from the file is too: `--config simedge.toml` run from
    # its folder must give the same paths as the full name (a SQLite URI needs them so).
    base = Path(source).absolute().parent if source != "<built-in>" else Path.cwd()

    onlinesim = values["onlinesim"]
    api_key = environ.get(API_KEY_ENV) or _secret(
        onlinesim, "api_key", "api_key_file", source, "onlinesim", base
    )
    if not api_key:
        raise ConfigError(
            source, "[onlinesim] api_key", f"required: set api_key, api_key_file or {API_KEY_ENV}"
        )

    webhook = values["webhook"]
    token = _secret(webhook, "token", "token_file", source, "webhook", base)
    problem = _token_problem(token) if token else "required: set token or token_file"
    if problem:
        raise ConfigError(source, "[webhook] token", problem)
    host, _, port = webhook["listen"].rpartition(":")

    return Config(
        source=source,
        onlinesim=OnlineSimConfig(
            base_url=onlinesim["base_url"].rstrip("/"),
            api_key=api_key,
            takeoff_sum=float(onlinesim["takeoff_sum"]),
            timeout=float(onlinesim["timeout"]),
            takeoff_interval=float(onlinesim["takeoff_interval"]),
            takeoff_action=onlinesim["takeoff_action"],
            numbers_debounce=float(onlinesim["numbers_debounce"]),
            numbers_heartbeat=float(onlinesim["numbers_heartbeat"]),
            max_in_flight=onlinesim["max_in_flight"],
        ),
        site=SiteConfig(
            name=site_name_or_hostname(values["site"]["name"], source),
            data_dir=base / values["site"]["data_dir"],
            slot_labels=dict(values["site"]["slot_labels"]),
        ),
        modems=ModemsConfig(
            ports=tuple(values["modems"]["ports"]),
            baudrate=values["modems"]["baudrate"],
            health_interval=float(values["modems"]["health_interval"]),
            command_timeout=float(values["modems"]["command_timeout"]),
            power_cycle_command=values["modems"]["power_cycle_command"],
            ussd={
                network: UssdRecipeConfig(**recipe)
                for network, recipe in values["modems"]["ussd"].items()
            },
        ),
        webhook=WebhookConfig(
            host=host.strip("[]"),
            port=int(port),
            path=webhook["path"],
            token=token,
            public_url=webhook["public_url"].rstrip("/"),
        ),
        control_socket=base / values["control"]["socket"],
        log_level=values["logging"]["level"].upper(),
        store=StoreConfig(
            retention_days=float(values["store"]["retention_days"]),
            multipart_timeout=float(values["store"]["multipart_timeout"]),
            block=tuple(BlockRuleConfig(**rule) for rule in values["store"]["block"]),
        ),
        sims=SimsConfig(
            balance_interval=float(values["sims"]["balance_interval"]),
            balance_fresh=float(values["sims"]["balance_fresh"]),
            low_balance=float(values["sims"]["low_balance"]),
            balance={
                network: BalanceRecipeConfig(**recipe)
                for network, recipe in values["sims"]["balance"].items()
            },
            keepalive={
                network: _keepalive_config(policy)
                for network, policy in values["sims"]["keepalive"].items()
            },
            probe_sms_per_day=values["sims"]["probe_sms_per_day"],
            probe_timeout=float(values["sims"]["probe_timeout"]),
        ),
        calls=CallsConfig(
            forward=values["calls"]["forward"],
            forward_text=values["calls"]["forward_text"],
        ),
    )


def _type_name(expected: type | tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }
    kinds = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(dict.fromkeys(names[k] for k in kinds))


def _toml_type(value: Any) -> str:
    return {
        bool: "a boolean",
        str: "a string",
        int: "an integer",
        float: "a number",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _check(raw: Mapping[str, Any], source: str) -> dict[str, dict[str, Any]]:
    for section in raw:
        if section not in SCHEMA:
            raise ConfigError(
                source, f"[{section}]", f"unknown section (known: {', '.join(SCHEMA)})"
            )
    values: dict[str, dict[str, Any]] = {}
    for section, keys in SCHEMA.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise ConfigError(source, f"[{section}]", f"expected a table, got {_toml_type(given)}")
        for name in given:
            if name not in keys:
                raise ConfigError(
                    source, f"[{section}] {name}", f"unknown key (known: {', '.join(keys)})"
                )
        values[section] = {}
        for name, key in keys.items():
            where = f"[{section}] {name}"
            if name not in given:
                if key.default is REQUIRED:
                    raise ConfigError(source, where, f"required: {key.help}")
                values[section][name] = key.default
                continue
            value = given[name]
            kinds = key.type if isinstance(key.type, tuple) else (key.type,)
            # TOML booleans are ints to Python: refuse `true` where a number is meant.
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                raise ConfigError(
                    source, where, f"expected {_type_name(key.type)}, got {_toml_type(value)}"
                )
            if key.item_type is not None:
                items = value.values() if isinstance(value, dict) else value
                for item in items:
                    if not isinstance(item, key.item_type):
                        raise ConfigError(
                            source,
                            where,
                            f"every item must be "
                            f"{_type_name(key.item_type)}, got {_toml_type(item)}",
                        )
            if key.check is not None and (problem := key.check(value)):
                raise ConfigError(source, where, problem)
            values[section][name] = value
    return values


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n"}
_TOML_ESCAPES |= {"\f": "\\f", "\r": "\\r"}


def toml_string(value: str) -> str:
    """``value`` as a TOML basic string: quotes, backslashes and every control character
    escaped, everything else verbatim (TOML v1.0.0, "Basic strings")."""

    def escape(ch: str) -> str:
        if ch in _TOML_ESCAPES:
            return _TOML_ESCAPES[ch]
        return f"\\u{ord(ch):04X}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch

    return '"' + "".join(map(escape, value)) + '"'


_TABLE_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_-]+)\s*\]\s*(#.*)?$")


def set_string(path: str | os.PathLike[str], dotted: str, value: str) -> None:
    """Set the string key ``dotted`` ("section.key") to ``value`` in the file ``path``,
    keeping every other line (comments too). The value is checked against SCHEMA first
    and written as a TOML string, so whatever it holds (``&``, ``#``, ``\\``, quotes) is
    read back verbatim; the file is then parsed again and must give exactly ``value``,
    else it is left untouched. Replaced atomically, keeping its mode and owner. Raises
    ConfigError naming the file and key."""
    source = str(path)
    section, _, name = dotted.partition(".")
    where = f"[{section}] {name}"
    key = SCHEMA.get(section, {}).get(name)
    if key is None:
        raise ConfigError(source, dotted, "unknown key (expected SECTION.KEY of the schema)")
    if key.type is not str:
        raise ConfigError(source, where, "only string keys can be set this way")
    if key.check is not None and (problem := key.check(value)):
        raise ConfigError(source, where, problem)
    target = Path(path)
    try:
        # Split on "\n" only: str.splitlines would also cut inside a value at U+2028.
        lines = target.read_text(encoding="utf-8").split("\n")
        info = target.stat()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, None, f"cannot read: {exc}") from exc
    line = f"{name} = {toml_string(value)}"
    assignment = re.compile(rf"^\s*{re.escape(name)}\s*=")
    current = None
    header_at = None
    for number, text in enumerate(lines):
        if (header := _TABLE_HEADER.match(text)) is not None:
            current = header[1]
            if current == section:
                header_at = number
        elif current == section and assignment.match(text):
            lines[number] = line
            break
    else:
        if header_at is not None:
            lines.insert(header_at + 1, line)
        else:
            if lines[-1] == "":
                lines.pop()  # the file's last newline: the new section follows it
            lines += ["", f"[{section}]", line, ""]
    text = "\n".join(lines)
    try:
        written = tomllib.loads(text).get(section, {}).get(name)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, where, f"the file would not be valid TOML: {exc}") from exc
    if written != value:
        raise ConfigError(source, where, "the file's layout hides the key; set it by hand")
    staged = target.with_name(target.name + ".new")
    try:
        staged.write_text(text, encoding="utf-8")
        os.chmod(staged, stat.S_IMODE(info.st_mode))
        if os.geteuid() == 0:
            os.chown(staged, info.st_uid, info.st_gid)
        os.replace(staged, target)
    except OSError as exc:
        staged.unlink(missing_ok=True)
        raise ConfigError(source, None, f"cannot write: {exc}") from exc


def _secret(
    section: Mapping[str, Any],
    inline: str,
    file_key: str,
    source: str,
    section_name: str,
    base: Path,
) -> str:
    if section[inline] and section[file_key]:
        raise ConfigError(
            source, f"[{section_name}] {inline}", f"give either {inline} or {file_key}, not both"
        )
    if not section[file_key]:
        return str(section[inline]).strip()
    path = base / section[file_key]
    where = f"[{section_name}] {file_key}"
    try:
        with path.open(encoding="utf-8") as file:
            # The mode of the file read (fstat): a link cannot point elsewhere meanwhile.
            problem = _secret_file_problem(os.fstat(file.fileno()).st_mode)
            if problem:
                raise ConfigError(source, where, f"{path}: {problem}")
            return file.read().strip()
    except OSError as exc:
        raise ConfigError(source, where, f"cannot read {path}: {exc.strerror or exc}") from exc


def _secret_file_problem(st_mode: int) -> str | None:
    """Why a secret file's mode is unsafe, or None. As ssh with a private key: any access
    by the group or others is refused, since they could read the key or swap the token.
    The owner is not checked: a 0600 file is readable only by its owner and root, so if
    the agent can read it, it is the agent's own or the agent runs as root (install.sh
    and the Ansible role give the files to the service user and check them as root)."""
    mode = stat.S_IMODE(st_mode)
    if mode & 0o077:
        return f"mode {mode:04o}, must not be readable or writable by group or others (chmod 600)"
    return None
