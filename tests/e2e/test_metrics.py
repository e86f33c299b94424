"""Every series on /metrics moves with the event it names, read from the real agent's
/metrics over HTTP: SMS from emulated modems through the real store and uplink to the
OnlineSim stand-in, a block rule, a refusal that makes a dead letter, a paused uplink, a
restart on the same data folder."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from agent.clock import kernel_clock_synchronized
from agent.config import Config
from agent.emulate.modems import Hub
from agent.emulate.onlinesim import OnlineSimStandIn
from agent.supervisor import Agent
from tests.deploy import fleet
from tests.e2e.site import KEY, site_config, start_agent

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples_of(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, metric: str, **labels: str) -> float:
    return samples[(metric, tuple(sorted(labels.items())))]


def now_of(agent: Agent) -> Samples:
    """The agent's metric set as /metrics renders it, for waits (no I/O)."""
    return samples_of(agent.metrics.render().decode())


async def scrape_text(agent: Agent) -> str:
    assert agent.webhook is not None
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{agent.webhook.port}/metrics")
    assert response.status_code == 200
    return response.text


async def scrape(agent: Agent) -> Samples:
    return samples_of(await scrape_text(agent))


@contextlib.asynccontextmanager
async def running(config: Config, folder: Path) -> AsyncIterator[Agent]:
    agent, stop, task = await start_agent(config, folder)
    try:
        yield agent
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await task


LOOK_AGAIN = 0.25  # seconds: a gauge refreshed on a timer (the outbox depth) says nothing


async def until(agent: Agent, condition: object, seconds: float = 20.0) -> None:
    """Wait until ``condition(samples)`` holds, looking after every change the agent
    publishes and every LOOK_AGAIN seconds besides: a gauge refreshed on a timer
    publishes nothing, and a health check that found nothing new neither (issue 19)."""
    assert callable(condition)
    async with asyncio.timeout(seconds):
        while not condition(now_of(agent)):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LOOK_AGAIN):
                    await agent.wait_until(lambda: bool(condition(now_of(agent))))


async def test_every_series_moves_with_its_event_and_the_depth_survives_a_restart(
    tmp_path: Path,
) -> None:
    hub = Hub(tmp_path / "modems", count=2, profile="sim800", seed=7, noise_interval=0.5)
    await hub.start()
    standin = OnlineSimStandIn(key=KEY)
    url = await standin.start()
    config = site_config(
        tmp_path,
        f"{url}/api/resellers",
        site={"name": "shop-7"},
        store={"block": [{"name": "bank", "text": "^SECRET"}]},
    )
    try:
        async with running(config, tmp_path) as agent:
            await until(agent, lambda s: value(s, "simedge_modems", state="ready") == 2)
            await until(agent, lambda s: value(s, "simedge_sims_online") == 2)
            text = await scrape_text(agent)
            # The fleet's alert rules and dashboards read only what this agent exports.
            exported = fleet.exported_names(text)
            for where, names in fleet.names_used().items():
                assert names <= exported, f"{where}: not on /metrics: {names - exported}"
            quiet = samples_of(text)
            assert value(quiet, "simedge_site_info", name="shop-7") == 1
            assert value(quiet, "simedge_sims_swap_due") == 0
            assert value(quiet, "simedge_outbox_depth") == 0
            # Read at the scrape: the data folder's file system and the kernel's clock flag.
            disk = shutil.disk_usage(config.site.data_dir)
            assert value(quiet, "simedge_data_size_bytes") == disk.total
            assert abs(value(quiet, "simedge_data_free_bytes") - disk.free) < 64 * 2**20
            synchronized = kernel_clock_synchronized()
            assert synchronized is not None  # Linux: adjtimex answers
            assert value(quiet, "simedge_clock_synchronized") == float(synchronized)
            hub.inject(0, "+79161234567", "code {n}", count=3)
            hub.inject(1, "+79161234568", "SECRET 1234")  # blocked: kept, not uploaded
            hub.inject(1, "+79161234569", "")  # OnlineSim refuses an empty text
            await until(
                agent,
                lambda s: (
                    value(s, "simedge_sms_forwarded_total") == 3
                    and value(s, "simedge_sms_dead_total") == 1
                    and value(s, "simedge_outbox_depth") == 0
                ),
            )
            drained = await scrape(agent)
            assert value(drained, "simedge_sms_received_total") == 5
            assert value(drained, "simedge_sms_blocked_total") == 1
            assert value(drained, "simedge_sms_forwarded_total") == len(standin.state.messages)
            assert value(drained, "simedge_uplink_errors_total", code="ERROR_PARAMS") == 1
            assert value(drained, "simedge_delivery_latency_seconds_count") == 3
            # Emulated SMS go up within seconds: all three in the buckets up to 10 s.
            assert value(drained, "simedge_delivery_latency_seconds_bucket", le="10.0") == 3
            assert value(drained, "simedge_outbox_depth") == 0
            assert value(drained, "simedge_uplink_state", state="ok") == 1

            # The account refused: the SMS waits, the depth says so, errors count by code.
            await standin.set_faults(force="ERROR_WRONG_KEY")
            hub.inject(0, "+79161234567", "code after the key broke")
            await until(agent, lambda s: value(s, "simedge_uplink_state", state="paused") == 1)
            await until(agent, lambda s: value(s, "simedge_outbox_depth") == 1)
            paused = await scrape(agent)
            assert value(paused, "simedge_sms_received_total") == 6
            assert value(paused, "simedge_uplink_errors_total", code="ERROR_WRONG_KEY") >= 1
            assert value(paused, "simedge_sms_forwarded_total") == 3

        # A restart: the counters start again, the depth is read from the store at once,
        # a failed modem is counted as such, and the healed uplink drains to 0.
        async with running(config, tmp_path) as agent:
            await until(agent, lambda s: value(s, "simedge_outbox_depth") == 1)
            restarted = await scrape(agent)
            assert value(restarted, "simedge_sms_received_total") == 0
            await until(agent, lambda s: value(s, "simedge_modems", state="ready") == 2)
            await standin.set_faults(clear=True)
            await until(
                agent,
                lambda s: (
                    value(s, "simedge_outbox_depth") == 0
                    and value(s, "simedge_sms_forwarded_total") == 1
                ),
                seconds=60.0,
            )
            healed = await scrape(agent)
            assert value(healed, "simedge_sims_online") == len(standin.state.online) == 2

            # A modem that stops answering climbs the recovery ladder to "failed"; its
            # number leaves the list OnlineSim has, and the gauge follows OnlineSim.
            hub.fault(1, "hang")
            await until(
                agent,
                lambda s: (
                    value(s, "simedge_modems", state="failed") == 1
                    and value(s, "simedge_modems", state="ready") == 1
                ),
                seconds=30.0,
            )
            await until(agent, lambda s: value(s, "simedge_sims_online") == 1)
            failed = await scrape(agent)
            assert value(failed, "simedge_sims_online") == len(standin.state.online)
            hub.fault(1, "clear")
            await until(
                agent, lambda s: value(s, "simedge_modems", state="ready") == 2, seconds=30.0
            )
    finally:
        await standin.stop()
        await hub.stop()
