"""The fleet's alert rules (deploy/prometheus/simedge-alerts.yml) run by Prometheus's own
rule tester, ``promtool test rules`` (Debian package ``prometheus``; skipped, saying so,
where it is not installed).

Two sites feed every test: shop-7, which breaks one way at minute 20 (or stays healthy),
and shop-8, healthy throughout. For each broken site the test asserts, for EVERY alert in
the rules, that exactly the expected ones fire, and only for shop-7 (promtool compares the
whole list of firing alerts with labels and rendered annotations). A healthy quiet site,
looked at every hour of a simulated day, fires none.

The series are those the agent exports (agent/webhook/metrics.py) with the labels the
fleet's targets add (job, instance, site); a site whose agent is down has only ``up``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML comes with ansible-core")
from tests.deploy import fleet  # noqa: E402 (needs PyYAML)

REPO = Path(__file__).resolve().parents[2]
RULES = fleet.RULES
DAY = 24 * 60  # minutes
SPAN = DAY + 60  # samples per series, one a minute
BREAK_AT = 20  # minute at which shop-7 breaks
LOOK_AT = 90  # minute at which the broken site's alerts are read
BROKEN, HEALTHY = "shop-7", "shop-8"
URL = "https://relay.example.net/shop-7"
ICCID = "89701011234567890123"
GiB = 2**30


def alert_names() -> list[str]:
    return list(fleet.rule_expressions())


def values(samples: list[float | None]) -> str:
    """promtool's series notation, one sample a minute; None is a missing sample."""
    return " ".join("_" if sample is None else format(sample, "g") for sample in samples)


@dataclass
class Site:
    """One site's series, minute by minute; ``scraped`` False: the agent is gone."""

    name: str
    series: dict[str, list[float | None]] = field(default_factory=dict)

    def set(self, series: str, value: float | None, since: int = 0) -> None:
        samples = self.series.setdefault(series, [None] * SPAN)
        for minute in range(since, SPAN):
            samples[minute] = value

    def counter(
        self, series: str, every: int, since: int = 0, until: int = SPAN, step: float = 1
    ) -> None:
        """A counter that grows by ``step`` every ``every`` minutes from ``since`` to
        ``until`` and stays flat after (0: flat)."""
        samples = self.series.setdefault(series, [0.0] * SPAN)
        for minute in range(since, SPAN):
            grew = every and since < minute < until and (minute - since) % every == 0
            samples[minute] = (samples[minute - 1] or 0.0) + step if grew else samples[minute - 1]

    def gone(self, since: int, keep_up: bool) -> None:
        """No more samples from ``since``: a failed scrape (``up`` 0) or nothing at all."""
        for name, samples in self.series.items():
            if name.startswith("up{"):
                continue
            samples[since:] = [None] * (SPAN - since)
        self.set(self.label("up"), 0 if keep_up else None, since)

    def label(self, metric: str, **extra: str) -> str:
        labels = site_labels(self.name, **extra)
        return metric + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def healthy(name: str) -> Site:
    """A quiet, healthy site: an SMS every 40 minutes forwarded within the minute (the
    outbox holds it for that minute), a timeout to OnlineSim every 3 hours, every other
    figure as a working site shows it."""
    site = Site(name)
    site.set(site.label("up"), 1)
    site.set(site.label("simedge_site_info", name=name), 1)
    for state, count in (("ready", 2), ("failed", 0), ("recovering", 0), ("probing", 0)):
        site.set(site.label("simedge_modems", state=state), count)
    site.set(site.label("simedge_sims_online"), 2)
    depth = [1.0 if minute % 40 == 1 else 0.0 for minute in range(SPAN)]
    site.series[site.label("simedge_outbox_depth")] = list(depth)
    for counter in ("simedge_sms_received_total", "simedge_sms_forwarded_total"):
        site.counter(site.label(counter), every=40)
    for le in ("0.5", "1.0", "+Inf"):
        site.counter(site.label("simedge_delivery_latency_seconds_bucket", le=le), every=40)
    for counter in ("simedge_sms_dead_total", "simedge_sms_blocked_total"):
        site.counter(site.label(counter), every=0)
    site.counter(site.label("simedge_uplink_errors_total", code="ReadTimeout"), every=180)
    site.counter(site.label("simedge_webhook_requests_total", outcome="refused"), every=120)
    for state in ("ok", "backing_off", "paused", "store_not_writable"):
        site.set(site.label("simedge_uplink_state", state=state), 1 if state == "ok" else 0)
    site.set(site.label("simedge_store_writable"), 1)
    site.set(site.label("simedge_public_url_up", url=f"https://relay.example.net/{name}"), 1)
    site.set(site.label("simedge_sims_swap_due"), 0)
    site.set(site.label("simedge_sim_balance_low", slot="1.1.1", iccid=ICCID), 0)
    site.set(site.label("simedge_data_free_bytes"), 9 * GiB)
    site.set(site.label("simedge_data_size_bytes"), 29 * GiB)
    site.set(site.label("simedge_clock_synchronized"), 1)
    return site


def site_labels(site: str, **extra: str) -> dict[str, str]:
    return {"job": "simedge", "instance": f"{site}:8085", "site": site, **extra}


def expected(severity: str, summary: str, description: str | None = None, **extra: str) -> Any:
    annotations = {"summary": summary}
    if description is not None:
        annotations["description"] = description
    return {
        "exp_labels": {**site_labels(BROKEN, **extra), "severity": severity},
        "exp_annotations": annotations,
    }


def broken_down(site: Site) -> None:
    site.gone(BREAK_AT, keep_up=True)


def broken_silent(site: Site) -> None:
    site.gone(BREAK_AT, keep_up=False)


def uplink_stops(site: Site, state: str, code: str, error_every: int) -> None:
    """From BREAK_AT nothing is forwarded: the uplink is in ``state``, a call fails with
    ``code`` every ``error_every`` minutes, and an SMS every 20 minutes waits."""
    site.set(site.label("simedge_uplink_state", state="ok"), 0, BREAK_AT)
    site.set(site.label("simedge_uplink_state", state=state), 1, BREAK_AT)
    site.counter(site.label("simedge_sms_forwarded_total"), every=0, since=BREAK_AT)
    site.counter(site.label("simedge_uplink_errors_total", code=code), every=error_every)
    depth = site.series[site.label("simedge_outbox_depth")]
    for minute in range(BREAK_AT, SPAN):
        depth[minute] = 1 + (minute - BREAK_AT) // 20


def broken_paused(site: Site) -> None:
    """OnlineSim refuses the key: one probe every 5 minutes."""
    uplink_stops(site, "paused", "ERROR_WRONG_KEY", error_every=5)


def broken_stalled(site: Site) -> None:
    """OnlineSim unreachable: the link backs off, one probe a minute."""
    uplink_stops(site, "backing_off", "ConnectError", error_every=1)


def broken_flaky(site: Site) -> None:
    """OnlineSim answers 502 to 5 calls a minute; retries get the SMS through."""
    site.counter(
        site.label("simedge_uplink_errors_total", code="HTTP_502"), every=1, since=BREAK_AT, step=5
    )


def broken_modem(site: Site) -> None:
    site.set(site.label("simedge_modems", state="ready"), 1, BREAK_AT)
    site.set(site.label("simedge_modems", state="failed"), 1, BREAK_AT)
    site.set(site.label("simedge_sims_online"), 1, BREAK_AT)


def broken_swap(site: Site) -> None:
    site.set(site.label("simedge_sims_swap_due"), 1, BREAK_AT)


def broken_balance(site: Site) -> None:
    site.set(site.label("simedge_sim_balance_low", slot="1.1.1", iccid=ICCID), 1, BREAK_AT)


def broken_disk(site: Site) -> None:
    site.set(site.label("simedge_data_free_bytes"), 29 * GiB / 40, BREAK_AT)


def broken_store(site: Site) -> None:
    site.set(site.label("simedge_store_writable"), 0, BREAK_AT)
    site.set(site.label("simedge_uplink_state", state="ok"), 0, BREAK_AT)
    site.set(site.label("simedge_uplink_state", state="store_not_writable"), 1, BREAK_AT)


def broken_clock(site: Site) -> None:
    site.set(site.label("simedge_clock_synchronized"), 0, BREAK_AT)


def broken_url(site: Site) -> None:
    site.set(site.label("simedge_public_url_up", url=URL), 0, BREAK_AT)


def broken_name(site: Site) -> None:
    site.set(site.label("simedge_site_info", name=BROKEN), None, BREAK_AT)
    site.set(site.label("simedge_site_info", name="shop-77"), 1, BREAK_AT)


STALLED = "See the dashboard's uplink state and simedge_uplink_errors_total by code."
SCENARIOS: dict[str, tuple[Any, dict[str, list[Any]]]] = {
    "agent down": (
        broken_down,
        {
            "SimedgeDown": [
                expected(
                    "critical",
                    "simedge on shop-7 does not answer /metrics",
                    "Agent stopped, Pi off or offline. SMS still land on the SIMs and are "
                    "read when the agent is back.",
                )
            ]
        },
    ),
    "site silent": (
        broken_silent,
        {
            "SimedgeSiteSilent": [
                expected(
                    "critical",
                    "shop-7 sends no metrics",
                    "The site's Prometheus agent stopped pushing: Pi off, or its uplink to "
                    "the internet is down.",
                )
            ]
        },
    ),
    "uplink paused": (
        broken_paused,
        {
            "SimedgeUplinkPaused": [
                expected(
                    "critical",
                    "shop-7: OnlineSim refuses the account; nothing is forwarded",
                    "simedge status on the site names the code (ERROR_WRONG_KEY, "
                    "ACCOUNT_BLOCKED, ...). SMS are kept.",
                    state="paused",
                )
            ],
            "SimedgeUplinkStalled": [
                expected(
                    "critical", "shop-7: 4 SMS waiting, none forwarded for 10 minutes", STALLED
                )
            ],
        },
    ),
    "outbox stalled": (
        broken_stalled,
        {
            "SimedgeUplinkStalled": [
                expected(
                    "critical", "shop-7: 4 SMS waiting, none forwarded for 10 minutes", STALLED
                )
            ],
        },
    ),
    "OnlineSim flaky": (
        broken_flaky,
        {
            "SimedgeUplinkErrors": [
                expected(
                    "warning", "shop-7: OnlineSim calls failing with HTTP_502", code="HTTP_502"
                )
            ],
        },
    ),
    "modem failed 15 minutes": (
        broken_modem,
        {
            "SimedgeModemFailed": [
                expected(
                    "warning",
                    "shop-7: 1 modem(s) failed",
                    "The recovery ladder gave up; the dashboard names the slot. hardware.md, "
                    "troubleshooting.",
                    state="failed",
                )
            ]
        },
    ),
    "SIM swap due": (
        broken_swap,
        {"SimedgeSimSwapDue": [expected("warning", "shop-7: 1 SIM(s) to swap")]},
    ),
    "balance low": (
        broken_balance,
        {
            "SimedgeSimBalanceLow": [
                expected(
                    "warning",
                    f"shop-7: SIM {ICCID} in slot 1.1.1 has a low balance",
                    slot="1.1.1",
                    iccid=ICCID,
                )
            ]
        },
    ),
    "disk nearly full": (
        broken_disk,
        {
            "SimedgeDiskNearlyFull": [
                expected(
                    "warning",
                    "shop-7: 2.5% of the data disk free",
                    "Below 10%. The store keeps 30 days of SMS by default ([store] "
                    "retention_days).",
                )
            ]
        },
    ),
    "store not writable": (
        broken_store,
        {
            "SimedgeStoreNotWritable": [
                expected(
                    "critical",
                    "shop-7: the store cannot write (disk full, read-only or failing)",
                    "New SMS stay on the SIMs until it can; see the journal and simedge db check.",
                )
            ]
        },
    ),
    "clock unsynchronised": (
        broken_clock,
        {
            "SimedgeClockUnsynchronized": [
                expected(
                    "warning",
                    "shop-7: the clock is not synchronised (NTP)",
                    "timedatectl status on the site; check systemd-timesyncd and that UDP 123 "
                    "goes out.",
                )
            ]
        },
    ),
    "public URL down": (
        broken_url,
        {
            "SimedgePublicUrlDown": [
                expected(
                    "critical",
                    f"shop-7: OnlineSim cannot reach {URL}",
                    "simedge status on the site shows the last error; journalctl -u "
                    "simedge-tunnel for a relay site.",
                    url=URL,
                )
            ]
        },
    ),
    "site misnamed": (
        broken_name,
        {
            "SimedgeSiteMisnamed": [
                expected(
                    "warning",
                    "shop-7: the agent calls itself shop-77",
                    "Set [site] name on the site and the site label in the fleet's targets "
                    "to the same name (Ansible writes both from the inventory).",
                    name="shop-77",
                )
            ]
        },
    ),
}


def run_promtool(tmp_path: Path, sites: list[Site], checks: list[dict[str, Any]]) -> None:
    rules = tmp_path / RULES.name
    rules.write_text(RULES.read_text())
    series = [
        {"series": name, "values": values(samples)}
        for site in sites
        for name, samples in site.series.items()
    ]
    test = {
        "rule_files": [rules.name],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": checks}],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    fleet.promtool("test", "rules", "test.yml", cwd=tmp_path)


def test_every_broken_site_fires_what_it_names_and_the_list_is_complete() -> None:
    fired = {name for _, firing in SCENARIOS.values() for name in firing}
    # Alerts without a scenario of their own fire on rates and quantiles a real fault
    # makes (the stall scenario fires SimedgeUplinkErrors); each is in some scenario, or
    # named here with the reason it has none.
    untested = set(alert_names()) - fired
    assert untested == {
        "SimedgeOutboxBacklog",  # the stall's depth, in numbers: no new behaviour
        "SimedgeModemsRecoveringOften",
        "SimedgeNoSimOnline",
        "SimedgeDeadLetters",
        "SimedgeSlowDelivery",
        "SimedgeWebhookProbed",
    }


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_broken_site_fires_exactly_its_alerts(tmp_path: Path, scenario: str) -> None:
    breaking, firing = SCENARIOS[scenario]
    broken = healthy(BROKEN)
    breaking(broken)
    checks = [
        {"eval_time": f"{LOOK_AT}m", "alertname": name, "exp_alerts": firing.get(name, [])}
        for name in alert_names()
    ]
    # Before the fault, nothing: the alerts are about the fault, not about the setup.
    checks += [
        {"eval_time": f"{BREAK_AT - 1}m", "alertname": name, "exp_alerts": []}
        for name in alert_names()
    ]
    run_promtool(tmp_path, [broken, healthy(HEALTHY)], checks)


def test_no_alert_fires_on_healthy_quiet_sites_over_a_day(tmp_path: Path) -> None:
    checks = [
        {"eval_time": f"{minute}m", "alertname": name, "exp_alerts": []}
        for minute in range(0, DAY + 1, 30)
        for name in alert_names()
    ]
    run_promtool(tmp_path, [healthy(BROKEN), healthy(HEALTHY)], checks)
