"""Prometheus exposition: custom collectors that render the latest RuntimeState on every scrape.

Nothing is copied into prometheus_client metric objects between scrapes: `collect()` reads the
runtime as it is (one event loop, so a scrape sees whole snapshots) and builds fresh families.
That means no clear-and-refill, no series left behind for runs the daemon no longer watches.

The registry (`build_registry`) holds, in this order: the per-subject series of every run and rule
(monitor.exporter.run_series; the server caches them between scrapes, see
monitor.exporter.scrape_cache), then the wallet's and the monitor's own families (this module and
monitor.exporter.self_collector), the API request metrics and the process collector, which are small
and rendered fresh on every scrape.

Conventions (also in the README's metrics section):
- Totals the API reports as running sums (cost, tokens) are counters, as node_exporter does for
  kernel counters: `rate()` works and a reset (an API correction) reads as a counter reset.
- `prime_monitor_last_poll_success_timestamp_seconds` (and the wallet and heartbeat ones) are 0
  before the first success, so `time() - x > 300` fires for a daemon that never polled (bad key).
- `prime_wallet_runway_seconds` is omitted while the runway is unknown (None) and rendered as
  given otherwise, +Inf included (no spend): Prometheus stores +Inf and `< 86400` compares fine.
  NaN values are never exported.
- Label values are user data, cleaned by monitor.exporter.labels.label_value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from monitor import __version__
from monitor.clock import SYSTEM_CLOCK, Clock
from monitor.exporter.labels import MAX_NAME_LABEL_CHARS, label_value
from monitor.exporter.live import RuntimeState
from monitor.exporter.run_series import RunSeriesCollector

__all__ = ["MAX_NAME_LABEL_CHARS", "MonitorCollector", "MonitorRegistry", "build_registry", "label_value"]


def _finite_or_inf(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


class MonitorCollector(Collector):
    """The wallet's and the monitor's own families, and the API request metrics: small, rendered every scrape."""

    def __init__(self, runtime: RuntimeState, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._runtime = runtime
        # Kept for the interface: every exported time is a timestamp from the runtime (PromQL does
        # `time() - x`), so a scrape renders the same bytes whatever the wall clock says.
        self._clock = clock

    def collect(self) -> Iterable[Metric]:
        yield from self._wallet_families()
        yield from self._monitor_families()
        yield from self._request_families()

    def _wallet_families(self) -> Iterator[Metric]:
        runtime = self._runtime
        balance = GaugeMetricFamily(
            "prime_wallet_balance_usd", "Wallet balance in USD.", labels=["wallet_id", "team_id"]
        )
        runway = GaugeMetricFamily(
            "prime_wallet_runway_seconds",
            "Seconds until the wallet is empty at the recent spend rate (+Inf: no spend).",
            labels=["wallet_id"],
        )
        spend = GaugeMetricFamily(
            "prime_wallet_spend_usd",
            "Wallet spend in USD over the window of each spend rule.",
            labels=["wallet_id", "rule"],
        )
        wallet = runtime.wallet
        wallet_id = label_value(wallet.wallet_id) if wallet is not None else ""
        if wallet is not None:
            balance.add_metric([wallet_id, label_value(wallet.team_id)], wallet.balance_usd)
            if runtime.wallet_runway_seconds is not None and _finite_or_inf(runtime.wallet_runway_seconds):
                runway.add_metric([wallet_id], runtime.wallet_runway_seconds)
        for rule in sorted(runtime.wallet_spend_usd):
            spend.add_metric([wallet_id, label_value(rule)], runtime.wallet_spend_usd[rule])
        yield from (balance, runway, spend)

    def _monitor_families(self) -> Iterator[Metric]:
        runtime = self._runtime
        alerts = CounterMetricFamily(
            "prime_monitor_alerts_sent", "Alerts announced, by rule and severity.", labels=["rule", "severity"]
        )
        for (rule, severity), count in sorted(runtime.alerts_sent.items()):
            alerts.add_metric([label_value(rule), label_value(severity)], float(count))
        deletions = CounterMetricFamily(
            "prime_monitor_run_deletions", "Run deletion decisions, by rule and outcome.", labels=["rule", "outcome"]
        )
        for (rule, outcome), count in sorted(runtime.deletions.items()):
            deletions.add_metric([label_value(rule), label_value(outcome)], float(count))
        invalid = CounterMetricFamily(
            "prime_monitor_invalid_responses",
            "API responses that could not be parsed or failed validation.",
            labels=["endpoint"],
        )
        for endpoint, count in sorted(runtime.invalid_responses.items()):
            invalid.add_metric([label_value(endpoint)], float(count))
        failed = CounterMetricFamily(
            "prime_monitor_notifications_failed",
            "Notification deliveries that failed, by channel.",
            labels=["channel"],
        )
        # Every configured channel at 0 from the start, so rate() sees the first failure.
        failures = dict.fromkeys(runtime.channels, 0) | dict(runtime.notifications_failed)
        for channel, count in sorted(failures.items()):
            failed.add_metric([label_value(channel)], float(count))
        yield from (alerts, deletions, invalid, failed)
        yield GaugeMetricFamily(
            "prime_monitor_last_poll_success_timestamp_seconds",
            "When a run poll last succeeded (epoch s); 0 before the first.",
            value=runtime.last_poll_success_at or 0.0,
        )
        yield GaugeMetricFamily(
            "prime_monitor_last_wallet_poll_success_timestamp_seconds",
            "When a wallet poll last succeeded (epoch s); 0 before the first.",
            value=runtime.last_wallet_success_at or 0.0,
        )
        yield GaugeMetricFamily(
            "prime_monitor_heartbeat_timestamp_seconds",
            "When the scheduler last ran a job (epoch s); 0 before the first.",
            value=runtime.heartbeat_at or 0.0,
        )
        build = GaugeMetricFamily("prime_monitor_build_info", "The monitor's version. Always 1.", labels=["version"])
        build.add_metric([__version__], 1.0)
        yield build

    def _request_families(self) -> Iterator[Metric]:
        yield from self._runtime.requests.collect()


class MonitorRegistry(CollectorRegistry):
    """The daemon's registry: `collect()` renders everything, per-subject series first (what
    `generate_latest` uses). The server renders `run_series` through its cache and `rest` fresh."""

    def __init__(self, *, run_series: RunSeriesCollector, rest: list[Collector]) -> None:
        super().__init__(auto_describe=False)
        self.run_series = run_series
        self.rest = _Collectors(rest)
        for collector in (run_series, *rest):
            self.register(collector)


class _Collectors(Collector):
    def __init__(self, collectors: list[Collector]) -> None:
        self._collectors = collectors

    def collect(self) -> Iterable[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


def build_registry(
    runtime: RuntimeState,
    *,
    clock: Clock = SYSTEM_CLOCK,
    include_process: bool = True,
    ready: Callable[[], bool] | None = None,
) -> MonitorRegistry:
    """A fresh registry (never the global one) with the monitor's collectors and, by default, the
    process collector (`process_*`: memory, CPU, fds; Linux only, silent elsewhere). `ready` answers
    whether /readyz says ready (prime_monitor_ready); without it the gauge falls back to the runtime."""
    from monitor.exporter.self_collector import SelfCollector

    rest: list[Collector] = [
        MonitorCollector(runtime, clock=clock),
        SelfCollector(runtime, ready=ready or (lambda: runtime.ready)),
    ]
    if include_process:
        rest.append(ProcessCollector(registry=None))
    return MonitorRegistry(run_series=RunSeriesCollector(runtime), rest=rest)
