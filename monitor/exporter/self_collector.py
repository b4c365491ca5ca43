"""Prometheus families about the monitor's own sight: read failures, readings the reading model
refused or accepted as corrections, why it is blind, and its store (each run's own read state is a
per-subject series: monitor.exporter.run_series).

A second collector beside monitor.exporter.collector.MonitorCollector, rendered from the same RuntimeState on
every scrape. Failure counters are pre-initialised at 0 for every endpoint and kind, so `rate()` and
`increase()` see the first failure instead of a series that appears already at 1.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.exporter.health import CAUSES
from monitor.exporter.labels import label_value as _label
from monitor.exporter.live import RuntimeState

READ_ENDPOINTS = ("usage", "wallet")
FAILURE_KINDS = (
    "held",
    "rejected",
    "invalid_response",
    "not_found",
    "forbidden",
    "unauthorized",
    "unaddressable",
    "rate_limited",
    "server_error",
    "unreachable",
    "timeout",
    "internal_error",
)
REJECTION_REASONS = {
    "usage": ("invalid", "implausible", "decrease_not_confirmed"),
    "wallet": ("invalid", "negative_not_confirmed"),
}


class SelfCollector(Collector):
    def __init__(self, runtime: RuntimeState, *, ready: Callable[[], bool] | None = None) -> None:
        self._runtime = runtime
        self._ready = ready

    def collect(self) -> Iterable[Metric]:
        yield from self._reads()
        yield from self._sight()
        yield from self._actions()

    def _actions(self) -> Iterator[Metric]:
        """Enforcement's mode and countdowns, the outbox, config reloads, and the wallet's spend."""
        runtime = self._runtime
        mode = GaugeMetricFamily(
            "prime_monitor_enforcement_mode",
            "How enforcement acts now (dry_run, live, or stopped after the API refused the key). Always 1.",
            labels=["mode"],
        )
        mode.add_metric([runtime.enforcement_mode], 1.0)
        pending = GaugeMetricFamily(
            "prime_monitor_pending_deletes", "Delete countdowns in progress, by rule.", labels=["rule"]
        )
        per_rule = Counter(rule for _, rule in runtime.pending_deadlines)
        for rule in sorted(per_rule):
            pending.add_metric([_label(rule)], float(per_rule[rule]))
        deadline = GaugeMetricFamily(
            "prime_run_delete_deadline_timestamp_seconds",
            "When a run's announced delete is due (epoch s), while its countdown is in progress.",
            labels=["run_id", "rule"],
        )
        for (run_id, rule), at in sorted(runtime.pending_deadlines.items()):
            deadline.add_metric([_label(run_id), _label(rule)], at)
        backlog = GaugeMetricFamily(
            "prime_monitor_outbox_backlog", "Notifications waiting to be delivered, by channel.", labels=["channel"]
        )
        oldest = GaugeMetricFamily(
            "prime_monitor_outbox_oldest_queued_timestamp_seconds",
            "When the oldest waiting notification of a channel was queued (epoch s); absent when none waits.",
            labels=["channel"],
        )
        superseded = CounterMetricFamily(
            "prime_monitor_notifications_superseded",
            "Late alerts folded into a newer message of their thread instead of sent on their own.",
            labels=["channel"],
        )
        for channel in sorted(set(runtime.channels) | set(runtime.outbox)):
            waiting, queued_at = runtime.outbox.get(channel, (0, None))
            backlog.add_metric([_label(channel)], float(waiting))
            if queued_at is not None:
                oldest.add_metric([_label(channel)], queued_at)
            superseded.add_metric([_label(channel)], float(runtime.notifications_superseded.get(channel, 0)))
        reloads = CounterMetricFamily(
            "prime_monitor_config_reloads", "Config reloads (SIGHUP), by outcome.", labels=["outcome"]
        )
        for outcome in ("applied", "rejected"):
            reloads.add_metric([outcome], float(runtime.reloads.get(outcome, 0)))
        spend = CounterMetricFamily(
            "prime_wallet_spent_usd",
            "Money the wallet lost since the monitor started (the sum of balance decreases; top-ups ignored).",
            labels=["wallet_id", "team_id"],
        )
        wallet = runtime.wallet
        for wallet_id, spent in sorted(runtime.wallet_spend_total.items()):
            team = wallet.team_id if wallet is not None and wallet.wallet_id == wallet_id else None
            spend.add_metric([_label(wallet_id), _label(team)], spent)
        skipped = CounterMetricFamily(
            "prime_monitor_job_runs_skipped",
            "Scheduled runs of a job skipped because its previous run had not finished (a slow job or a busy"
            " event loop; the next run follows on time), by job.",
            labels=["job"],
        )
        for job, count in sorted(runtime.jobs_skipped.items()):
            skipped.add_metric([_label(job)], float(count))
        yield from (mode, pending, deadline, backlog, oldest, superseded, reloads, spend, skipped)
        yield GaugeMetricFamily(
            "prime_monitor_config_last_reload_success",
            "1 if the last config reload applied (also before any reload), 0 if it was rejected.",
            value=0.0 if runtime.last_reload_ok is False else 1.0,
        )

    def _reads(self) -> Iterator[Metric]:
        runtime = self._runtime
        failures = CounterMetricFamily(
            "prime_monitor_read_failures",
            "Reads of a run's usage or of the wallet that gave nothing usable, by endpoint and kind.",
            labels=["endpoint", "kind"],
        )
        counts = dict.fromkeys(((e, k) for e in READ_ENDPOINTS for k in FAILURE_KINDS), 0)
        counts.update(runtime.read_failures)
        for (endpoint, kind), count in sorted(counts.items()):
            failures.add_metric([_label(endpoint), _label(kind)], float(count))
        rejected = CounterMetricFamily(
            "prime_monitor_readings_rejected",
            "Readings refused by the reading model (invalid, implausible, a decrease never confirmed).",
            labels=["endpoint", "reason"],
        )
        rejections = dict.fromkeys(((e, r) for e, reasons in REJECTION_REASONS.items() for r in reasons), 0)
        rejections.update(runtime.readings_rejected)
        for (endpoint, reason), count in sorted(rejections.items()):
            rejected.add_metric([_label(endpoint), _label(reason)], float(count))
        corrections = CounterMetricFamily(
            "prime_monitor_corrections",
            "Decreases of a run's totals accepted as billing corrections once the next reading confirmed them.",
            labels=["endpoint"],
        )
        for endpoint in READ_ENDPOINTS:
            corrections.add_metric([endpoint], float(runtime.corrections.get(endpoint, 0)))
        yield from (failures, rejected, corrections)

    def _sight(self) -> Iterator[Metric]:
        runtime = self._runtime
        blind = GaugeMetricFamily(
            "prime_monitor_blind",
            "1 while the monitor is blind for this cause (held past health.blind_after), else 0.",
            labels=["cause", "channel"],
        )
        active = {key.partition(":")[0]: key.partition(":")[2] for key in runtime.blind}
        for cause in CAUSES:
            blind.add_metric([cause, ""], 1.0 if cause in active and not active[cause] else 0.0)
        for key in sorted(runtime.blind):
            cause, _, channel = key.partition(":")
            if channel:
                blind.add_metric([_label(cause), _label(channel)], 1.0)
        self_alerts = CounterMetricFamily(
            "prime_monitor_self_alerts",
            "Messages the monitor sent about itself (monitor_blind, monitor_restored, run_unreadable, run_readable).",
            labels=["cause", "kind"],
        )
        sent = dict.fromkeys(((c, k) for c in CAUSES for k in ("monitor_blind", "monitor_restored")), 0)
        sent |= dict.fromkeys((("run", "run_unreadable"), ("run", "run_readable")), 0)
        sent.update(runtime.self_alerts)
        for (cause, kind), count in sorted(sent.items()):
            self_alerts.add_metric([_label(cause), _label(kind)], float(count))
        yield from (blind, self_alerts)
        yield GaugeMetricFamily(
            "prime_monitor_state_store_ok",
            "1 while the state store reads and writes, else 0.",
            value=0.0 if runtime.store_failing_since is not None else 1.0,
        )
        yield GaugeMetricFamily(
            "prime_monitor_discovery_rows_unread",
            "Wallet billing rows discovery could not read within watch.wallet_rows:"
            " runs billed only there may be missed.",
            value=float(runtime.discovery_rows_unread),
        )
        if self._ready is not None:
            yield GaugeMetricFamily(
                "prime_monitor_ready",
                "1 while /readyz says ready (the monitor can see), else 0.",
                value=1.0 if self._ready() else 0.0,
            )
