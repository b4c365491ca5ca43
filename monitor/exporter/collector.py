"""Prometheus exposition: a custom collector that renders the latest RuntimeState on every scrape.

Nothing is copied into prometheus_client metric objects between scrapes: `collect()` reads the
runtime as it is (one event loop, so a scrape sees whole snapshots) and builds fresh families.
That means no clear-and-refill, no series left behind for runs the daemon no longer watches, and
a scrape costs the same whether the last poll was a second or an hour ago.

Conventions (also in the README's metrics section):
- Totals the API reports as running sums (cost, tokens) are counters, as node_exporter does for
  kernel counters: `rate()` works and a reset (an API correction) reads as a counter reset.
- `prime_monitor_last_poll_success_timestamp_seconds` (and the wallet and heartbeat ones) are 0
  before the first success, so `time() - x > 300` fires for a daemon that never polled (bad key).
- `prime_wallet_runway_seconds` is omitted while the runway is unknown (None) and rendered as
  given otherwise, +Inf included (no spend): Prometheus stores +Inf and `< 86400` compares fine.
  NaN values are never exported.
- Label values are user data: None becomes "", `run_name` and `base_model` are cut to 200
  characters, lone surrogates (possible from JSON) become U+FFFD so encoding never fails, and
  control characters (newlines included) become spaces. Quotes and backslashes are escaped by the
  client library.
"""

from __future__ import annotations

import math
import unicodedata
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
from monitor.exporter.live import RuntimeState
from monitor.rules.catalog import CATALOG
from monitor.snapshots import RunSnapshot

# Long enough for any real run name, short enough that a 1 KB name cannot bloat every scrape.
MAX_NAME_LABEL_CHARS = 200
USAGE_TYPES = ("training", "inference_input", "inference_output")


def _clean_char(char: str) -> str:
    category = unicodedata.category(char)
    if category == "Cs":  # a lone surrogate: cannot be encoded as UTF-8
        return "\ufffd"
    if category == "Cc":  # NUL, CR, tab, newline...: one line in a Grafana legend or a Slack message
        return " "
    return char


def label_value(value: str | None, *, max_chars: int | None = None) -> str:
    """A label value that always encodes and renders: see the module docstring."""
    if value is None:
        return ""
    if max_chars is not None and len(value) > max_chars:
        value = value[:max_chars]
    if value.isascii() and value.isprintable():
        return value  # the common case, checked in C
    return "".join(map(_clean_char, value))


def _finite_or_inf(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def _usage_costs(run: RunSnapshot) -> tuple[float, float, float]:
    return run.training_cost_usd, run.inference_input_cost_usd, run.inference_output_cost_usd


def _usage_tokens(run: RunSnapshot) -> tuple[int, int, int]:
    return run.training_tokens, run.inference_input_tokens, run.inference_output_tokens


def _usage_prices(run: RunSnapshot) -> tuple[float | None, float | None, float | None]:
    return run.training_price_per_mtok, run.inference_input_price_per_mtok, run.inference_output_price_per_mtok


_RULE_LABELS = ["subject", "rule", "scope", "run_id"]


class MonitorCollector(Collector):
    """Renders a RuntimeState as Prometheus families; cheap enough to run on every scrape."""

    def __init__(self, runtime: RuntimeState, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._runtime = runtime
        # Kept for the interface: every exported time is a timestamp from the runtime (PromQL does
        # `time() - x`), so a scrape renders the same bytes whatever the wall clock says.
        self._clock = clock

    def collect(self) -> Iterable[Metric]:
        yield from self._run_families()
        yield from self._rule_families()
        yield from self._wallet_families()
        yield from self._monitor_families()
        yield from self._request_families()

    def _run_families(self) -> Iterator[Metric]:
        runtime = self._runtime
        cost = CounterMetricFamily(
            "prime_run_cost_usd",
            "Cost of a run so far in USD, by usage type. training is the API's figure; the inference_input /"
            " inference_output split is an estimate (the API bills inference as one figure), derived per usage"
            " increment at the prices of the moment.",
            labels=["run_id", "usage_type"],
        )
        tokens = CounterMetricFamily(
            "prime_run_tokens", "Tokens a run has used so far, by usage type.", labels=["run_id", "usage_type"]
        )
        info = GaugeMetricFamily(
            "prime_run_info",
            "A watched run: its name, base model and status. Always 1.",
            labels=["run_id", "run_name", "base_model", "status", "team_id"],
        )
        total_cost = GaugeMetricFamily(
            "prime_run_total_cost_usd", "The API's own total cost of a run in USD.", labels=["run_id"]
        )
        prices = GaugeMetricFamily(
            "prime_run_price_usd_per_mtok",
            "Price snapshotted for a run, USD per million tokens, where known.",
            labels=["run_id", "usage_type"],
        )
        burn = GaugeMetricFamily(
            "prime_run_burn_rate_usd_per_hour", "Recent spend rate of a run in USD per hour.", labels=["run_id"]
        )
        reading = GaugeMetricFamily(
            "prime_run_last_reading_timestamp_seconds",
            "When the latest usage reading of a run arrived (epoch s).",
            labels=["run_id"],
        )
        failures = GaugeMetricFamily(
            "prime_run_poll_consecutive_failures",
            "Failed polls of a run since its last good reading.",
            labels=["run_id"],
        )
        for run_id in sorted(runtime.runs):
            run = runtime.runs[run_id]
            rid = label_value(run_id)
            for usage_type, usage_cost, usage_tokens, price in zip(
                USAGE_TYPES, _usage_costs(run), _usage_tokens(run), _usage_prices(run), strict=True
            ):
                cost.add_metric([rid, usage_type], usage_cost)
                tokens.add_metric([rid, usage_type], float(usage_tokens))
                if price is not None:
                    prices.add_metric([rid, usage_type], price)
            info.add_metric(
                [
                    rid,
                    label_value(run.run_name, max_chars=MAX_NAME_LABEL_CHARS),
                    label_value(run.base_model, max_chars=MAX_NAME_LABEL_CHARS),
                    label_value(run.status),
                    label_value(run.team_id),
                ],
                1.0,
            )
            total_cost.add_metric([rid], run.total_cost_usd)
            reading.add_metric([rid], run.taken_at)
            burn_rate = runtime.burn_rates.get(run_id)
            if burn_rate is not None and _finite_or_inf(burn_rate):
                burn.add_metric([rid], burn_rate)
            health = runtime.health.get(run_id)
            if health is not None:
                failures.add_metric([rid], float(health.consecutive_failures))
        yield from (cost, tokens, info, total_cost, prices, burn, reading, failures)

    def _rule_families(self) -> Iterator[Metric]:
        budget = GaugeMetricFamily(
            "prime_run_budget_usd",
            "The limit of each cost rule that applies to a run, in USD.",
            labels=["run_id", "rule"],
        )
        utilisation = GaugeMetricFamily(
            "prime_rule_utilisation_ratio",
            "Fraction of a rule's limit used (value/limit; limit/value for floors such as a balance).",
            labels=_RULE_LABELS,
        )
        tier = GaugeMetricFamily(
            "prime_rule_tier",
            "Tier a rule is in: 0 within all tiers, 1..n warning tiers, n+1 breached.",
            labels=_RULE_LABELS,
        )
        breached = GaugeMetricFamily(
            "prime_rule_breached", "1 while a rule is breached on its subject, else 0.", labels=_RULE_LABELS
        )
        time_to_budget = GaugeMetricFamily(
            "prime_run_time_to_budget_seconds",
            "Projected seconds until a run reaches a rule's limit at its burn rate.",
            labels=["run_id", "rule"],
        )
        for key in sorted(self._runtime.evaluations):
            evaluation = self._runtime.evaluations[key]
            subject, rule = label_value(evaluation.subject), label_value(evaluation.rule)
            # run_id as its own label (empty for wallet rules): joins prime_run_info without label_replace.
            rule_labels = [subject, rule, evaluation.scope, subject if evaluation.scope == "run" else ""]
            tier.add_metric(rule_labels, float(evaluation.tier))
            breached.add_metric(rule_labels, 1.0 if evaluation.breached else 0.0)
            if evaluation.utilisation is not None and _finite_or_inf(evaluation.utilisation):
                utilisation.add_metric(rule_labels, evaluation.utilisation)
            if evaluation.scope != "run":
                continue
            labels = [subject, rule]
            spec = CATALOG.get(evaluation.metric)
            if spec is not None and spec.unit == "usd" and spec.kind == "total":
                budget.add_metric(labels, evaluation.limit)
            if evaluation.time_to_limit_seconds is not None and _finite_or_inf(evaluation.time_to_limit_seconds):
                time_to_budget.add_metric(labels, evaluation.time_to_limit_seconds)
        yield from (budget, utilisation, tier, breached, time_to_budget)

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


def build_registry(
    runtime: RuntimeState,
    *,
    clock: Clock = SYSTEM_CLOCK,
    include_process: bool = True,
    ready: Callable[[], bool] | None = None,
) -> CollectorRegistry:
    """A fresh registry (never the global one) with the monitor's collectors and, by default, the
    process collector (`process_*`: memory, CPU, fds; Linux only, silent elsewhere). `ready` answers
    whether /readyz says ready (prime_monitor_ready); without it the gauge falls back to the runtime."""
    from monitor.exporter.self_collector import SelfCollector

    registry = CollectorRegistry()
    registry.register(MonitorCollector(runtime, clock=clock))
    registry.register(SelfCollector(runtime, ready=ready or (lambda: runtime.ready)))
    if include_process:
        ProcessCollector(registry=registry)
    return registry
