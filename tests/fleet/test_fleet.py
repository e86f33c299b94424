"""A fleet on a real Prometheus (``make test-fleet``; minutes, not in ``make test``).

Debian's ``prometheus`` server scrapes two real agents (sites fleet-a and fleet-b) through
file_sd target files as deploy/ansible/prometheus.yml writes them; a third (fleet-c) is
scraped by a Prometheus in agent mode that pushes to the server with remote_write, as
deploy/prometheus/agent-remote-write.yml describes. Each agent runs on its own emulated
hub with its own OnlineSim stand-in. The shipped alert rules are loaded from a TEST COPY
whose ``for:`` durations are cut to 5 s and whose range windows are cut to 20 s (the
shipped ones wait minutes to hours); nothing else in them changes.

Scenarios, each read from the server's HTTP API (/api/v1/alerts), each printing which
alerts fired where:

1. quiet fleet: no alert pending or firing anywhere, and every query of the Grafana
   dashboard answers on it;
2. fleet-b's uplink stops (its OnlineSim unreachable) while an SMS waits, and a modem
   of fleet-b hangs until it is failed: exactly the expected alerts fire, for fleet-b
   only; healed (uplink back, modem answering), they clear;
3. fleet-c's agent (the pushing site) stops: SimedgeDown for fleet-c only, pushed by its
   Prometheus agent; started again, it clears.

Prometheus has no notification to wait on: the test reads its API every half second,
always under a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.clock import kernel_clock_synchronized
from agent.emulate.modems import Hub
from agent.emulate.onlinesim import OnlineSimStandIn
from tests.deploy import fleet
from tests.e2e.site import KEY, TOKEN

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("SIMEDGE_TEST_FLEET") != "1",
        reason="a fleet on a real Prometheus: run it with `make test-fleet`",
    ),
    pytest.mark.timeout(900),
]

yaml = pytest.importorskip("yaml", reason="PyYAML comes with ansible-core")

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
TEST_FOR = "5s"
TEST_WINDOW = "20s"
POLL = 0.5  # seconds between reads of Prometheus's API
PROMETHEUS_DEADLINE = 180.0  # seconds an expected change may take to show


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def rules_test_copy(folder: Path) -> Path:
    """The shipped rules with short ``for:`` and windows, so that the fleet test takes
    minutes; the expressions and labels are the shipped ones."""
    text = (PROMETHEUS_DIR / "simedge-alerts.yml").read_text()
    text = re.sub(r"(?m)^(\s+for: )\S+$", rf"\g<1>{TEST_FOR}", text)
    text = re.sub(r"\[\d+[smhd]\]", f"[{TEST_WINDOW}]", text)
    path = folder / "simedge-alerts.yml"
    path.write_text("# TEST COPY with short for: and windows (tests/fleet)\n" + text)
    return path


@dataclass
class FleetSite:
    """One site: its hub, its stand-in, and ``simedge run`` as a process of its own (one
    store per process: three agents are three processes, as on three Pis)."""

    name: str
    folder: Path
    port: int
    hub: Hub
    standin: OnlineSimStandIn
    agent: asyncio.subprocess.Process | None = None

    async def start_agent(self) -> None:
        config = self.folder / "simedge.toml"
        config.write_text(
            f'[onlinesim]\nbase_url = "{self.standin.url}/api/resellers"\napi_key = "{KEY}"\n'
            "takeoff_sum = 0\nnumbers_debounce = 0.3\n"
            f'[site]\nname = "{self.name}"\ndata_dir = "data"\n'
            f'[modems]\nports = ["{self.folder / "modems"}/*"]\nhealth_interval = 1\n'
            "command_timeout = 1\n"
            f'[webhook]\nlisten = "127.0.0.1:{self.port}"\ntoken = "{TOKEN}"\n'
            '[control]\nsocket = "control.sock"\n'
        )
        log = (self.folder / "agent.log").open("ab")
        try:
            self.agent = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agent.cli", "run", "--config", str(config),
                cwd=REPO, stdout=log, stderr=log, env={"PATH": "/usr/bin:/bin"},
            )  # fmt: skip
        finally:
            log.close()
        # Up when this process sent OnlineSim a numbers list with both SIMs, and it was
        # accepted (the stand-in says so: no polling).
        requests_before = max((r.seq for r in self.standin.state.requests), default=0)

        def listed_both(state: Any) -> bool:
            return len(state.online) == 2 and any(
                r.seq > requests_before and "sendNumbersOnline" in r.path and r.status == 200
                for r in state.requests
            )

        async with asyncio.timeout(60):
            await self.standin.wait_until(listed_both)

    async def stop_agent(self) -> None:
        agent, self.agent = self.agent, None
        if agent is None or agent.returncode is not None:
            return
        agent.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(30):
                await agent.wait()
        except TimeoutError:
            agent.kill()
            await agent.wait()


@contextlib.asynccontextmanager
async def fleet_site(root: Path, name: str) -> AsyncIterator[FleetSite]:
    folder = root / name
    folder.mkdir()
    hub = Hub(folder / "modems", count=2, profile="sim800", seed=len(name), noise_interval=0.5)
    await hub.start()
    standin = OnlineSimStandIn(key=KEY)
    await standin.start()
    site = FleetSite(name, folder, free_port(), hub, standin)
    try:
        await site.start_agent()
        yield site
    finally:
        await site.stop_agent()
        await standin.stop()
        await hub.stop()


@contextlib.contextmanager
def process(argv: list[str], log: Path) -> Any:
    with log.open("wb") as output:
        child = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT)
        try:
            yield child
        finally:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=30)


def server_config(folder: Path, sites: list[FleetSite]) -> Path:
    """deploy/prometheus/prometheus.yml with its static examples dropped and second-long
    intervals; the targets in file_sd files of the form Ansible writes."""
    shipped = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (job,) = shipped["scrape_configs"]
    job.pop("static_configs")
    job["scrape_interval"] = "1s"
    job["file_sd_configs"][0]["refresh_interval"] = "1s"
    shipped["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    targets = folder / "targets"
    targets.mkdir()
    for site in sites:
        entry = [{"targets": [f"127.0.0.1:{site.port}"], "labels": {"site": site.name}}]
        (targets / f"simedge-{site.name}.yml").write_text(yaml.safe_dump(entry))
    rules_test_copy(folder)
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(shipped))
    return path


def agent_mode_config(folder: Path, site: FleetSite, server_port: int) -> Path:
    """deploy/prometheus/agent-remote-write.yml for one site pushing to the test server."""
    shipped = yaml.safe_load((PROMETHEUS_DIR / "agent-remote-write.yml").read_text())
    shipped["global"]["scrape_interval"] = "1s"
    shipped["global"]["external_labels"]["site"] = site.name
    shipped["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{site.port}"]}]
    (write,) = shipped["remote_write"]
    write["url"] = f"http://127.0.0.1:{server_port}/api/v1/write"
    write.pop("basic_auth")
    write["queue_config"]["batch_send_deadline"] = "1s"
    path = folder / "agent.yml"
    path.write_text(yaml.safe_dump(shipped))
    return path


class Server:
    """The Prometheus server's HTTP API. ``host_alerts`` are alerts every site of this
    machine fires truly (all run on one kernel), left out of :meth:`alerts`."""

    def __init__(self, port: int, host_alerts: frozenset[str]) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.client = httpx.AsyncClient(base_url=self.base, timeout=5.0)
        self.host_alerts = host_alerts

    async def alerts(self) -> dict[str, dict[str, str]]:
        """site -> {alert name: state} of the Simedge alerts pending or firing now, but
        the host's own."""
        everything = await self.all_alerts()
        found = {
            site: {name: state for name, state in names.items() if name not in self.host_alerts}
            for site, names in everything.items()
        }
        return {site: names for site, names in found.items() if names}

    async def all_alerts(self) -> dict[str, dict[str, str]]:
        """site -> {alert name: state} of the Simedge alerts pending or firing now."""
        response = await self.client.get("/api/v1/alerts")
        response.raise_for_status()
        found: dict[str, dict[str, str]] = {}
        for alert in response.json()["data"]["alerts"]:
            labels = alert["labels"]
            if labels["alertname"].startswith("Simedge"):
                found.setdefault(labels.get("site", "?"), {})[labels["alertname"]] = alert["state"]
        return found

    async def last_evaluation(self) -> float:
        """Unix time of the simedge rule group's last evaluation."""
        response = await self.client.get("/api/v1/rules")
        response.raise_for_status()
        (group,) = response.json()["data"]["groups"]
        stamp = group["lastEvaluation"]
        return datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()

    async def up(self) -> dict[str, float]:
        response = await self.client.get("/api/v1/query", params={"query": 'up{job="simedge"}'})
        response.raise_for_status()
        return {
            result["metric"]["site"]: float(result["value"][1])
            for result in response.json()["data"]["result"]
        }

    async def until(self, what: str, read: Any, condition: Callable[[Any], bool]) -> Any:
        """Read Prometheus every POLL seconds until ``condition`` holds (no notification
        to wait on in its API), under PROMETHEUS_DEADLINE."""
        seen = None
        try:
            async with asyncio.timeout(PROMETHEUS_DEADLINE):
                while True:
                    with contextlib.suppress(httpx.HTTPError):
                        seen = await read()
                        if condition(seen):
                            return seen
                    await asyncio.sleep(POLL)
        except TimeoutError:
            pytest.fail(f"{what}: not within {PROMETHEUS_DEADLINE:.0f} s; last seen {seen}")


async def check_dashboard(server: Server, sites: set[str]) -> None:
    """Every query of the Grafana dashboard, as Grafana sends it with "All" sites picked,
    answers on the live fleet; those that read a simedge_ series have data (a latency
    quantile without deliveries, errors by code before any error, and the alert list may
    rightly be empty)."""
    queries = fleet.dashboard_expressions()
    for where, expr in queries.items():
        if expr.startswith("label_values("):
            response = await server.client.get(
                "/api/v1/label/site/values", params={"match[]": 'up{job="simedge"}'}
            )
            assert set(response.json()["data"]) == sites, where
            continue
        response = await server.client.get(
            "/api/v1/query", params={"query": expr.replace("$site", ".*")}
        )
        answer = response.json()
        assert answer["status"] == "success", f"{where}: {answer}"
        may_be_empty = any(
            empty in expr for empty in ("histogram_quantile", "ALERTS{", "uplink_errors")
        )
        assert may_be_empty or answer["data"]["result"], f"{where}: no data: {expr}"
    print(f"fleet: the dashboard's {len(queries)} queries answer on the live fleet", flush=True)


def report(scenario: str, alerts: dict[str, dict[str, str]]) -> None:
    where = (
        "; ".join(
            f"{site}: " + ", ".join(f"{name} ({state})" for name, state in sorted(names.items()))
            for site, names in sorted(alerts.items())
        )
        or "no alert anywhere"
    )
    print(f"fleet: {scenario}: {where}", flush=True)


def firing(alerts: dict[str, dict[str, str]], site: str) -> set[str]:
    return {name for name, state in alerts.get(site, {}).items() if state == "firing"}


async def test_a_fleet_on_prometheus_alerts_for_exactly_the_broken_site(tmp_path: Path) -> None:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus is not installed (Debian package prometheus)")
    server_port, agent_port = free_port(), free_port()
    async with (
        fleet_site(tmp_path, "fleet-a") as a,
        fleet_site(tmp_path, "fleet-b") as b,
        fleet_site(tmp_path, "fleet-c") as c,
    ):
        server_dir, agent_dir = tmp_path / "server", tmp_path / "agent-mode"
        server_dir.mkdir()
        agent_dir.mkdir()
        server_argv = [
            prometheus,
            f"--config.file={server_config(server_dir, [a, b])}",
            f"--storage.tsdb.path={server_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{server_port}",
            "--web.enable-remote-write-receiver",
        ]
        agent_argv = [
            prometheus,
            "--enable-feature=agent",
            f"--config.file={agent_mode_config(agent_dir, c, server_port)}",
            f"--storage.agent.path={agent_dir / 'wal'}",
            f"--web.listen-address=127.0.0.1:{agent_port}",
        ]
        with (
            process(server_argv, server_dir / "prometheus.log"),
            process(agent_argv, agent_dir / "prometheus.log"),
        ):
            # This machine's kernel may say its clock is unsynchronised (a container
            # without NTP): then every site fires SimedgeClockUnsynchronized, truly.
            host = frozenset(
                {"SimedgeClockUnsynchronized"} if kernel_clock_synchronized() is False else ()
            )
            server = Server(server_port, host)
            try:
                await run_scenarios(server, a, b, c)
            finally:
                await server.client.aclose()


async def run_scenarios(server: Server, a: FleetSite, b: FleetSite, c: FleetSite) -> None:
    sites = {a.name, b.name, c.name}
    ups = await server.until(
        "every site up (two scraped, one pushed)",
        server.up,
        lambda up: up == {name: 1.0 for name in sites},
    )
    assert set(ups) == sites
    # Quiet: the rules evaluated for longer than any test "for:" with every site up, and
    # nothing is pending or firing.
    since = time.time()
    await server.until(
        "the rules evaluated with every site up",
        server.last_evaluation,
        lambda at: at > since + 2 * float(TEST_FOR.removesuffix("s")),
    )
    everything = await server.all_alerts()
    report("1 quiet fleet (as Prometheus lists it)", everything)
    if server.host_alerts:
        print(f"fleet: this machine's own, on every site: {', '.join(server.host_alerts)}")
        assert all(set(names) == server.host_alerts for names in everything.values())
    assert await server.alerts() == {}
    await check_dashboard(server, sites)

    # fleet-b: OnlineSim unreachable while an SMS waits; a modem hangs until failed.
    await b.standin.set_faults(down=True)
    b.hub.inject(0, "+79161234567", "code 1111")
    b.hub.fault(1, "hang")
    expected = {"SimedgeUplinkStalled", "SimedgeModemFailed"}
    broken = await server.until(
        "fleet-b's alerts firing",
        server.alerts,
        lambda alerts: expected <= firing(alerts, b.name),
    )
    report("2 fleet-b broken (OnlineSim unreachable, a modem failed)", broken)
    assert set(broken) == {b.name}, "alerts for a site that is not broken"
    # Consequences that may show too: a link down makes failing calls (their rate is
    # SimedgeUplinkErrors), and the hanging modem was "recovering" on its way to failed
    # (SimedgeModemsRecoveringOften, 30 minutes in the shipped rules, 5 s in the copy).
    consequences = {"SimedgeUplinkErrors", "SimedgeModemsRecoveringOften"}
    assert set(broken[b.name]) <= expected | consequences

    await b.standin.set_faults(clear=True)
    b.hub.fault(1, "clear")
    # A fresh SMS probes the link at once (docs/uplink.md): both go up.
    b.hub.inject(0, "+79161234567", "code 2222")
    healed = await server.until("fleet-b healed", server.alerts, lambda alerts: alerts == {})
    report("2 fleet-b healed", healed)

    # fleet-c, the site that pushes: its agent stops; its Prometheus agent says up 0.
    await c.stop_agent()
    down = await server.until(
        "fleet-c down",
        server.alerts,
        lambda alerts: firing(alerts, c.name) == {"SimedgeDown"},
    )
    report("3 fleet-c's agent stopped (pushed through agent mode)", down)
    assert set(down) == {c.name}
    await c.start_agent()
    back = await server.until("fleet-c back", server.alerts, lambda alerts: alerts == {})
    report("3 fleet-c's agent started again", back)
