"""A site behind NAT, reached by OnlineSim through the relay: ``make test-tunnel`` only.

deploy/test-tunnel.sh builds three network namespaces (the site, the relay, "the
internet" that lets the site out and nothing in) and runs this module inside "the
internet", where the OnlineSim stand-in lives in this process. The relay is set up by
deploy/relay/setup-relay.sh and add-site.sh under a root folder of this run, and runs the
real sshd and Caddy (``tls internal``); the site runs the real agent on emulated modems
and the tunnel exactly as deploy/tunnel/simedge-tunnel.service starts it, with its
Restart= and RestartSec= kept by a small loop here (no systemd runs as PID 1 in the test
container; systemd-analyze verify checks the unit in tests/deploy).

The figures (first connection, webhook latency through the tunnel, reconnect times) are
printed at the end and written to $SIMEDGE_TUNNEL_FIGURES
(/tmp/simedge-test-tunnel-figures.json).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio

from agent.emulate.modems import Hub
from agent.emulate.onlinesim import OnlineSimStandIn
from agent.emulate.onlinesim.state import WebhookCall
from agent.webhook.reach import CHECK_INTERVAL

SITE_NS = os.environ.get("SIMEDGE_TUNNEL_SITE_NS", "")
RELAY_NS = os.environ.get("SIMEDGE_TUNNEL_RELAY_NS", "")
SITE_LINK = os.environ.get("SIMEDGE_TUNNEL_SITE_LINK", "")  # "the internet"'s end

pytestmark = [
    pytest.mark.skipif(
        not (SITE_NS and RELAY_NS and SITE_LINK),
        reason="needs the namespaces of `make test-tunnel` (deploy/test-tunnel.sh)",
    ),
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(600),
]

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "tunnel" / "simedge-tunnel.service"
RELAY_HOST, RELAY_ADDRESS, SITE_ADDRESS = "relay.test", "10.231.2.2", "10.231.1.2"
STANDIN_ADDRESS = "10.231.1.1"  # "the internet" as the site sees it
SITE, RELAY_PORT, WEBHOOK_PORT = "site-a", 20001, 8085
KEY = "tunnel-api-key-0123456789"
TOKEN = "tunnel-webhook-token-0123456789"
WEBHOOK_URL = f"https://{RELAY_HOST}/{SITE}/onlinesim/numbers?token={TOKEN}"
# The bound: the webhook answers again within this long after the link is back.
RECONNECT_BOUND = 60.0
LINK_DOWN_FOR = 30.0  # the scenario: the site's link is gone this long
LINK_DOWN_LONG = 55.0  # past both ends' keepalives (3 x 10 s, plus the 10 s to notice)
FIGURES = Path(os.environ.get("SIMEDGE_TUNNEL_FIGURES", "/tmp/simedge-test-tunnel-figures.json"))
LATENCY_CALLS = 50
# What the relay's sshd (LogLevel DEBUG1) says when the site's tunnel carries again: a
# new connection listens on the site's port, or the old connection, which outlived a
# short cut (TCP retransmits, keepalives not yet given up), brings a keepalive through.
# The reconnect figures measure up to the first of the two; OnlineSim's call then proves it.
FORWARD_READY = f"forwarding listening on 127.0.0.1 port {RELAY_PORT}."
KEEPALIVE_CAME = "rtype keepalive@openssh.com"


def in_ns(namespace: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", namespace, *argv]


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kwargs)  # type: ignore[call-overload]


@dataclass
class Daemon:
    """A process of the world, in its own session so that its children go with it."""

    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    process: asyncio.subprocess.Process | None = None
    lines: list[tuple[int, str]] = field(default_factory=list)  # (number, text), the last 500
    count: int = 0  # lines read so far, over every start
    _reader: asyncio.Task[None] | None = None
    _seen: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self, ready: str | None = None, within: float = 30.0) -> None:
        """Start; with ``ready``, wait until a line of its output contains it."""
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        self._reader = asyncio.create_task(self._read(), name=f"{self.name} output")
        if ready is not None:
            await self.wait_for(ready, within=within, since=self.count)

    async def _read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            self.count += 1
            self.lines.append((self.count, raw.decode(errors="replace").rstrip()))
            del self.lines[:-500]  # bounded: a chatty daemon keeps its last 500 lines
            changed, self._seen = self._seen, asyncio.Event()
            changed.set()

    async def wait_for(self, *texts: str, within: float, since: int = 0) -> tuple[int, str]:
        """The first line after line number ``since`` that contains one of ``texts``, and
        its number; waits for it (woken by each new line) up to ``within`` seconds."""
        async with asyncio.timeout(within):
            while True:
                for number, line in self.lines:
                    if number > since and any(text in line for text in texts):
                        return number, line
                if self._reader is not None and self._reader.done():
                    raise AssertionError(f"{self.name} ended: {self.tail()}")
                await self._seen.wait()

    def tail(self, count: int = 20) -> list[str]:
        return [line for _, line in self.lines[-count:]]

    async def stop(self) -> None:
        """SIGTERM to its process group and to every process it started (sshd's
        per-connection children make sessions of their own), then KILL."""
        if self.process is None or self.process.returncode is not None:
            return
        started_by_it = descendants(self.process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, 15)
        for pid in started_by_it:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 15)
        try:
            async with asyncio.timeout(10):
                await self.process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 9)
            await self.process.wait()
        if self._reader is not None:
            async with asyncio.timeout(10):  # EOF once every holder of its output is gone
                await asyncio.gather(self._reader, return_exceptions=True)


def descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def unit_command(tunnel_dir: Path) -> tuple[list[str], float]:
    """ExecStart= of simedge-tunnel.service with its EnvironmentFile's values, as systemd
    expands ``${NAME}``, with the unit's /etc/simedge/tunnel moved to ``tunnel_dir``; and
    RestartSec=."""
    text = UNIT.read_text().replace("\\\n", " ")
    settings = dict(
        line.split("=", 1) for line in text.splitlines() if re.match(r"^[A-Z]\w*=", line)
    )
    assert settings["Restart"] == "always"
    environment = dict(
        line.split("=", 1)
        for line in (tunnel_dir / "tunnel.env").read_text().splitlines()
        if "=" in line
    )
    command = settings["ExecStart"].replace("/etc/simedge/tunnel", str(tunnel_dir))
    command = re.sub(r"\$\{(\w+)\}", lambda m: environment[m.group(1)], command)
    return shlex.split(command), float(settings["RestartSec"])


class TunnelService:
    """simedge-tunnel.service's command, restarted RestartSec after it ends, as the unit
    says; each start is logged with its time."""

    def __init__(self, argv: list[str], restart_sec: float) -> None:
        self.daemon = Daemon(
            "tunnel", in_ns(SITE_NS, "runuser", "-u", "simedge-tunnel", "--", *argv)
        )
        self.restart_sec = restart_sec
        self.starts: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_up(), name="tunnel service")

    async def _keep_up(self) -> None:
        while True:
            self.starts.append(time.monotonic())
            await self.daemon.start()
            assert self.daemon.process is not None
            await self.daemon.process.wait()
            await asyncio.sleep(self.restart_sec)  # systemd's RestartSec=, not a test wait

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.daemon.stop()


@dataclass
class World:
    work: Path
    hub: Hub
    standin: OnlineSimStandIn
    sshd: Daemon
    caddy: Daemon
    agent: Daemon
    tunnel: TunnelService
    tunnel_dir: Path
    site_config: Path
    relay_root: Path
    figures: dict[str, object] = field(default_factory=dict)

    async def call_webhook(self) -> WebhookCall:
        call = await self.standin.call_webhook()
        assert call is not None
        return call

    async def until_tunnel_back(
        self, since: int, *, resumed_counts: bool = False
    ) -> tuple[float, str, WebhookCall]:
        """Seconds until the tunnel carries OnlineSim's call again, bounded by
        RECONNECT_BOUND; how ("new connection" or "resumed"); that call.

        Each try is set off by the relay's sshd, after its log line ``since``: a new
        forward listening, or (with ``resumed_counts``) a keepalive of the old connection.
        A keepalive may also be the last words of a site's ssh that already gave up (its
        kernel still sends what was queued, then closes): then the call fails and the
        next event is awaited."""
        started = time.monotonic()
        texts = (FORWARD_READY, KEEPALIVE_CAME) if resumed_counts else (FORWARD_READY,)
        failed: list[str] = []
        while True:
            left = RECONNECT_BOUND - (time.monotonic() - started)
            try:
                since, line = await self.sshd.wait_for(*texts, within=left, since=since)
            except TimeoutError:
                raise AssertionError(
                    f"no tunnel within {RECONNECT_BOUND} s (calls: {failed}); relay sshd:"
                    f" {self.sshd.tail(40)}; site ssh: {self.tunnel.daemon.tail()}"
                ) from None
            call = await self.call_webhook()
            if call.status == 200:
                how = "new connection" if FORWARD_READY in line else "resumed"
                return time.monotonic() - started, how, call
            failed.append(f"{line!r}: {call.error}")

    def ssh_as_site(
        self, options: list[str], command: list[str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """ssh from the site with the tunnel's account, key and pinned host key, but
        ``options`` and ``command`` in place of the unit's ``-N -R ...``."""
        argv, _ = unit_command(self.tunnel_dir)
        *base, destination = argv
        forward = base.index("-R")
        del base[forward : forward + 2]
        base.remove("-N")
        return run(
            in_ns(
                SITE_NS, "runuser", "-u", "simedge-tunnel", "--",
                *base, *options, destination, *(command or []),
            )
        )  # fmt: skip


def connects(namespace: str, host: str, port: int, within: float = 2.0) -> bool:
    """Whether a TCP connection from ``namespace`` to host:port is accepted."""
    probe = (
        "import socket,sys\n"
        "try:\n"
        f"    socket.create_connection(({host!r}, {port}), timeout={within}).close()\n"
        "except OSError:\n"
        "    sys.exit(1)\n"
    )
    return run(in_ns(namespace, sys.executable, "-c", probe)).returncode == 0


@dataclass(frozen=True)
class Layout:
    relay_root: Path
    sshd_config: Path
    site_config: Path
    tunnel_dir: Path


def lay_out(work: Path) -> Layout:
    """The files of both ends, made by the deploy scripts themselves: the relay's by
    setup-relay.sh and add-site.sh under a root folder of the run, the site's
    simedge.toml and tunnel by simedge-tunnel-setup. sshd's own main file is the test's."""
    # -- the relay: files by setup-relay.sh and add-site.sh under its own root ------
    relay_root = work / "relay-root"
    relay_root.mkdir()
    result = run(
        [str(DEPLOY / "relay" / "setup-relay.sh"), "--domain", RELAY_HOST,
         "--tls-internal", "--root", str(relay_root)]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    host_key = work / "ssh_host_ed25519_key"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)])
    sshd_config = work / "sshd_config"
    # As Debian's sshd_config: the drop-in folder first, then the server's own lines.
    sshd_config.write_text(
        f"Include {relay_root}/etc/ssh/sshd_config.d/*.conf\n"
        f"ListenAddress {RELAY_ADDRESS}\nPort 22\nHostKey {host_key}\n"
        f"PidFile {work}/sshd.pid\nUsePAM no\nLogLevel DEBUG1\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation
    sshd_path = shutil.which("sshd", path="/usr/sbin:/usr/bin") or "/usr/sbin/sshd"
    checked = run([sshd_path, "-t", "-f", str(sshd_config)])
    assert checked.returncode == 0, checked.stderr

    # -- the site's files: simedge.toml, then simedge-tunnel-setup ------------------
    site_etc = work / "site-etc"
    site_etc.mkdir()
    site_config = site_etc / "simedge.toml"
    site_config.write_text(
        f'[onlinesim]\nbase_url = "http://{STANDIN_ADDRESS}:8765/api/resellers"\n'
        f'api_key = "{KEY}"\ntakeoff_sum = 0\nnumbers_debounce = 0.3\n'
        f'[site]\ndata_dir = "{work / "site-data"}"\n'
        f'[modems]\nports = ["{work / "modems"}/*"]\n'
        f'[webhook]\nlisten = "0.0.0.0:{WEBHOOK_PORT}"\ntoken = "{TOKEN}"\npublic_url = ""\n'
        f'[control]\nsocket = "{work / "control.sock"}"\n'
    )
    result = run(
        [str(DEPLOY / "tunnel" / "simedge-tunnel-setup.sh"), "--relay", RELAY_HOST,
         "--relay-port", str(RELAY_PORT), "--site", SITE,
         "--relay-host-key", f"{host_key}.pub", "--conf-dir", str(site_etc),
         "--no-systemd"]
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f'public_url = "https://{RELAY_HOST}/{SITE}"' in site_config.read_text()
    tunnel_dir = site_etc / "tunnel"
    relay_env = relay_root / "etc/simedge-relay/relay.env"
    result = run(
        [str(relay_root / "usr/local/sbin/simedge-relay-add-site"), "--no-reload",
         "--metrics", "10.231.2.1/32", SITE, str(RELAY_PORT),
         str(tunnel_dir / "id_ed25519.pub")],
        env={**os.environ, "SIMEDGE_RELAY_ENV": str(relay_env)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr

    return Layout(relay_root, sshd_config, site_config, tunnel_dir)


def report_figures(figures: dict[str, object]) -> None:
    text = json.dumps(figures, indent=2)
    FIGURES.write_text(text + "\n")
    print(f"\ntest-tunnel figures ({FIGURES}):\n{text}")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world() -> AsyncIterator[World]:
    for tool in ("sshd", "caddy", "ssh", "runuser"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin") is None:
            pytest.skip(f"{tool} is not installed (make test-tunnel installs it)")
    # sshd reads authorized_keys as the tunnel account and wants every folder above it
    # owned by root and not writable by others: /tmp (1777) would not do.
    work = Path(tempfile.mkdtemp(prefix="simedge-tunnel-", dir="/run"))
    os.chmod(work, 0o755)  # mkdtemp's 0700 would keep the tunnel account out
    created_users = [u for u in ("simedge-relay", "simedge-tunnel") if run(["id", u]).returncode]
    daemons: list[Daemon] = []
    tunnel: TunnelService | None = None
    hub = standin = None
    try:
        layout = lay_out(work)
        relay_root, site_config, tunnel_dir = (
            layout.relay_root,
            layout.site_config,
            layout.tunnel_dir,
        )
        sshd_path = shutil.which("sshd", path="/usr/sbin:/usr/bin") or "/usr/sbin/sshd"
        sshd_config = layout.sshd_config
        # -- the relay's daemons ---------------------------------------------------------
        sshd = Daemon("sshd", in_ns(RELAY_NS, sshd_path, "-D", "-e", "-f", str(sshd_config)))
        daemons.append(sshd)
        await sshd.start(ready="Server listening on")
        caddy_home = work / "caddy-home"
        caddy_env = {
            **os.environ,
            "HOME": str(caddy_home),
            "XDG_DATA_HOME": str(caddy_home / "data"),
            "XDG_CONFIG_HOME": str(caddy_home / "config"),
        }
        caddyfile = relay_root / "etc/caddy/Caddyfile"
        caddy = Daemon(
            "caddy",
            in_ns(RELAY_NS, "caddy", "run", "--adapter", "caddyfile", "--config", str(caddyfile)),
            env=caddy_env,
        )
        daemons.append(caddy)
        await caddy.start(ready="serving initial configuration")
        root_ca = caddy_home / "data/caddy/pki/authorities/local/root.crt"
        assert root_ca.exists(), caddy.tail()
        # Every HTTPS client of the world trusts the relay's internal CA (httpx reads it).
        os.environ["SSL_CERT_FILE"] = str(root_ca)

        # -- the emulated modems and OnlineSim, in this process, "on the internet" ------
        hub = Hub(work / "modems", count=2, profile="sim800", seed=7, noise_interval=0.5)
        await hub.start()
        standin = OnlineSimStandIn(key=KEY, webhook_url=WEBHOOK_URL, webhook_interval=3600)
        await standin.start("0.0.0.0", 8765)

        # -- the site's agent and its tunnel --------------------------------------------
        simedge = str(Path(sys.executable).parent / "simedge")
        agent = Daemon(
            "agent",
            in_ns(SITE_NS, simedge, "run", "--config", str(site_config)),
            env={**os.environ, "SSL_CERT_FILE": str(root_ca)},
        )
        daemons.append(agent)
        await agent.start(ready="agent started")
        argv, restart_sec = unit_command(tunnel_dir)
        tunnel = TunnelService(argv, restart_sec)
        since = sshd.count
        tunnel.start()
        world = World(
            work, hub, standin, sshd, caddy, agent, tunnel, tunnel_dir, site_config, relay_root
        )
        first, _, call = await world.until_tunnel_back(since)
        assert call.status == 200, (call.error, caddy.tail())
        world.figures["first_connection_s"] = round(first, 2)
        yield world
        report_figures(world.figures)
    finally:
        if tunnel is not None:
            await tunnel.stop()
        for daemon in reversed(daemons):
            await daemon.stop()
        if standin is not None:
            await standin.stop()
        if hub is not None:
            await hub.stop()
        os.environ.pop("SSL_CERT_FILE", None)
        for user in created_users:
            run(["userdel", user])
        shutil.rmtree(work, ignore_errors=True)


async def numbers_online(world: World, count: int) -> set[str]:
    async with asyncio.timeout(60):
        await world.standin.wait_until(lambda state: len(state.online) >= count)
    return set(world.standin.state.online)


async def test_onlinesim_gets_the_sites_list_through_the_relay(world: World) -> None:
    online = await numbers_online(world, 2)
    durations = []
    for _ in range(LATENCY_CALLS):
        call = await world.call_webhook()
        assert call.status == 200, call.error
        assert call.numbers is not None
        assert {item["number"] for item in call.numbers} == online
        durations.append(call.duration * 1000)
    quantiles = statistics.quantiles(durations, n=20)
    world.figures["webhook_latency_ms"] = {
        "calls": LATENCY_CALLS,
        "p50": round(statistics.median(durations), 1),
        "p95": round(quantiles[18], 1),
        "max": round(max(durations), 1),
    }


async def test_an_sms_on_the_site_reaches_onlinesim(world: World) -> None:
    await numbers_online(world, 2)
    text = "tunnel test code 424242"
    world.hub.inject(0, "VKcom", text)
    async with asyncio.timeout(30):
        await world.standin.wait_until(lambda state: any(m.text == text for m in state.messages))


async def test_metrics_through_the_relay_show_the_public_url_up(world: World) -> None:
    """The agent checks its own public URL every 30 s; the central Prometheus (here, at
    the address add-site --metrics allowed) reads the verdict at /SITE/metrics."""
    import httpx

    url = f"https://{RELAY_HOST}/{SITE}/metrics"
    wanted = (
        f'simedge_public_url_up{{url="https://{RELAY_HOST}/{SITE}/onlinesim/numbers'
        '?token=TOKEN"} 1.0'
    )
    # The agent says so in its log when it has reached itself there (first check at
    # start, maybe before the tunnel was up; the next 30 s later).
    await world.agent.wait_for(
        f"public URL https://{RELAY_HOST}/{SITE}/healthz reachable", within=75
    )
    async with httpx.AsyncClient(timeout=5) as client:
        assert wanted in (await client.get(url)).text
        # Anything but the webhook, health and (here) metrics paths: the relay's 404.
        assert (await client.get(f"https://{RELAY_HOST}/{SITE}/admin")).status_code == 404
        assert (await client.get(f"https://{RELAY_HOST}/other-site/healthz")).status_code == 404


async def test_the_site_key_opens_no_other_port_and_no_shell(world: World) -> None:
    shell = world.ssh_as_site([], ["id"])
    assert shell.returncode != 0
    assert "uid=" not in shell.stdout
    other_port = world.ssh_as_site(
        ["-N", "-o", "ExitOnForwardFailure=yes", "-R", f"{RELAY_PORT + 1}:127.0.0.1:22"]
    )
    assert other_port.returncode != 0
    assert "remote port forwarding failed" in other_port.stderr
    to_relay_sshd = world.ssh_as_site(["-W", "127.0.0.1:22"])
    assert to_relay_sshd.returncode != 0
    assert "administratively prohibited" in to_relay_sshd.stderr
    # The tunnel's port on the relay is on its loopback, not its address.
    assert not connects(RELAY_NS, RELAY_ADDRESS, RELAY_PORT)
    assert not connects(RELAY_NS, "127.0.0.1", RELAY_PORT + 1)


async def test_nothing_reaches_the_site_but_the_webhook(world: World) -> None:
    # Through the tunnel: the webhook's listener, which answers /healthz.
    health = run(
        in_ns(RELAY_NS, "curl", "-s", "--max-time", "5", f"http://127.0.0.1:{RELAY_PORT}/healthz")
    )
    assert '"instance"' in health.stdout
    # Straight to the site, from the relay and from "the internet": nothing, not even
    # the webhook's port, which listens on every address of the site.
    for port in (WEBHOOK_PORT, 22, 8765):
        assert not connects(RELAY_NS, SITE_ADDRESS, port), port
    assert not connects(RELAY_NS, SITE_ADDRESS, WEBHOOK_PORT)
    # The site itself reaches out (the uplink): proof that the drop is one-way.
    assert connects(SITE_NS, STANDIN_ADDRESS, 8765)


async def test_the_relays_sshd_restarted(world: World) -> None:
    """The relay's sshd stopped with every session it holds (`systemctl restart ssh`
    alone keeps sessions, KillMode=process; a reboot or an upgrade that kills them does
    not) and started again: the site's ssh sees its connection closed, ends, and is
    started again RestartSec later."""
    await world.sshd.stop()
    before = (await world.call_webhook()).status
    assert before != 200, "the webhook still answers with the relay's sshd stopped"
    since = world.sshd.count
    await world.sshd.start(ready="Server listening on")
    answered, how, _ = await world.until_tunnel_back(since)
    assert how == "new connection"
    world.figures["sshd_restart"] = {"webhook_answered_s": round(answered, 2), "tunnel": how}


async def drop_the_sites_link(world: World, seconds: float) -> dict[str, object]:
    """The site's link down for ``seconds``, then up; the figures of its return: seconds
    from the link's return until OnlineSim's call through the tunnel answered, and how
    the tunnel came back."""
    link = ["ip", "link", "set", SITE_LINK]
    assert run([*link, "down"]).returncode == 0
    try:
        down = await world.call_webhook()
        assert down.status != 200
        await asyncio.sleep(seconds)  # the scenario itself: the link is gone this long
    finally:
        since = world.sshd.count
        assert run([*link, "up"]).returncode == 0
    answered, how, _ = await world.until_tunnel_back(since, resumed_counts=True)
    return {"webhook_answered_s": round(answered, 2), "tunnel": how}


async def test_the_sites_link_dropped_for_30_s(world: World) -> None:
    """Shorter than the keepalives' 3 x 10 s + 10 s: the connection may outlive it."""
    figures = await drop_the_sites_link(world, LINK_DOWN_FOR)
    world.figures["link_drop_30s"] = figures


async def test_the_sites_link_dropped_past_the_keepalives(world: World) -> None:
    """Longer than the keepalives: the site's ssh gives up and is started again, the
    relay's session ends and frees the port, and a new connection listens there."""
    starts = len(world.tunnel.starts)
    figures = await drop_the_sites_link(world, LINK_DOWN_LONG)
    assert figures["tunnel"] == "new connection"
    assert len(world.tunnel.starts) > starts
    world.figures[f"link_drop_{LINK_DOWN_LONG:.0f}s"] = figures


async def test_the_agent_notices_the_tunnel_down(world: World) -> None:
    """With the tunnel stopped for good, `simedge status` on the site reads "down" from
    the site's log within two checks (30 s apart) of the agent's."""
    verdicts = [(n, line) for n, line in world.agent.lines if "public URL" in line]
    if verdicts and "unreachable" in verdicts[-1][1]:
        # A cut before this test outlived two checks: see it up again first (next check).
        await world.agent.wait_for(" reachable", within=CHECK_INTERVAL + 15, since=verdicts[-1][0])
    since = world.agent.count
    await world.tunnel.stop()
    started = time.monotonic()
    # Two failed checks CHECK_INTERVAL apart, each up to its 10 s timeout.
    await world.agent.wait_for("unreachable", within=2 * CHECK_INTERVAL + 30, since=since)
    report = json.loads(
        run(
            in_ns(
                SITE_NS, str(Path(sys.executable).parent / "simedge"), "status", "--json",
                "--config", str(world.site_config),
            )
        ).stdout
    )  # fmt: skip
    assert report["public_url"]["state"] == "down"
    world.figures["down_noticed_by_the_agent_s"] = round(time.monotonic() - started, 1)
    assert report["public_url"]["url"] == (
        f"https://{RELAY_HOST}/{SITE}/onlinesim/numbers?token=TOKEN"
    )


async def test_every_cut_was_measured(world: World) -> None:
    """The figures the closing note gives (each within RECONNECT_BOUND, which
    until_tunnel_back enforces): none missing, e.g. after a test was deselected."""
    for name in ("sshd_restart", "link_drop_30s", f"link_drop_{LINK_DOWN_LONG:.0f}s"):
        assert name in world.figures, f"{name} was not measured"
