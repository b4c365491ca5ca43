"""Enforcement: deleting a run that overspends, safely, with a full audit trail.

The sequence for one (run, rule) episode:
  1. `observe` counts consecutive fresh readings over the rule's hard limit (a reading counts once);
  2. at `confirm_polls` of them, or earlier when a measured pace will cross the limit within the grace
     period (anticipation, monitor.enforce.projection), it writes `delete_pending` (the evidence and
     the deadline) to the action log, then announces it; the run is polled at the fastest interval
     from then on, and the DELETE still needs `confirm_polls` fresh readings over the limit;
  3. at the deadline, `tick` hands the episode to the one executor every path goes through
     (monitor.enforce.executor):
     it checks every safety, re-reads the run, writes `delete_intent`, calls DELETE, announces and
     records the result. Dry run stops just before the intent and records `would_delete`.
  4. `reconcile` (at start) resumes open countdowns silently and completes open intents.

Write order makes a crash harmless: a record is written before the message it justifies (an
announcement re-derived after a restart has the same dedup key, so the outbox drops it), and a
result message is published before its record (a crash in between leaves the intent open; the
restart re-reads the run, sends no second DELETE to a run that stopped, and the repeated message is
dropped). The DELETE call and its answers: monitor.enforce.delete_call.
"""

from __future__ import annotations

import asyncio

import structlog

from monitor.api.client import PrimeClient
from monitor.clock import Clock
from monitor.config.settings import Settings
from monitor.enforce.countdown import Countdowns
from monitor.enforce.evidence import Projection, Reading
from monitor.enforce.executor import Executor
from monitor.enforce.journal import Journal, NotificationPublisher
from monitor.enforce.projection import anticipation, calls_off, kill_ahead
from monitor.enforce.restart import resume_intent, resume_pending
from monitor.enforce.safety import (
    episode_blocked,
)
from monitor.enforce.state import PendingDelete, Track
from monitor.exporter.live import RuntimeState
from monitor.readings.fetch import RunReader
from monitor.records import Evaluation
from monitor.rules.config import RunRule
from monitor.snapshots import RunSnapshot
from monitor.store.state_store import StateStore

__all__ = ["Enforcer", "NotificationPublisher"]

log = structlog.get_logger(__name__)


class Enforcer:
    """See the module doc: observe readings, tick countdowns, reconcile at start; one executor."""

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
        self.store = store
        self.runtime = runtime
        self.clock = clock
        self.journal = Journal(
            store=store,
            runtime=runtime,
            dispatcher=dispatcher,
            clock=clock,
            config_hash=settings.config_hash(),
            dashboard_url=lambda run_id: self._settings.api.dashboard_url.format(run_id=run_id),
        )
        self._conclude = self.journal.conclude
        self._countdowns = Countdowns(
            journal=self.journal, clock=clock, settings=lambda: self._settings, cap_count=self._cap_count
        )
        self._executor = Executor(
            settings=settings,
            client=client,
            store=store,
            runtime=runtime,
            clock=clock,
            journal=self.journal,
            reader=reader,
        )
        self._tracks: dict[tuple[str, str], Track] = {}
        # One decision at a time: two passes must never both pass the cap or both delete.
        self._lock = asyncio.Lock()
        self._show_state()

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, value: Settings) -> None:
        """A config reload: the new settings apply to the next decision, and a 401 stop is lifted."""
        self._settings = value
        self.journal.config_hash = value.config_hash()
        self._executor.reload(value)
        self._show_state()

    @property
    def stopped(self) -> str | None:
        """Why enforcement is stopped (a 401 during a delete), or None."""
        return self._executor.stopped

    @property
    def client(self) -> PrimeClient:
        return self._executor.client

    @client.setter
    def client(self, value: PrimeClient) -> None:
        """A reload that rebuilt the API client: the next DELETE goes through the new one."""
        self._executor.client = value

    def _show_state(self) -> None:
        """The mode and the countdowns in progress, as /metrics shows them."""
        mode = "stopped" if self.stopped is not None else "dry_run" if self._settings.enforce.dry_run else "live"
        self.runtime.enforcement_mode_is(mode)
        self.runtime.deletes_pending(
            {(t.run_id, t.rule): t.pending.deadline for t in self._tracks.values() if t.pending is not None}
        )

    def read_by(self) -> dict[str, float]:
        """When (monotonic) enforcement wants its next fresh reading of each run it is working on: at once
        while confirming a crossing or past a confirmed deadline, one fresh reading just before a
        confirmed countdown's deadline; a countdown started ahead of the crossing (even one past its
        deadline) waits for the poll schedule, which reads just after the landing that will show the
        crossing and ever more often as it nears."""
        now = self.clock.monotonic()
        keep = self._settings.enforce.confirm_polls
        fast = self._settings.poll.min_interval
        wanted: dict[str, float] = {}
        for track in self._tracks.values():
            pending = track.pending
            if pending is not None and pending.intent_id is not None:
                continue  # the executor re-reads the run itself before each DELETE attempt
            confirmed = len(track.confirmations) >= keep
            if 0 < len(track.confirmations) < keep or (
                pending is not None and confirmed and pending.deadline_mono <= now
            ):
                at = now
            elif pending is not None and confirmed:
                at = pending.deadline_mono - fast
                if track.last_taken_mono is not None and track.last_taken_mono >= at - fast:
                    continue  # the reading for the deadline is in; the executor re-reads the run itself
            else:
                continue
            wanted[track.run_id] = min(at, wanted.get(track.run_id, at))
        return wanted

    def pending_runs(self) -> set[str]:
        """Runs with a delete pending or being confirmed: the poller reads them at the fastest interval."""
        return {track.run_id for track in self._tracks.values() if track.pending is not None or track.confirmations}

    def pending_deletes(self) -> list[PendingDelete]:
        """The episodes in progress, for status views, metrics and the demo."""
        return [track.pending for track in self._tracks.values() if track.pending is not None]

    def pending_by_run(self) -> list[tuple[str, str, PendingDelete]]:
        """(run, rule, episode) of each countdown in progress."""
        return [(t.run_id, t.rule, t.pending) for t in self._tracks.values() if t.pending is not None]

    async def observe(self, evaluation: Evaluation, snapshot: RunSnapshot, *, corrected: bool = False) -> None:
        """A good reading evaluated against a delete rule: count it, start or cancel a countdown.
        `corrected`: the reading is a billing correction the reading model confirmed."""
        if evaluation.scope != "run" or self._delete_rule(evaluation.rule) is None:
            return
        async with self._lock:
            await self._observe(evaluation, snapshot, corrected=corrected)
            self._show_state()

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
            self._show_state()

    async def reconcile(self) -> None:
        """At start: resume open countdowns without announcing again, and complete open intents."""
        async with self._lock:
            now = self.clock.now()
            for record in self.store.open_actions("delete_pending"):
                track = self._track(record.run_id, record.rule)
                fresh = resume_pending(
                    track,
                    record,
                    now=now,
                    now_mono=self.clock.monotonic(),
                    stale_after=self._stale_after(),
                    confirm_polls=self._settings.enforce.confirm_polls,
                )
                # The outbox drops this unless the crash came between the record and the first publish.
                announced_now = self.journal.publish(self.journal.pending_notice(track, now=record.created_at))
                log.warning(
                    "enforce_pending_resumed",
                    run_id=record.run_id,
                    rule=record.rule,
                    episode=record.id,
                    evidence_fresh=fresh,
                    announced_now=announced_now,
                )
            for record in self.store.open_actions("delete_intent"):
                track = self._track(record.run_id, record.rule)
                resume_intent(track, record, store=self.store, now=now, now_mono=self.clock.monotonic())
                log.warning("enforce_reconciling_intent", run_id=record.run_id, rule=record.rule, intent_id=record.id)
                await self._execute(track, due=True)
            self._show_state()

    # -- counting readings -------------------------------------------------------------------------

    async def _observe(self, evaluation: Evaluation, snapshot: RunSnapshot, *, corrected: bool) -> None:
        track = self._track(snapshot.run_id, evaluation.rule)
        rule = self._delete_rule(evaluation.rule)
        enforce = self._settings.enforce
        # Kill-ahead: a reading that projects the crossing before the next one can show it counts like
        # one over the limit (monitor.enforce.projection).
        ahead = None
        if rule is not None and rule.kill_ahead and not evaluation.breached:
            ahead = kill_ahead(evaluation, poll_gap=self._settings.poll.min_interval)
        reading = Reading.of(
            snapshot,
            metric=evaluation.metric,
            value=evaluation.value,
            limit=evaluation.limit,
            projected=ahead.projected_value if ahead is not None else None,
        )
        keep = enforce.confirm_polls
        breached = evaluation.breached or ahead is not None
        counted = track.count(snapshot, reading, breached=breached, stale_after=self._stale_after(), keep=keep)
        if counted == "seen":
            log.debug("enforce_reading_already_counted", run_id=track.run_id, rule=track.rule)
            return
        track.kill_projection = ahead
        pending = track.pending
        if counted == "under":
            await self._under(track, evaluation, snapshot, reading, corrected=corrected)
            return
        if counted == "reset":
            log.info("enforce_confirmations_reset", run_id=track.run_id, rule=track.rule)
        if counted == "unknown" or not track.confirmations:
            return
        rate = evaluation.trend.rate_per_hour if evaluation.trend is not None else None
        if pending is None and not (len(track.confirmations) >= keep and self._start_episode(track, rate=rate)):
            return
        assert track.pending is not None
        if len(track.confirmations) >= keep:
            self._advance(track, rate=rate)
        if track.pending.deadline_mono <= self.clock.monotonic():
            await self._execute(track, due=True)

    async def _under(
        self, track: Track, evaluation: Evaluation, snapshot: RunSnapshot, reading: Reading, *, corrected: bool
    ) -> None:
        """A reading under the limit: it calls off a countdown (unless one started ahead of the crossing
        still expects it), or starts one ahead of the crossing (anticipation)."""
        pending = track.pending
        grace = self._settings.enforce.grace_period
        if pending is not None and pending.intent_id is None:
            if snapshot.terminal:
                reason: str | None = f"the run is {snapshot.status}: it finished or was stopped outside the monitor"
            elif corrected:
                reason = "a billing correction brought the run back under the limit"
            elif pending.anticipated is not None:
                reason = calls_off(evaluation, grace_period=grace)
            else:
                reason = "the run is back under the limit"
            if reason is not None:
                await self._conclude(track, "cancelled", reason=reason, extra=[reading])
            return
        if pending is None and self._settings.enforce.anticipate and not snapshot.terminal:
            projection = anticipation(evaluation, grace_period=grace)
            if projection is not None:
                self._start_episode(track, readings=[reading], projection=projection)

    def _start_episode(
        self,
        track: Track,
        *,
        readings: list[Reading] | None = None,
        projection: Projection | None = None,
        rate: float | None = None,
    ) -> bool:
        """Announce a countdown: on confirmed readings over the limit (`rate`: the metric's pace, which may
        shorten the grace period, see enforce.grace_overspend_cap), or (`projection`) ahead of the
        crossing, quoting the projection; False when it may not start now."""
        now = self.clock.now()
        enforce = self._settings.enforce
        blocked = episode_blocked(
            self.store,
            track,
            stopped=self.stopped,
            gave_up=(track.run_id, track.rule) in self._executor.gave_up,
            protection=self._protection(track.run_id, track.run_name, now=now),
            dry_run_on_same_config=self.journal.config_hash if enforce.dry_run else None,
            cap_full=self._cap_count(now) >= enforce.max_deletes_per_hour,
        )
        if blocked is not None:
            if track.skipped != blocked:
                log.info("enforce_delete_not_started", run_id=track.run_id, rule=track.rule, reason=blocked)
                track.skipped = blocked
            return False
        track.skipped = None
        self._countdowns.announce(
            track,
            readings=list(track.confirmations) if readings is None else readings,
            projection=projection,
            rate=rate,
        )
        return True

    def _advance(self, track: Track, *, rate: float | None) -> None:
        if self._countdowns.advance(track, rate=rate):
            self._show_state()

    # -- helpers -----------------------------------------------------------------------------------

    def _track(self, run_id: str, rule: str) -> Track:
        return self._tracks.setdefault((run_id, rule), Track(run_id=run_id, rule=rule))

    async def _execute(self, track: Track, *, due: bool) -> None:
        await self._executor.execute(track, due=due)  # the callers show the new state once per pass

    def _delete_rule(self, name: str) -> RunRule | None:
        return self._executor.delete_rule(name)

    def _stale_after(self) -> float:
        return self._executor.stale_after()

    def _cap_count(self, now: float) -> int:
        return self._executor.cap_count(now)

    def _protection(self, run_id: str, run_name: str | None, *, now: float) -> str | None:
        return self._executor.protection(run_id, run_name, now=now)
