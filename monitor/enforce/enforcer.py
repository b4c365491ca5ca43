"""Enforcement: deleting a run that overspends, safely, with a full audit trail.

The sequence for one (run, rule) episode:
  1. `observe` counts consecutive fresh readings over the rule's hard limit (a reading counts once);
  2. at `confirm_polls` of them it writes `delete_pending` (the evidence and the deadline) to the
     action log, then announces it; the run is polled at the fastest interval from then on;
  3. at the deadline, `tick` hands the episode to `_execute`, the one executor every path goes through:
     it checks every safety, re-reads the run, writes `delete_intent`, calls DELETE, announces and
     records the result. Dry run stops just before the intent and records `would_delete`.
  4. `reconcile` (at start) resumes open countdowns silently and completes open intents.

Write order makes a crash harmless: a record is written before the message it justifies (an
announcement re-derived after a restart has the same dedup key, so the outbox drops it), and a
result message is published before its record (a crash in between leaves the intent open, the
restart calls the idempotent DELETE again and the repeated message is dropped).
"""

from __future__ import annotations

from typing import Any

import structlog

from monitor.api.errors import (
    ApiError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnauthorizedError,
    UnreachableError,
)
from monitor.enforce.base import EnforcerBase, NotificationPublisher
from monitor.enforce.messages import cap_notice, result_notice, stopped_notice, utc
from monitor.enforce.safety import (
    GONE_DECISIONS,
    HOUR,
    MAX_DELETE_ATTEMPTS,
    RECENT_ACTIONS,
    cap_window,
    freshness_problem,
    retry_delay,
)
from monitor.enforce.state import PendingDelete, Schedule, Track, attempt_evidence, reading_evidence
from monitor.records import ActionDecision, Evaluation, Notification
from monitor.snapshots import RunSnapshot

__all__ = ["OUTCOMES", "Enforcer", "NotificationPublisher"]

log = structlog.get_logger(__name__)

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
_RETRYABLE = (ServerError, UnreachableError, RateLimitedError)


class Enforcer(EnforcerBase):
    """See the module doc: observe readings, tick countdowns, reconcile at start; one executor."""

    async def observe(self, evaluation: Evaluation, snapshot: RunSnapshot, *, corrected: bool = False) -> None:
        """A good reading evaluated against a delete rule: count it, start or cancel a countdown.
        `corrected`: the reading is a billing correction the reading model confirmed."""
        if evaluation.scope != "run" or self._delete_rule(evaluation.rule) is None:
            return
        async with self._lock:
            await self._observe(evaluation, snapshot, corrected=corrected)

    async def tick(self) -> None:
        """Every second: act on countdowns that are due, cancel the ones that got protected."""
        async with self._lock:
            for track in list(self._tracks.values()):
                health = self.runtime.health.get(track.run_id)
                if track.confirmations and health is not None and health.last_poll_failed:
                    log.info(
                        "enforce_confirmations_reset", run_id=track.run_id, rule=track.rule, error=health.last_error
                    )
                    track.confirmations.clear()
                if track.pending is not None:
                    await self._execute(track, due=track.pending.deadline_mono <= self.clock.monotonic())
                elif track.run_id not in self.runtime.runs and not track.confirmations:
                    # The poller dropped the run (finished and past retention): nothing left to count.
                    del self._tracks[(track.run_id, track.rule)]

    async def reconcile(self) -> None:
        """At start: resume open countdowns without announcing again, and complete open intents."""
        async with self._lock:
            now = self.clock.now()
            for record in self.store.open_actions("delete_pending"):
                self._resume_pending(record, now=now)
            for record in self.store.open_actions("delete_intent"):
                track = self._resume_intent(record, now=now)
                await self._execute(track, due=True)

    # -- counting readings -------------------------------------------------------------------------

    async def _observe(self, evaluation: Evaluation, snapshot: RunSnapshot, *, corrected: bool) -> None:
        track = self._track(snapshot.run_id, evaluation.rule)
        if self._seen_before(track, snapshot):
            log.debug(
                "enforce_reading_already_counted", run_id=track.run_id, rule=track.rule, taken_at=snapshot.taken_at
            )
            return
        went_back = track.last_record_count is not None and snapshot.record_count < track.last_record_count
        previous_mono = track.last_confirmed_mono
        track.last_taken_at = snapshot.taken_at
        track.last_taken_mono = snapshot.taken_mono
        track.last_record_count = snapshot.record_count
        track.run_name = snapshot.run_name or track.run_name
        reading = reading_evidence(snapshot, metric=evaluation.metric, value=evaluation.value, limit=evaluation.limit)
        pending = track.pending
        if evaluation.value is None:
            # Unknown is neither a breach nor a recovery: it only breaks the run of confirmations.
            track.confirmations.clear()
            return
        if snapshot.terminal or not evaluation.breached:
            track.confirmations.clear()
            if pending is not None and pending.intent_id is None:
                if snapshot.terminal:
                    reason = f"the run is {snapshot.status}: it finished or was stopped outside the monitor"
                elif corrected:
                    reason = "a billing correction brought the run back under the limit"
                else:
                    reason = "the run is back under the limit"
                await self._conclude(track, "cancelled", reason=reason, extra=[reading])
            return
        stale_after = self._stale_after()
        if track.confirmations and snapshot.taken_mono is not None and previous_mono is not None:
            gap = snapshot.taken_mono - previous_mono
        elif track.confirmations:
            gap = snapshot.taken_at - float(track.confirmations[-1]["taken_at"])
        else:
            gap = 0.0
        if went_back or gap > stale_after:
            # Not consecutive (a gap in the readings) or not the same series (the usage record count fell).
            log.info("enforce_confirmations_reset", run_id=track.run_id, rule=track.rule, record_count_fell=went_back)
            track.confirmations.clear()
            if went_back:
                return
        track.confirmations.append(reading)
        track.last_confirmed_mono = snapshot.taken_mono
        del track.confirmations[: -self._settings.enforce.confirm_polls]
        enough = len(track.confirmations) >= self._settings.enforce.confirm_polls
        if pending is None and not (enough and self._start_episode(track)):
            return
        assert track.pending is not None
        if track.pending.deadline_mono <= self.clock.monotonic():
            await self._execute(track, due=True)

    @staticmethod
    def _seen_before(track: Track, snapshot: RunSnapshot) -> bool:
        """The same reading handed over again (or an older one): it counts once."""
        if track.last_taken_mono is not None and snapshot.taken_mono is not None:
            return snapshot.taken_mono <= track.last_taken_mono
        return track.last_taken_at is not None and snapshot.taken_at <= track.last_taken_at

    def _start_episode(self, track: Track) -> bool:
        now = self.clock.now()
        blocked = self._episode_blocked(track, now=now)
        if blocked is not None:
            if track.skipped != blocked:
                log.info("enforce_delete_not_started", run_id=track.run_id, rule=track.rule, reason=blocked)
                track.skipped = blocked
            return False
        track.skipped = None
        enforce = self._settings.enforce
        readings = list(track.confirmations)
        schedule = Schedule(
            deadline=now + enforce.grace_period, grace_period=enforce.grace_period, run_name=track.run_name
        )
        verb = "would delete (dry run)" if enforce.dry_run else "delete"
        episode = self._record(
            track,
            "delete_pending",
            reason=f"over the limit on {len(readings)} consecutive fresh readings: {verb} at {utc(schedule.deadline)}"
            " unless it is back under the limit, finished or protected",
            evidence=[*readings, schedule.to_evidence()],
            intent_id=None,
            dry_run=enforce.dry_run,
        )
        track.pending = PendingDelete(
            episode=episode,
            deadline=schedule.deadline,
            deadline_mono=self.clock.monotonic() + enforce.grace_period,
            grace_period=schedule.grace_period,
            dry_run=enforce.dry_run,
            run_name=track.run_name,
            announced=readings,
        )
        count = self._cap_count(now)
        note = None
        if count >= enforce.max_deletes_per_hour:
            note = (
                f"The hourly delete cap is reached right now ({count} of {enforce.max_deletes_per_hour}):"
                " unless it frees up by the deadline, this delete will be refused."
            )
        self._publish(self._pending_notice(track.pending, track, now=now, note=note))
        return True

    def _episode_blocked(self, track: Track, *, now: float) -> str | None:
        """Why no new countdown starts for this run and rule, or None."""
        if self._stopped is not None:
            return f"enforcement is stopped: {self._stopped}"
        if (track.run_id, track.rule) in self._gave_up:
            return "gave up after repeated DELETE failures; reload the config to try again"
        protected = self._protection(track.run_id, track.run_name, now=now)
        if protected is not None:
            return f"the run is protected: {protected}"
        recent = self.store.actions(run_id=track.run_id, limit=RECENT_ACTIONS)
        gone = next((record for record in recent if record.decision in GONE_DECISIONS), None)
        if gone is not None:
            return f"the run is already deleted or gone (action {gone.id}: {gone.decision})"
        last = next((record for record in recent if record.rule == track.rule), None)
        if last is None:
            return None
        if last.decision == "would_delete" and self._settings.enforce.dry_run and last.config_hash == self._config_hash:
            return f"the dry run already recorded that it would delete this run (action {last.id})"
        if last.decision == "refused" and self._cap_count(now) >= self._settings.enforce.max_deletes_per_hour:
            return f"the hourly delete cap is still reached (refused in action {last.id})"
        return None

    # -- the executor ------------------------------------------------------------------------------

    async def _execute(self, track: Track, *, due: bool) -> None:
        """The one place a delete is decided and done; every path (countdown, retry, restart) comes here.

        Gates in order: the rule still deletes, the mode (dry run or live) is the one announced, the
        run is not protected [these cancel at any time]; then, once due: enforcement not stopped,
        fresh data confirming the breach, room under the hourly cap, a re-read still over the limit
        and not finished; then dry run records `would_delete`, live writes the intent and DELETEs.
        """
        pending = track.pending
        assert pending is not None
        now = self.clock.now()
        rule = self._delete_rule(track.rule)
        if rule is None:
            await self._conclude(track, "cancelled", reason=f"rule {track.rule} no longer deletes (config changed)")
            return
        if pending.dry_run != self._settings.enforce.dry_run:
            await self._conclude(track, "cancelled", reason="enforce.dry_run changed since the announcement")
            return
        protected = self._protection(track.run_id, pending.run_name, now=now)
        if protected is not None:
            await self._conclude(track, "cancelled", reason=f"the run is protected: {protected}")
            return
        if not due:
            return
        if self._stopped is not None:
            self._wait(track, f"enforcement is stopped: {self._stopped}")
            return
        deciding = pending.intent_id is None
        if deciding:
            health = self.runtime.health.get(track.run_id)
            enforce = self._settings.enforce
            problem = freshness_problem(
                health,
                track.confirmations,
                now_mono=self.clock.monotonic(),
                last_confirmed_mono=track.last_confirmed_mono,
                stale_after=self._stale_after(),
                confirm_polls=enforce.confirm_polls,
            )
            if problem is not None:
                if health is not None and health.last_poll_failed:
                    track.confirmations.clear()
                self._wait(track, problem)
                return
            count = self._cap_count(now)
            if count >= enforce.max_deletes_per_hour:
                await self._refuse(track, count=count, now=now)
                return
        reread = await self._reread(track.run_id)
        extra = [] if reread.snapshot is None else [self._reread_evidence(rule, reread.snapshot)]
        if reread.outcome == "unauthorized":
            await self._stop(track, reason=reread.error)
            return
        if reread.outcome == "gone":
            await self._conclude(track, "already_gone", reason="the usage endpoint answers 404: the run is gone")
            return
        if not deciding and reread.snapshot is not None and reread.snapshot.terminal:
            # A DELETE may already have landed (sent before a restart, or an attempt whose answer was
            # lost): a run that is no longer running gets no second DELETE.
            await self._landed_before(track, reread.snapshot, extra=extra)
            return
        if deciding:
            if reread.snapshot is None:
                # A failed or implausible re-read is bad data: start confirming again (still no second announcement).
                track.confirmations.clear()
                self._wait(track, f"the re-read before the delete failed ({reread.error}); waiting for fresh readings")
                return
            cancel = self._not_deletable(rule, reread.snapshot, now=now)
            if cancel is not None:
                await self._conclude(track, "cancelled", reason=cancel, extra=extra)
                return
            if pending.dry_run:
                await self._conclude(track, "would_delete", reason="enforce.dry_run is on: no DELETE sent", extra=extra)
                return
            pending.intent_id = self._record(
                track,
                "delete_intent",
                reason="all checks passed: calling DELETE",
                evidence=[*track.confirmations, *extra, pending.schedule().to_evidence()],
                intent_id=pending.episode,
                dry_run=False,
            )
        await self._delete(
            track, extra=extra, run_gone_on_reread=reread.snapshot is not None and reread.snapshot.terminal
        )

    async def _delete(self, track: Track, *, extra: list[dict[str, Any]], run_gone_on_reread: bool) -> None:
        pending = track.pending
        assert pending is not None and pending.intent_id is not None
        pending.attempt += 1
        try:
            response = await self.client.delete_run(track.run_id)
        except NotFoundError:
            await self._conclude(
                track, "already_gone", reason="DELETE answered 404: the run was already gone", extra=extra
            )
        except UnauthorizedError as exc:
            await self._stop(track, reason=str(exc), extra=extra)
        except InvalidResponseError as exc:
            # A 2xx whose body does not match the spec: the API accepted the delete.
            await self._deleted(track, extra=extra, note=f" (the answer did not match the spec: {exc})")
        except _RETRYABLE as exc:
            await self._delete_failed(track, error=str(exc), retryable=True, extra=extra)
        except ApiError as exc:
            await self._delete_failed(track, error=str(exc), retryable=False, extra=extra)
        else:
            if response.deleted:
                await self._deleted(track, extra=extra, note="")
            elif run_gone_on_reread:
                reason = "DELETE answered deleted: false and the run had already stopped"
                await self._conclude(track, "already_gone", reason=reason, extra=extra)
            else:
                await self._delete_failed(track, error="DELETE answered deleted: false", retryable=True, extra=extra)

    async def _landed_before(self, track: Track, snapshot: RunSnapshot, *, extra: list[dict[str, Any]]) -> None:
        pending = track.pending
        assert pending is not None
        when = "before the restart" if pending.restarted else "by an earlier attempt whose answer was lost"
        if snapshot.status == "STOPPED":
            reason = (
                f"the re-read shows the run STOPPED: the DELETE sent {when} took effect (or someone stopped it);"
                " no second DELETE"
            )
            await self._conclude(track, "reconciled" if pending.restarted else "deleted", reason=reason, extra=extra)
        else:
            reason = f"the re-read shows the run {snapshot.status}: it ended on its own; no DELETE sent again"
            await self._conclude(track, "already_gone", reason=reason, extra=extra)

    async def _deleted(self, track: Track, *, extra: list[dict[str, Any]], note: str) -> None:
        assert track.pending is not None
        if track.pending.restarted:
            reason = f"DELETE accepted, completing an intent found open after a restart{note}"
            await self._conclude(track, "reconciled", reason=reason, extra=extra)
        else:
            await self._conclude(track, "deleted", reason=f"DELETE accepted{note}", extra=extra)

    async def _delete_failed(self, track: Track, *, error: str, retryable: bool, extra: list[dict[str, Any]]) -> None:
        pending = track.pending
        assert pending is not None and pending.intent_id is not None
        if retryable and pending.attempt < MAX_DELETE_ATTEMPTS:
            delay = retry_delay(pending.attempt)
            retry_at = self.clock.now() + delay
            # Recorded without intent_id: the intent stays open, so a restart retries it too.
            self._record(
                track,
                "failed",
                reason=f"DELETE attempt {pending.attempt} of {MAX_DELETE_ATTEMPTS} failed ({error}); retrying at"
                f" {utc(retry_at)}",
                evidence=[
                    *extra,
                    attempt_evidence(
                        intent_id=pending.intent_id,
                        attempt=pending.attempt,
                        of=MAX_DELETE_ATTEMPTS,
                        retry_at=retry_at,
                        error=error,
                    ),
                ],
                intent_id=None,
                dry_run=False,
            )
            pending.deadline = retry_at
            pending.deadline_mono = self.clock.monotonic() + delay
            return
        self._gave_up.add((track.run_id, track.rule))
        tries = f"after {pending.attempt} attempts" if retryable else "and cannot be retried"
        await self._conclude(track, "failed", reason=f"DELETE failed {tries}: {error}", extra=extra)

    async def _refuse(self, track: Track, *, count: int, now: float) -> None:
        assert track.pending is not None
        enforce = self._settings.enforce
        window, oldest = cap_window(self.store, dry_run=enforce.dry_run, now=now)
        would = "would-be deletes (dry run)" if enforce.dry_run else "deletes"
        reason = f"{count} {would} in the last hour reach enforce.max_deletes_per_hour ({enforce.max_deletes_per_hour})"
        ctx = self._context(track, track.pending)
        notice = cap_notice(
            window_key=window,
            count=count,
            limit=enforce.max_deletes_per_hour,
            dry_run=enforce.dry_run,
            refused=ctx,
            reopens_at=None if oldest is None else oldest + HOUR,
            now=now,
        )
        await self._conclude(track, "refused", reason=reason)
        if self._publish(notice):
            log.error("enforce_cap_reached", count=count, cap=enforce.max_deletes_per_hour, window=window)

    async def _stop(self, track: Track, *, reason: str, extra: list[dict[str, Any]] | None = None) -> None:
        assert track.pending is not None
        self._stopped = reason
        log.critical("enforcement_stopped", run_id=track.run_id, rule=track.rule, error=reason)
        notice = stopped_notice(self._context(track, track.pending), reason=reason, now=self.clock.now())
        why = f"the API refused the key ({reason}); enforcement stopped until a config reload or restart"
        await self._conclude(track, "failed", reason=why, extra=extra or [], notice=notice)

    async def _conclude(
        self,
        track: Track,
        decision: ActionDecision,
        *,
        reason: str,
        extra: list[dict[str, Any]] | None = None,
        notice: Notification | None = None,
    ) -> None:
        """End the episode: announce the result (before recording it, see the module doc), record it,
        count its outcome. The record points at the open intent, or at the pending it closes."""
        pending = track.pending
        assert pending is not None
        now = self.clock.now()
        readings = [*(track.confirmations or pending.announced), *(extra or [])]
        ctx = self._context(track, pending)
        self._publish(notice or result_notice(ctx, decision=decision, reason=reason, readings=readings, now=now))
        self._record(
            track,
            decision,
            reason=reason,
            evidence=[*readings, pending.schedule().to_evidence()],
            intent_id=pending.intent_id if pending.intent_id is not None else pending.episode,
            dry_run=pending.dry_run,
        )
        self.runtime.deletions[(track.rule, OUTCOMES[decision])] += 1
        track.pending = None
        track.confirmations.clear()
