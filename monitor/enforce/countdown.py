"""A countdown's announcement and deadline: how long the grace period is (cut for a run too fast to
wait it out, enforce.grace_overspend_cap), what the action log and the announcement say, and bringing
the deadline forward once when the confirmed pace is faster than the one announced. Whether a
countdown may start at all is the enforcer's (monitor.enforce.safety.episode_blocked).
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from monitor.clock import Clock
from monitor.config.settings import Settings
from monitor.enforce.evidence import Evidence, Projection, Reading, Schedule
from monitor.enforce.journal import Journal
from monitor.enforce.messages import advanced_notice, pending_reason, utc
from monitor.enforce.projection import advanced_deadline, shortened_grace
from monitor.enforce.state import PendingDelete, Track

log = structlog.get_logger(__name__)


class Countdowns:
    """Starts and moves countdowns for the enforcer (which decides whether one may start, and executes it)."""

    def __init__(
        self, *, journal: Journal, clock: Clock, settings: Callable[[], Settings], cap_count: Callable[[float], int]
    ) -> None:
        self.journal = journal
        self.clock = clock
        self._settings = settings
        self._cap_count = cap_count

    def announce(
        self, track: Track, *, readings: list[Reading], projection: Projection | None, rate: float | None
    ) -> None:
        """Record `delete_pending` (the evidence and the deadline), then announce it: on confirmed
        readings over the limit (`rate`: their pace, which may shorten the grace period), or
        (`projection`) ahead of the crossing, quoting the projection."""
        now = self.clock.now()
        enforce = self._settings().enforce
        grace, cut = shortened_grace(
            enforce.grace_period,
            limit=readings[-1].limit if readings else None,
            rate_per_hour=projection.rate_per_hour if projection is not None else rate,
            time_to_limit=(projection.time_to_limit or 0.0) if projection is not None else 0.0,
            overspend_cap=enforce.grace_overspend_cap,
        )
        schedule = Schedule(deadline=now + grace, grace_period=grace, run_name=track.run_name)
        episode = self.journal.record(
            track,
            "delete_pending",
            reason=pending_reason(
                confirmations=len(readings), projection=projection, deadline=schedule.deadline, dry_run=enforce.dry_run
            ),
            evidence=Evidence.of(readings, schedule=schedule, projection=projection),
            intent_id=None,
            dry_run=enforce.dry_run,
        )
        track.pending = PendingDelete(
            episode=episode,
            deadline=schedule.deadline,
            deadline_mono=self.clock.monotonic() + grace,
            grace_period=schedule.grace_period,
            dry_run=enforce.dry_run,
            run_name=track.run_name,
            announced=readings,
            anticipated=projection,
        )
        count = self._cap_count(now)
        note = cut
        if count >= enforce.max_deletes_per_hour:
            note = (note + "\n" if note else "") + (
                f"The hourly delete cap is reached right now ({count} of {enforce.max_deletes_per_hour}):"
                " unless it frees up by the deadline, this delete will be refused."
            )
        self.journal.publish(self.journal.pending_notice(track, now=now, note=note))

    def advance(self, track: Track, *, rate: float | None) -> bool:
        """Bring a countdown's deadline forward, once, when the confirmed pace would spend more than
        enforce.grace_overspend_cap of the limit past it by then (it was announced on an early, lower
        estimate). Announced in the thread and logged with the readings; after a restart the announced
        deadline applies again, the later one, which errs on the side of the run. True when it did."""
        pending = track.pending
        assert pending is not None
        reading = track.confirmations[-1]
        cap = self._settings().enforce.grace_overspend_cap
        if pending.advanced or pending.intent_id is not None or reading.value is None or cap is None:
            return False
        seconds = advanced_deadline(value=reading.value, limit=reading.limit, rate_per_hour=rate, overspend_cap=cap)
        mono = self.clock.monotonic()
        if seconds is None or mono + seconds >= pending.deadline_mono - self._settings().poll.min_interval:
            return False
        assert rate is not None
        was, now = pending.deadline, self.clock.now()
        pending.deadline, pending.deadline_mono, pending.advanced = now + seconds, mono + seconds, True
        log.warning(
            "enforce_deadline_advanced",
            run_id=track.run_id,
            rule=track.rule,
            deadline=utc(pending.deadline),
            was=utc(was),
            rate_per_hour=round(rate, 2),
            evidence=[r.to_json() for r in track.confirmations],
        )
        ctx = self.journal.context(track, pending)
        self.journal.publish(
            advanced_notice(
                ctx,
                readings=list(track.confirmations),
                deadline=pending.deadline,
                was=was,
                rate_per_hour=rate,
                overspend_cap=cap,
                now=now,
            )
        )
        return True
