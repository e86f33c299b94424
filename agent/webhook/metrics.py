"""The agent's metrics, in the Prometheus text format, for fleets that scrape many sites.

The rest of the agent updates one :class:`Metrics` object (modem workers, the store, the
uplink pump); the webhook listener renders it at ``/metrics``. It uses
``prometheus_client`` with a registry of its own, not the library's global one: two
agents in one test process, or a library that registers its own collectors, must not mix
their series into ours.

Families (all prefixed ``simedge_``):

    simedge_modems{state}                   modems by state (every state present, 0 or more)
    simedge_sims_online                     numbers in the last list OnlineSim accepted
    simedge_sms_received_total              SMS committed to the store (blocked ones too)
    simedge_sms_forwarded_total             SMS accepted by OnlineSim
    simedge_sms_blocked_total               SMS withheld by the blocking rules
    simedge_sms_dead_total                  SMS given up on (dead letters)
    simedge_outbox_depth                    SMS waiting to be forwarded
    simedge_uplink_errors_total{code}       failed OnlineSim calls by API or network code
    simedge_uplink_state{state}             1 for the uplink's condition now, 0 for the others
    simedge_store_writable                  1 while store writes commit, 0 while they fail
    simedge_delivery_latency_seconds        SMS receipt to OnlineSim's acceptance
    simedge_webhook_requests_total{outcome} webhook calls answered or refused
    simedge_public_url_up{url}              1 when the agent reached itself by its public URL
    simedge_public_url_since_timestamp_seconds{url}  when that last changed (unix time)
    simedge_site_info{name}                 1, labelled with the site's [site] name
    simedge_sims_swap_due                   SIMs OnlineSim listed for take-off, not swapped yet
    simedge_data_free_bytes                 space left for the store (read at each scrape)
    simedge_data_size_bytes                 size of the file system the store is on
    simedge_clock_synchronized              1 while the kernel says NTP keeps the clock
    simedge_sim_balance{slot,iccid,currency}  the balance of each SIM in a slot now
    simedge_sim_balance_low{slot,iccid}     1 when that balance is below [sims] low_balance

The last six are read when /metrics is rendered (``Gauge.set_function``), not pushed:
they are the truth at the moment of the scrape, and cost a syscall or a dict's length.
docs/metrics.md says what drives each series and which alert reads it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from agent.status import ModemState, ModemStatus, UplinkCondition

CONTENT_TYPE = CONTENT_TYPE_LATEST
# An SMS carries a code somebody is waiting for: most should land in well under a second;
# the tail shows a flaky uplink (retries with back-off) up to a minute.
DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Error codes come partly from the server's answers; past this many distinct codes, new
# ones are counted as OTHER so that a misbehaving peer cannot grow the series without end.
MAX_ERROR_CODES = 32
OTHER_CODE = "OTHER"
WEBHOOK_OUTCOMES = ("answered", "refused")


class Metrics:
    """The metric set of one agent; cheap to update from any task of the event loop."""

    def __init__(self) -> None:
        # Without this, every counter and histogram gets a ``_created`` twin, which the
        # text format shows as one more gauge series per site for nobody's benefit. The
        # switch is process-wide; this registry is the only user of the library here.
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self._modems = Gauge("simedge_modems", "Modems by state.", ["state"], registry=registry)
        for state in ModemState:
            self._modems.labels(state=state.value).set(0)
        self._sims_online = Gauge(
            "simedge_sims_online",
            "Numbers in the last list OnlineSim accepted (sendNumbersOnline answered 1).",
            registry=registry,
        )
        self._received = Counter(
            "simedge_sms_received",
            "SMS committed to the store, whole (blocked ones included).",
            registry=registry,
        )
        self._forwarded = Counter(
            "simedge_sms_forwarded", "SMS accepted by OnlineSim.", registry=registry
        )
        self._blocked = Counter(
            "simedge_sms_blocked", "SMS withheld by the blocking rules.", registry=registry
        )
        self._dead = Counter(
            "simedge_sms_dead", "SMS given up on, kept as dead letters.", registry=registry
        )
        self._outbox_depth = Gauge(
            "simedge_outbox_depth", "SMS waiting to be forwarded.", registry=registry
        )
        self._uplink_errors = Counter(
            "simedge_uplink_errors",
            "Failed OnlineSim calls by API or network code.",
            ["code"],
            registry=registry,
        )
        self._error_codes: set[str] = set()
        self._uplink_state = Gauge(
            "simedge_uplink_state",
            "1 for the uplink's condition now (ok, backing_off, paused, store_not_writable).",
            ["state"],
            registry=registry,
        )
        self.set_uplink_state(UplinkCondition.OK)
        self._store_writable = Gauge(
            "simedge_store_writable",
            "1 while writes to the store commit, 0 while they fail (full, read-only, I/O).",
            registry=registry,
        )
        self._store_writable.set(1)
        self._delivery_latency = Histogram(
            "simedge_delivery_latency_seconds",
            "Seconds from an SMS committed to the store to OnlineSim accepting it.",
            buckets=DELIVERY_BUCKETS,
            registry=registry,
        )
        self._webhook_requests = Counter(
            "simedge_webhook_requests",
            "Webhook calls answered, or refused for a wrong or missing token.",
            ["outcome"],
            registry=registry,
        )
        for outcome in WEBHOOK_OUTCOMES:
            self._webhook_requests.labels(outcome=outcome)
        # Labelled by the URL so that a site without one exports no sample at all (and no
        # "down" alert fires for a site reached by nothing but its own LAN).
        self._public_url_up = Gauge(
            "simedge_public_url_up",
            "1 when the agent reached its own /healthz by [webhook] public_url, else 0.",
            ["url"],
            registry=registry,
        )
        self._public_url_since = Gauge(
            "simedge_public_url_since_timestamp_seconds",
            "Unix time at which simedge_public_url_up took its present value.",
            ["url"],
            registry=registry,
        )

        self._site_info = Gauge(
            "simedge_site_info",
            "1, labelled with the site's name ([site] name, default the hostname).",
            # Not "site": that is the label the fleet's targets give every series, and a
            # scraped label of the same name would be renamed exported_site. The rule
            # SimedgeSiteMisnamed compares the two.
            ["name"],
            registry=registry,
        )
        self._swap_due = Gauge(
            "simedge_sims_swap_due",
            "SIMs takeOffNumbers listed as earned out whose swap nobody has confirmed yet.",
            registry=registry,
        )
        self._data_free = Gauge(
            "simedge_data_free_bytes",
            "Bytes free for the store on the data folder's file system (read at the scrape).",
            registry=registry,
        )
        self._data_size = Gauge(
            "simedge_data_size_bytes",
            "Size in bytes of the data folder's file system.",
            registry=registry,
        )
        self._clock_synchronized = Gauge(
            "simedge_clock_synchronized",
            "1 while the kernel says a time daemon keeps the clock (adjtimex), else 0.",
            registry=registry,
        )

        # Declared from the start (no samples until read_sim_balances gives the modems).
        self._sim_balances = _SimBalances(lambda: [], 0.0)
        registry.register(self._sim_balances)

    def set_site(self, name: str) -> None:
        self._site_info.clear()
        self._site_info.labels(name=name).set(1)

    def read_swap_due(self, count: Callable[[], int]) -> None:
        """``count()`` is read at each scrape: the open take-off marks."""
        self._swap_due.set_function(count)

    def read_data_folder(self, folder: Path) -> None:
        """The file system of ``folder`` is measured at each scrape (one statvfs)."""

        def usage(field: str) -> float:
            # A failing statvfs must not fail the whole /metrics (the fleet would see the
            # site down): NaN, which no alert compares true, and the rest of the page.
            try:
                return float(getattr(shutil.disk_usage(folder), field))
            except OSError:
                return float("nan")

        self._data_free.set_function(lambda: usage("free"))
        self._data_size.set_function(lambda: usage("total"))

    def read_clock(self, synchronized: Callable[[], bool | None]) -> None:
        """``synchronized()`` at each scrape; None (cannot tell) shows as NaN, which no
        alert compares true."""

        def value() -> float:
            answer = synchronized()
            return float("nan") if answer is None else float(answer)

        self._clock_synchronized.set_function(value)

    def set_modems(self, counts: Mapping[ModemState | str, int]) -> None:
        """Replace the modem counts; a state not in ``counts`` has none."""
        by_state = {ModemState(state): count for state, count in counts.items()}
        for state in ModemState:
            self._modems.labels(state=state.value).set(by_state.get(state, 0))

    def set_sims_online(self, count: int) -> None:
        self._sims_online.set(count)

    def sms_stored(self, blocked: bool) -> None:
        """One SMS made whole in the store (``Store.on_message_stored``): received, and
        blocked too when a block rule kept it from the uplink."""
        self._received.inc()
        if blocked:
            self._blocked.inc()

    def sms_forwarded(self, count: int = 1) -> None:
        self._forwarded.inc(count)

    def sms_dead(self, count: int = 1) -> None:
        self._dead.inc(count)

    def set_outbox_depth(self, depth: int) -> None:
        self._outbox_depth.set(depth)

    def uplink_error(self, code: str) -> None:
        """Count one failed call under its ``UplinkError.code`` (bounded, see MAX_ERROR_CODES)."""
        if code not in self._error_codes:
            if len(self._error_codes) >= MAX_ERROR_CODES:
                code = OTHER_CODE
            self._error_codes.add(code)
        self._uplink_errors.labels(code=code).inc()

    def set_uplink_state(self, state: UplinkCondition | str) -> None:
        current = UplinkCondition(state)
        for each in UplinkCondition:
            self._uplink_state.labels(state=each.value).set(1 if each is current else 0)

    def set_store_writable(self, writable: bool) -> None:
        self._store_writable.set(1 if writable else 0)

    def observe_delivery(self, seconds: float) -> None:
        """One SMS delivered ``seconds`` after it was committed to the store."""
        self._delivery_latency.observe(seconds)

    def webhook_answered(self) -> None:
        self._webhook_requests.labels(outcome="answered").inc()

    def webhook_refused(self) -> None:
        """One webhook call with a wrong or missing token: a scanner, or a wrong URL."""
        self._webhook_requests.labels(outcome="refused").inc()

    def set_public_url(self, url: str, up: bool, since: float) -> None:
        """The result of the public URL checks (agent/webhook/reach.py)."""
        self._public_url_up.labels(url=url).set(1 if up else 0)
        self._public_url_since.labels(url=url).set(since)

    def read_sim_balances(
        self, modems: Callable[[], list[ModemStatus]], low_balance: float
    ) -> None:
        """The balance of every SIM in a slot now, read from ``modems()`` at each scrape:
        one series per slot at most, and a SIM taken out leaves no stale series."""
        self._sim_balances.modems = modems
        self._sim_balances.low = low_balance

    def render(self) -> bytes:
        """The whole set in the Prometheus text exposition format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)


class _SimBalances(Collector):
    """simedge_sim_balance and simedge_sim_balance_low, from the live modem statuses."""

    def __init__(self, modems: Callable[[], list[ModemStatus]], low_balance: float) -> None:
        self.modems = modems
        self.low = low_balance

    def describe(self) -> list[GaugeMetricFamily]:
        return list(self._families())

    def collect(self) -> list[GaugeMetricFamily]:
        return list(self._families(self.modems()))

    def _families(self, modems: Iterable[ModemStatus] = ()) -> tuple[GaugeMetricFamily, ...]:
        amount = GaugeMetricFamily(
            "simedge_sim_balance",
            "The SIM's balance as its operator last answered the balance USSD.",
            labels=["slot", "iccid", "currency"],
        )
        low = GaugeMetricFamily(
            "simedge_sim_balance_low",
            "1 when the SIM's balance is below [sims] low_balance, else 0.",
            labels=["slot", "iccid"],
        )
        for status in modems:
            if status.iccid is None or status.balance is None:
                continue
            currency = status.balance_currency or ""
            amount.add_metric([status.slot, status.iccid, currency], status.balance)
            low.add_metric([status.slot, status.iccid], float(status.balance < self.low))
        return amount, low
