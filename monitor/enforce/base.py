"""The enforcer's plumbing: its state, settings reload, the action-log and outbox writes, the
re-read before a delete, and how a restart rebuilds open episodes from the action log.

The decisions themselves (when to start a countdown, the one executor) are in monitor.enforce.enforcer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import structlog

from monitor.api.client import PrimeClient
from monitor.clock import Clock
from monitor.config.settings import Settings
from monitor.enforce.messages import DeleteContext, pending_notice
from monitor.enforce.safety import RECENT_ACTIONS, deletes_in_last_hour, protection_reason
from monitor.enforce.state import PendingDelete, Schedule, Track, reading_evidence, readings_of
from monitor.exporter.live import RuntimeState
from monitor.readings.fetch import RunRead
from monitor.records import ActionDecision, ActionRecord, Notification
from monitor.rules.catalog import is_measured, spec_of
from monitor.rules.config import RunRule
from monitor.rules.evaluate import evaluate_run
from monitor.snapshots import RunSnapshot
from monitor.store.state_store import StateStore

log = structlog.get_logger("monitor.enforce.enforcer")


class NotificationPublisher(Protocol):
    """The outbox (monitor.notify.outbox.OutboxDispatcher): False when the dedup key was already published."""

    def publish(self, notification: Notification) -> bool: ...


# Reads a run for a decision, judged against its last accepted reading (monitor.poller.Poller.reread).
RunReader = Callable[[str], Awaitable[RunRead]]


@dataclass(frozen=True, slots=True)
class _Reread:
    snapshot: RunSnapshot | None = None
    outcome: Literal["ok", "gone", "unauthorized", "failed"] = "ok"
    error: str = ""


class EnforcerBase:
    """State and helpers shared by the enforcer's decisions."""

    def __init__(
        self,
        *,
        settings: Settings,
        client: PrimeClient,
        store: StateStore,
        runtime: RuntimeState,
        dispatcher: NotificationPublisher | None,
        clock: Clock,
        reader: RunReader,
    ) -> None:
        self._settings = settings
        self._reader = reader
        self._config_hash = settings.config_hash()
        self.client = client
        self.store = store
        self.runtime = runtime
        self.dispatcher = dispatcher
        self.clock = clock
        self._tracks: dict[tuple[str, str], Track] = {}
        # Set by a 401: no delete until the config is reloaded or the daemon restarted.
        self._stopped: str | None = None
        # (run, rule) whose DELETE kept failing: no new episode until a reload.
        self._gave_up: set[tuple[str, str]] = set()
        # One decision at a time: two passes must never both pass the cap or both delete.
        self._lock = asyncio.Lock()

    # -- public surface ----------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, value: Settings) -> None:
        """A config reload: the new settings apply to the next decision, and a 401 stop is lifted."""
        self._settings = value
        self._config_hash = value.config_hash()
        if self._stopped is not None:
            log.warning("enforcement_resumed", reason="config reloaded", stopped_because=self._stopped)
        self._stopped = None
        self._gave_up.clear()

    @property
    def stopped(self) -> str | None:
        """Why enforcement is stopped (a 401 during a delete), or None."""
        return self._stopped

    def pending_runs(self) -> set[str]:
        """Runs with a delete pending or being confirmed: the poller reads them at the fastest interval."""
        return {track.run_id for track in self._tracks.values() if track.pending is not None or track.confirmations}

    def pending_deletes(self) -> list[dict[str, Any]]:
        """The episodes in progress, for status views and the demo."""
        return [
            {
                "run_id": track.run_id,
                "run_name": track.pending.run_name,
                "rule": track.rule,
                "episode": track.pending.episode,
                "deadline": track.pending.deadline,
                "dry_run": track.pending.dry_run,
                "delete_sent": track.pending.intent_id is not None,
                "waiting": track.pending.waiting,
            }
            for track in self._tracks.values()
            if track.pending is not None
        ]

    # -- restart -----------------------------------------------------------------------------------

    def _resume_pending(self, record: ActionRecord, *, now: float) -> None:
        assert record.id is not None
        schedule = Schedule.from_evidence(record.evidence) or Schedule(record.created_at, 0.0, None)
        readings = readings_of(record.evidence)
        track = self._track(record.run_id, record.rule)
        track.run_name = schedule.run_name
        # The wall clock is all a restart has; the wait left is never more than the grace period.
        left = min(max(schedule.deadline - now, 0.0), schedule.grace_period)
        track.pending = PendingDelete(
            episode=record.id,
            deadline=schedule.deadline,
            deadline_mono=self.clock.monotonic() + left,
            grace_period=schedule.grace_period,
            dry_run=record.dry_run,
            run_name=schedule.run_name,
            announced=readings,
        )
        fresh = bool(readings) and now - float(readings[-1]["taken_at"]) <= self._stale_after()
        # Stale evidence is not thrown away (the announcement quotes it) but cannot confirm: fresh readings must.
        track.confirmations = readings[-self._settings.enforce.confirm_polls :] if fresh else []
        if readings:
            track.last_taken_at = float(readings[-1]["taken_at"])
        # The outbox drops this unless the crash came between the record and the first publish.
        announced_now = self._publish(self._pending_notice(track.pending, track, now=record.created_at))
        log.warning(
            "enforce_pending_resumed",
            run_id=record.run_id,
            rule=record.rule,
            episode=record.id,
            deadline=schedule.deadline,
            evidence_fresh=fresh,
            announced_now=announced_now,
        )

    def _resume_intent(self, record: ActionRecord, *, now: float) -> Track:
        assert record.id is not None
        schedule = Schedule.from_evidence(record.evidence) or Schedule(record.created_at, 0.0, None)
        attempts = sum(
            1
            for earlier in self.store.actions(run_id=record.run_id, limit=RECENT_ACTIONS)
            if earlier.decision == "failed"
            and any(e.get("source") == "attempt" and e.get("intent_id") == record.id for e in earlier.evidence)
        )
        track = self._track(record.run_id, record.rule)
        track.run_name = schedule.run_name
        track.pending = PendingDelete(
            episode=record.intent_id if record.intent_id is not None else record.id,
            deadline=now,
            deadline_mono=self.clock.monotonic(),
            grace_period=schedule.grace_period,
            dry_run=record.dry_run,
            run_name=schedule.run_name,
            announced=readings_of(record.evidence),
            intent_id=record.id,
            restarted=True,
            attempt=attempts,
        )
        log.warning("enforce_reconciling_intent", run_id=record.run_id, rule=record.rule, intent_id=record.id)
        return track

    # -- helpers -----------------------------------------------------------------------------------

    def _track(self, run_id: str, rule: str) -> Track:
        return self._tracks.setdefault((run_id, rule), Track(run_id=run_id, rule=rule))

    def _delete_rule(self, name: str) -> RunRule | None:
        """The rule if it may delete: `action: delete` on a figure the API reports (config validation
        refuses the rest; checked again here, where the DELETE is decided)."""
        return next(
            (r for r in self._settings.run_rules if r.name == name and r.action == "delete" and is_measured(r.metric)),
            None,
        )

    def _stale_after(self) -> float:
        return 2.0 * self._settings.poll.interval

    def _cap_count(self, now: float) -> int:
        return deletes_in_last_hour(self.store, dry_run=self._settings.enforce.dry_run, now=now)

    def _protection(self, run_id: str, run_name: str | None, *, now: float) -> str | None:
        patterns = self._settings.enforce.protect
        return protection_reason(self.store, patterns=patterns, run_id=run_id, run_name=run_name, now=now)

    def _not_deletable(self, rule: RunRule, snapshot: RunSnapshot, *, now: float) -> str | None:
        """Why the re-read says not to delete after all, or None."""
        if snapshot.terminal:
            return f"the run is {snapshot.status} on the re-read: it finished or was stopped outside the monitor"
        evaluation = evaluate_run(rule, snapshot, [], now=now, burn_window=self._settings.poll.burn_window)
        if evaluation is None:
            return "the rule no longer selects the run"
        if not evaluation.breached:
            return "the run is back under the limit on the re-read"
        protected = self._protection(snapshot.run_id, snapshot.run_name, now=now)
        return None if protected is None else f"the run is protected: {protected}"

    async def _reread(self, run_id: str) -> _Reread:
        read = await self._reader(run_id)
        if read.kind == "unauthorized":
            return _Reread(outcome="unauthorized", error=read.error)
        if read.kind == "not_found":
            return _Reread(outcome="gone")
        if not read.ok:
            return _Reread(outcome="failed", error=f"{read.kind}: {read.error}")
        return _Reread(snapshot=read.snapshot)

    def _reread_evidence(self, rule: RunRule, snapshot: RunSnapshot) -> dict[str, Any]:
        read = spec_of(rule.metric).read
        value = read(snapshot) if read is not None else None
        return reading_evidence(snapshot, metric=rule.metric, value=value, limit=rule.limit, source="reread")

    def _wait(self, track: Track, reason: str) -> None:
        assert track.pending is not None
        if track.pending.waiting != reason:
            log.info("enforce_delete_waiting", run_id=track.run_id, rule=track.rule, reason=reason)
            track.pending.waiting = reason

    def _context(self, track: Track, pending: PendingDelete) -> DeleteContext:
        return DeleteContext(
            run_id=track.run_id,
            run_name=pending.run_name or track.run_name,
            rule=track.rule,
            episode=pending.episode,
            dry_run=pending.dry_run,
            link=self._settings.api.dashboard_url.format(run_id=track.run_id),
        )

    def _pending_notice(
        self, pending: PendingDelete, track: Track, *, now: float, note: str | None = None
    ) -> Notification:
        return pending_notice(
            self._context(track, pending),
            readings=pending.announced,
            deadline=pending.deadline,
            grace_period=pending.grace_period,
            now=now,
            note=note,
        )

    def _record(
        self,
        track: Track,
        decision: ActionDecision,
        *,
        reason: str,
        evidence: list[dict[str, Any]],
        intent_id: int | None,
        dry_run: bool,
    ) -> int:
        record = ActionRecord(
            run_id=track.run_id,
            rule=track.rule,
            decision=decision,
            reason=reason,
            created_at=self.clock.now(),
            config_hash=self._config_hash,
            dry_run=dry_run,
            evidence=evidence,
            intent_id=intent_id,
        )
        record_id = self.store.append_action(record)
        emit = log.error if decision == "failed" else log.warning if decision in ("deleted", "reconciled") else log.info
        emit(
            "enforcement_decision",
            action_id=record_id,
            decision=decision,
            run_id=track.run_id,
            rule=track.rule,
            reason=reason,
            dry_run=dry_run,
            intent_id=intent_id,
            config_hash=self._config_hash,
            evidence=evidence,
        )
        return record_id

    def _publish(self, notification: Notification) -> bool:
        if self.dispatcher is None:
            log.info("enforce_notification_skipped", reason="no dispatcher", dedup_key=notification.dedup_key)
            return False
        fresh = self.dispatcher.publish(notification)
        # Not queued: the key was published before (a replay after a restart), or no channel is configured.
        log.info(
            "enforce_notification_published" if fresh else "enforce_notification_not_queued",
            kind=notification.kind,
            dedup_key=notification.dedup_key,
            title=notification.title,
        )
        return fresh
