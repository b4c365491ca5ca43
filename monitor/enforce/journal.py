"""Enforcement's writing hand: every decision into the action log (with its evidence and the config
hash) and every message into the outbox, each logged as it happens.

Write order is the enforcer's to choose (see monitor.enforce.enforcer): a record before the message
it justifies, a result's message before its record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import structlog

from monitor.clock import Clock
from monitor.enforce.evidence import Evidence, Reading
from monitor.enforce.messages import DeleteContext, pending_notice, result_notice
from monitor.enforce.state import PendingDelete, Track
from monitor.exporter.live import RuntimeState
from monitor.records import ActionDecision, ActionRecord, Notification
from monitor.store.state_store import StateStore

log = structlog.get_logger("monitor.enforce.enforcer")

# The metric outcome of each concluding decision (runtime.deletions[(rule, outcome)]).
OUTCOMES: dict[str, str] = {
    "deleted": "deleted",
    "reconciled": "deleted",
    "would_delete": "dry_run",
    "refused": "refused",
    "failed": "failed",
    "already_gone": "already_gone",
    "cancelled": "cancelled",
}


class NotificationPublisher(Protocol):
    """The outbox (monitor.notify.outbox.OutboxDispatcher): False when the dedup key was already published."""

    def publish(self, notification: Notification) -> bool: ...


class Journal:
    def __init__(
        self,
        *,
        store: StateStore,
        runtime: RuntimeState,
        dispatcher: NotificationPublisher | None,
        clock: Clock,
        config_hash: str,
        dashboard_url: Callable[[str], str],
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.dispatcher = dispatcher
        self.clock = clock
        self.config_hash = config_hash
        self._dashboard_url = dashboard_url

    def record(
        self,
        track: Track,
        decision: ActionDecision,
        *,
        reason: str,
        evidence: Evidence,
        intent_id: int | None,
        dry_run: bool,
    ) -> int:
        record = ActionRecord(
            run_id=track.run_id,
            rule=track.rule,
            decision=decision,
            reason=reason,
            created_at=self.clock.now(),
            config_hash=self.config_hash,
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
            config_hash=self.config_hash,
            evidence=evidence.to_json(),
        )
        return record_id

    def publish(self, notification: Notification) -> bool:
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

    def context(self, track: Track, pending: PendingDelete) -> DeleteContext:
        return DeleteContext(
            run_id=track.run_id,
            run_name=pending.run_name or track.run_name,
            rule=track.rule,
            episode=pending.episode,
            dry_run=pending.dry_run,
            link=self._dashboard_url(track.run_id),
        )

    def pending_notice(self, track: Track, *, now: float, note: str | None = None) -> Notification:
        pending = track.pending
        assert pending is not None
        return pending_notice(
            self.context(track, pending),
            readings=pending.announced,
            deadline=pending.deadline,
            grace_period=pending.grace_period,
            now=now,
            note=note,
            projection=pending.anticipated,
        )

    async def conclude(
        self,
        track: Track,
        decision: ActionDecision,
        *,
        reason: str,
        extra: list[Reading] | None = None,
        notice: Notification | None = None,
    ) -> None:
        """End the episode: announce the result (before recording it: a crash in between leaves the
        intent open, the restart re-derives the same message and the outbox drops it), record it,
        count its outcome. The record points at the open intent, or at the pending it closes."""
        pending = track.pending
        assert pending is not None
        now = self.clock.now()
        readings = [*(track.confirmations or pending.announced), *(extra or [])]
        ctx = self.context(track, pending)
        self.publish(notice or result_notice(ctx, decision=decision, reason=reason, readings=readings, now=now))
        self.record(
            track,
            decision,
            reason=reason,
            evidence=Evidence.of(readings, schedule=pending.schedule()),
            intent_id=pending.intent_id if pending.intent_id is not None else pending.episode,
            dry_run=pending.dry_run,
        )
        self.runtime.deletion_concluded(rule=track.rule, outcome=OUTCOMES[decision])
        track.pending = None
        track.confirmations.clear()
