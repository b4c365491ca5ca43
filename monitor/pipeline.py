"""From a good reading to decisions: evaluate the rules, advance each alert, publish what changed,
and hand breaches of `action: delete` rules to enforcement.

Notifications are published (to the outbox, which drops duplicate keys) before the alert state is
saved, so a crash between the two re-derives the same notification on restart and sends nothing twice.
"""

from __future__ import annotations

from typing import Protocol

import structlog

from monitor.alerts.machine import advance_alert
from monitor.alerts.words import AlertContext
from monitor.clock import Clock
from monitor.config.settings import Settings
from monitor.exporter.live import RuntimeState
from monitor.notify.outbox import OutboxDispatcher
from monitor.readings.model import Verdict
from monitor.records import AlertState, Evaluation
from monitor.rules.catalog import CATALOG
from monitor.rules.config import RunRule, WalletRule
from monitor.rules.evaluate import (
    evaluate_run,
    evaluate_wallet,
    runway_seconds,
    wallet_spend_usd,
)
from monitor.rules.schedule import PollHint, next_poll
from monitor.rules.trend import RunWindow, Trend
from monitor.snapshots import RunSnapshot, WalletSnapshot
from monitor.store.state_store import StateStore

log = structlog.get_logger(__name__)


class BreachObserver(Protocol):
    """Enforcement: told about every evaluation of a rule whose action is delete."""

    async def observe(self, evaluation: Evaluation, snapshot: RunSnapshot, *, corrected: bool = False) -> None: ...


class Pipeline:
    def __init__(
        self,
        *,
        settings: Settings,
        store: StateStore,
        runtime: RuntimeState,
        dispatcher: OutboxDispatcher | None,
        clock: Clock,
        enforcer: BreachObserver | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.runtime = runtime
        self.dispatcher = dispatcher
        self.clock = clock
        self.enforcer = enforcer
        # Each run's recent totals as float arrays: what rates need, computed once per reading.
        self._windows: dict[str, RunWindow] = {}
        # Alert state per (subject, rule), written through to the store. The pipeline is its only
        # writer, so the store is read once per key (after a start), not on every poll.
        self._alerts: dict[tuple[str, str], AlertState | None] = {}

    async def on_reading(self, snapshot: RunSnapshot, verdict: Verdict) -> PollHint:
        """An accepted reading from the poller; returns when the run is next worth reading. After a
        confirmed billing correction the readings before it no longer add up with the new totals: the
        burn window starts again from here."""
        if verdict.corrected and snapshot.run_id in self._windows:
            self._windows[snapshot.run_id].reset()
        evaluations = await self.on_run_snapshot(snapshot, corrected=verdict.corrected)
        rules = {rule.name: rule for rule in self.settings.run_rules}
        poll, enforce = self.settings.poll, self.settings.enforce
        return next_poll(
            evaluations,
            rules,
            taken_at=snapshot.taken_at,
            min_interval=poll.min_interval,
            interval=poll.interval,
            announce_ahead=enforce.grace_period if enforce.anticipate else None,
        )

    async def on_run_snapshot(self, snapshot: RunSnapshot, *, corrected: bool = False) -> list[Evaluation]:
        now = self.clock.now()
        trends = self._trends(snapshot, now=now)
        self.runtime.burn_rate_measured(snapshot.run_id, trends["total_cost_usd"].rate_per_hour)
        evaluations: list[Evaluation] = []
        for rule in self.settings.run_rules:
            evaluation = evaluate_run(
                rule, snapshot, (), now=now, burn_window=self.settings.poll.burn_window, trends=trends
            )
            if evaluation is None:
                continue
            evaluations.append(evaluation)
            self.runtime.evaluated(evaluation)
            self._advance(rule, evaluation, self._run_context(snapshot, evaluation))
            if rule.action == "delete" and self.enforcer is not None:
                await self.enforcer.observe(evaluation, snapshot, corrected=corrected)
        return evaluations

    async def on_wallet_snapshot(self, wallet: WalletSnapshot) -> list[Evaluation]:
        now = self.clock.now()
        total_burn = sum(
            rate
            for run_id, rate in self.runtime.burn_rates.items()
            if run_id in self.runtime.runs and not self.runtime.runs[run_id].terminal
        )
        runway = runway_seconds(wallet.balance_usd, total_burn)
        spend_by_rule: dict[str, float] = {}
        longest_window = max((r.window for r in self.settings.wallet_rules), default=86400.0)
        history = self.store.wallet_history(since=now - longest_window - self.settings.poll.wallet_interval)
        evaluations: list[Evaluation] = []
        for rule in self.settings.wallet_rules:
            if rule.metric == "spend_usd":
                spend = wallet_spend_usd(history, now=now, window=rule.window)
                if spend is not None:
                    spend_by_rule[rule.name] = spend
            evaluation = evaluate_wallet(rule, wallet, history, total_burn_rate_usd_per_hour=total_burn, now=now)
            evaluations.append(evaluation)
            self.runtime.evaluated(evaluation)
            context = AlertContext(subject_name=wallet.wallet_id)
            self._advance(rule, evaluation, context)
        self.runtime.wallet_figures(runway_seconds=runway, spend_by_rule=spend_by_rule)
        return evaluations

    def forget(self, run_id: str) -> None:
        self._windows.pop(run_id, None)
        for key in [k for k in self._alerts if k[0] == run_id]:
            del self._alerts[key]

    def _trends(self, snapshot: RunSnapshot, *, now: float) -> dict[str, Trend]:
        """Each watched total's trend for this reading, from the run's window (loaded from the store once
        per run after a start: the poller has already saved this reading, so the history includes it)."""
        poll = self.settings.poll
        since = now - poll.burn_window - poll.interval
        metrics = self._window_metrics()
        window = self._windows.get(snapshot.run_id)
        if window is None or window.metrics != metrics:
            window = RunWindow(metrics)
            for earlier in self.store.run_history(snapshot.run_id, since=since):
                window.add(earlier.taken_at, _values(earlier, metrics), terminal=earlier.terminal)
            self._windows[snapshot.run_id] = window
        window.add(snapshot.taken_at, _values(snapshot, metrics), terminal=snapshot.terminal)
        window.trim(since)
        return {metric: window.trend(metric, now=now, window=poll.burn_window) for metric in metrics}

    def _window_metrics(self) -> tuple[str, ...]:
        """The totals whose trends the rules need: the cost always (the burn rate), and each total a rule watches."""
        watched = [rule.metric for rule in self.settings.run_rules if CATALOG[rule.metric].read is not None]
        return tuple(dict.fromkeys(["total_cost_usd", *watched]))

    def window_bytes(self) -> int:
        """Memory the burn windows hold (benchmarks report it per watched run)."""
        return sum(window.nbytes() for window in self._windows.values())

    def _run_context(self, snapshot: RunSnapshot, evaluation: Evaluation) -> AlertContext:
        return AlertContext(
            subject_name=snapshot.display_name,
            run_id=snapshot.run_id,
            base_model=snapshot.base_model,
            status=snapshot.status,
            link=self.settings.api.dashboard_url.format(run_id=snapshot.run_id),
            terminal=snapshot.terminal,
        )

    def _advance(self, rule: RunRule | WalletRule, evaluation: Evaluation, context: AlertContext) -> None:
        key = (evaluation.subject, rule.name)
        if key not in self._alerts:
            self._alerts[key] = self.store.get_alert(*key)
        previous = self._alerts[key]
        state, notifications = advance_alert(previous, evaluation, rule=rule, context=context, now=self.clock.now())
        for notification in notifications:
            if self.dispatcher is not None and self.dispatcher.channels:
                fresh = self.dispatcher.publish(notification)
                log.info(
                    "alert_published" if fresh else "alert_already_published",
                    kind=notification.kind,
                    subject=notification.subject,
                    rule=notification.rule,
                    severity=notification.severity,
                    title=notification.title,
                    dedup_key=notification.dedup_key,
                )
            else:
                log.info("alert_not_sent_no_channel", kind=notification.kind, title=notification.title)
        if previous is None or state != previous:
            self.store.save_alert(state)
            self._alerts[key] = state


def _values(snapshot: RunSnapshot, metrics: tuple[str, ...]) -> list[float]:
    values = []
    for metric in metrics:
        read = CATALOG[metric].read
        assert read is not None
        values.append(read(snapshot))
    return values
