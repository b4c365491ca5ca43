"""The executor: the one place a delete is decided and done. Every path (a countdown at its deadline,
a retry, an intent resumed after a restart) comes through `Executor.execute`; dry run is checked here and
nowhere else. The enforcer (monitor.enforce.enforcer) counts readings and starts countdowns; this module
decides, re-reads, records the intent, calls DELETE (monitor.enforce.delete_call) and concludes.
"""

from __future__ import annotations

import structlog

from monitor.api.client import PrimeClient
from monitor.clock import Clock
from monitor.config.settings import Settings
from monitor.enforce.delete_call import DeleteCall, Unauthorized
from monitor.enforce.evidence import Evidence, Reading
from monitor.enforce.journal import Journal
from monitor.enforce.messages import cap_notice, stopped_notice
from monitor.enforce.safety import (
    HOUR,
    cap_window,
    deletes_in_last_hour,
    freshness_problem,
    not_deletable,
    protection_reason,
)
from monitor.enforce.state import Track
from monitor.exporter.live import RuntimeState
from monitor.readings.fetch import RunReader
from monitor.rules.catalog import is_measured, spec_of
from monitor.rules.config import RunRule
from monitor.snapshots import RunSnapshot
from monitor.store.state_store import StateStore

log = structlog.get_logger(__name__)


class Executor:
    """Decides and does deletes; holds what stops them (a 401: `stopped`; a DELETE that kept failing:
    `gave_up`) until the config is reloaded."""

    def __init__(
        self,
        *,
        settings: Settings,
        client: PrimeClient,
        store: StateStore,
        runtime: RuntimeState,
        clock: Clock,
        journal: Journal,
        reader: RunReader,
    ) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.runtime = runtime
        self.clock = clock
        self.journal = journal
        self._reader = reader
        self._conclude = journal.conclude
        self._delete_call = DeleteCall(journal=journal, clock=clock)
        # Set by a 401: no delete until the config is reloaded or the daemon restarted.
        self.stopped: str | None = None
        # (run, rule) whose DELETE kept failing: no new episode until a reload.
        self.gave_up: set[tuple[str, str]] = set()

    def reload(self, settings: Settings) -> None:
        """A config reload: the new settings apply to the next decision, and a 401 stop is lifted."""
        self.settings = settings
        if self.stopped is not None:
            log.warning("enforcement_resumed", reason="config reloaded", stopped_because=self.stopped)
        self.stopped = None
        self.gave_up.clear()

    async def execute(self, track: Track, *, due: bool) -> None:
        """The one place a delete is decided and done; every path (countdown, retry, restart) comes here.

        Gates in order: the rule still deletes, the mode (dry run or live) is the one announced, the
        run is not protected [these cancel at any time]; then, once due: enforcement not stopped,
        fresh data confirming the breach, room under the hourly cap, a re-read still over the limit
        and not finished; then dry run records `would_delete`, live writes the intent and DELETEs.
        """
        pending = track.pending
        assert pending is not None
        now = self.clock.now()
        rule = self.delete_rule(track.rule)
        if rule is None:
            await self._conclude(track, "cancelled", reason=f"rule {track.rule} no longer deletes (config changed)")
            return
        if pending.dry_run != self.settings.enforce.dry_run:
            await self._conclude(track, "cancelled", reason="enforce.dry_run changed since the announcement")
            return
        protected = self.protection(track.run_id, pending.run_name, now=now)
        if protected is not None:
            await self._conclude(track, "cancelled", reason=f"the run is protected: {protected}")
            return
        if not due:
            return
        if self.stopped is not None:
            self._wait(track, f"enforcement is stopped: {self.stopped}")
            return
        deciding = pending.intent_id is None
        if deciding:
            health = self.runtime.health.get(track.run_id)
            enforce = self.settings.enforce
            problem = freshness_problem(
                health,
                track.confirmations,
                now_mono=self.clock.monotonic(),
                last_confirmed_mono=track.last_confirmed_mono,
                stale_after=self.stale_after(),
                confirm_polls=enforce.confirm_polls,
            )
            if problem is not None:
                if health is not None and health.last_poll_failed:
                    track.confirmations.clear()
                self._wait(track, problem)
                return
            count = self.cap_count(now)
            if count >= enforce.max_deletes_per_hour:
                await self._refuse(track, count=count, now=now)
                return
        outcome, snapshot, error = await self._reread(track.run_id)
        extra = [] if snapshot is None else [self._reread_evidence(rule, snapshot)]
        if outcome == "unauthorized":
            await self._stop(track, reason=error)
            return
        if outcome == "gone":
            await self._conclude(track, "already_gone", reason="the usage endpoint answers 404: the run is gone")
            return
        if not deciding and snapshot is not None and snapshot.terminal:
            # A DELETE may already have landed (sent before a restart, or an attempt whose answer was
            # lost): a run that is no longer running gets no second DELETE.
            await self._delete_call.landed_before(track, snapshot, extra=extra)
            return
        if deciding:
            if snapshot is None:
                # A failed or implausible re-read is bad data: start confirming again (still no second announcement).
                track.confirmations.clear()
                self._wait(track, f"the re-read before the delete failed ({error}); waiting for fresh readings")
                return
            cancel = not_deletable(
                rule,
                snapshot,
                now=now,
                burn_window=self.settings.poll.burn_window,
                protection=self.protection(snapshot.run_id, snapshot.run_name, now=now),
                kill_projection=track.kill_projection if rule.kill_ahead else None,
            )
            if cancel is not None:
                await self._conclude(track, "cancelled", reason=cancel, extra=extra)
                return
            if pending.dry_run:
                await self._conclude(track, "would_delete", reason="enforce.dry_run is on: no DELETE sent", extra=extra)
                return
            pending.intent_id = self.journal.record(
                track,
                "delete_intent",
                reason="all checks passed: calling DELETE",
                evidence=Evidence.of([*track.confirmations, *extra], schedule=pending.schedule()),
                intent_id=pending.episode,
                dry_run=False,
            )
        await self._delete(track, extra=extra, run_gone_on_reread=snapshot is not None and snapshot.terminal)

    async def _delete(self, track: Track, *, extra: list[Reading], run_gone_on_reread: bool) -> None:
        outcome = await self._delete_call.send(self.client, track, extra=extra, run_gone_on_reread=run_gone_on_reread)
        if isinstance(outcome, Unauthorized):
            await self._stop(track, reason=outcome.error, extra=extra)
        elif outcome == "gave_up":
            self.gave_up.add((track.run_id, track.rule))

    async def _refuse(self, track: Track, *, count: int, now: float) -> None:
        assert track.pending is not None
        enforce = self.settings.enforce
        window, oldest = cap_window(self.store, dry_run=enforce.dry_run, now=now)
        would = "would-be deletes (dry run)" if enforce.dry_run else "deletes"
        reason = f"{count} {would} in the last hour reach enforce.max_deletes_per_hour ({enforce.max_deletes_per_hour})"
        ctx = self.journal.context(track, track.pending)
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
        if self.journal.publish(notice):
            log.error("enforce_cap_reached", count=count, cap=enforce.max_deletes_per_hour, window=window)

    async def _stop(self, track: Track, *, reason: str, extra: list[Reading] | None = None) -> None:
        assert track.pending is not None
        self.stopped = reason
        self.runtime.enforcement_mode_is("stopped")
        log.critical("enforcement_stopped", run_id=track.run_id, rule=track.rule, error=reason)
        notice = stopped_notice(self.journal.context(track, track.pending), reason=reason, now=self.clock.now())
        why = f"the API refused the key ({reason}); enforcement stopped until a config reload or restart"
        await self._conclude(track, "failed", reason=why, extra=extra or [], notice=notice)

    def delete_rule(self, name: str) -> RunRule | None:
        """The rule if it may delete: `action: delete` on a figure the API reports (config validation
        refuses the rest; checked again here, where the DELETE is decided)."""
        return next(
            (r for r in self.settings.run_rules if r.name == name and r.action == "delete" and is_measured(r.metric)),
            None,
        )

    def stale_after(self) -> float:
        return 2.0 * self.settings.poll.interval

    def cap_count(self, now: float) -> int:
        return deletes_in_last_hour(self.store, dry_run=self.settings.enforce.dry_run, now=now)

    def protection(self, run_id: str, run_name: str | None, *, now: float) -> str | None:
        patterns = self.settings.enforce.protect
        return protection_reason(self.store, patterns=patterns, run_id=run_id, run_name=run_name, now=now)

    async def _reread(self, run_id: str) -> tuple[str, RunSnapshot | None, str]:
        """(outcome, snapshot, error): outcome is ok, gone (404), unauthorized (401) or failed."""
        read = await self._reader(run_id)
        if read.kind in ("unauthorized", "not_found"):
            return ("unauthorized" if read.kind == "unauthorized" else "gone"), None, read.error
        if not read.ok:
            return "failed", None, f"{read.kind}: {read.error}"
        return "ok", read.snapshot, ""

    def _reread_evidence(self, rule: RunRule, snapshot: RunSnapshot) -> Reading:
        read = spec_of(rule.metric).read
        value = read(snapshot) if read is not None else None
        return Reading.of(snapshot, metric=rule.metric, value=value, limit=rule.limit, source="reread")

    def _wait(self, track: Track, reason: str) -> None:
        assert track.pending is not None
        if track.pending.waiting != reason:
            log.info("enforce_delete_waiting", run_id=track.run_id, rule=track.rule, reason=reason)
            track.pending.waiting = reason
