"""What enforcement keeps per (run, rule): the readings counted towards a delete, and the episode
(the announced countdown) in progress. Rebuilt from the action log after a restart (monitor.enforce.restart).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from monitor.enforce.evidence import Projection, Reading, Schedule
from monitor.snapshots import RunSnapshot

# What one reading did to a track's run of confirmations (see Track.count).
Counted = Literal["seen", "unknown", "under", "reset", "counted"]


@dataclass(slots=True)
class PendingDelete:
    """A delete that has been announced and not yet concluded (the episode)."""

    # The episode's delete_pending record: notification keys derive from its id.
    episode: int
    # Wall time, as announced and stored; what decides is `deadline_mono`, on the monotonic clock, so
    # a host clock that jumps forward cannot cut the grace period short (nor one that jumps back stretch it).
    deadline: float
    deadline_mono: float
    grace_period: float
    dry_run: bool
    run_name: str | None
    # The readings quoted in the announcement (re-publishing after a restart quotes the same ones).
    announced: list[Reading] = field(default_factory=list)
    # Set once a delete_intent is written: the DELETE may have been sent, so only a result closes it.
    intent_id: int | None = None
    # The intent was found open at start: its DELETE may have reached the API before the restart.
    restarted: bool = False
    # DELETE attempts made under the intent (retried with backoff after 5xx, timeouts, 429).
    attempt: int = 0
    # The last "not yet" reason logged, so waiting is logged when it changes, not every tick.
    waiting: str | None = None
    # The projection that started the countdown ahead of the crossing (None: started on readings over
    # the limit): readings under the limit call it off only when the projection no longer holds.
    anticipated: Projection | None = None
    # The deadline was brought forward once (enforce.grace_overspend_cap on the confirmed pace): never
    # again in this episode, so a wobbling pace cannot post a message per reading.
    advanced: bool = False

    def schedule(self) -> Schedule:
        return Schedule(deadline=self.deadline, grace_period=self.grace_period, run_name=self.run_name)


@dataclass(slots=True)
class Track:
    """Enforcement's view of one run under one delete rule."""

    run_id: str
    rule: str
    # The newest reading seen, counted or not: a reading at or before it is the same one seen again.
    # Compared on the monotonic clock when both readings were taken in this process.
    last_taken_at: float | None = None
    last_taken_mono: float | None = None
    # Monotonic time of the newest confirmation (gaps between confirmations are measured on it).
    last_confirmed_mono: float | None = None
    last_record_count: int | None = None
    run_name: str | None = None
    # Consecutive fresh readings over the limit, oldest first (at most confirm_polls are kept).
    confirmations: list[Reading] = field(default_factory=list)
    pending: PendingDelete | None = None
    # The last reason a new episode was not started, logged once.
    skipped: str | None = None
    # Kill-ahead: the projection of the newest reading, when it crosses before the next reading can.
    kill_projection: Projection | None = None

    def seen_before(self, snapshot: RunSnapshot) -> bool:
        """The same reading handed over again (or an older one): it counts once."""
        if self.last_taken_mono is not None and snapshot.taken_mono is not None:
            return snapshot.taken_mono <= self.last_taken_mono
        return self.last_taken_at is not None and snapshot.taken_at <= self.last_taken_at

    def count(
        self, snapshot: RunSnapshot, reading: Reading, *, breached: bool, stale_after: float, keep: int
    ) -> Counted:
        """Count one new reading towards a delete:
        - "seen": the same reading again (nothing changes);
        - "unknown": no value (neither a breach nor a recovery: the run of confirmations breaks);
        - "under": not over the limit, or the run finished (the run of confirmations breaks);
        - "reset": over the limit but not consecutive (a gap longer than `stale_after`) or not the same
          series (the record count fell): counting starts again, from this reading unless the count fell;
        - "counted": one more consecutive fresh reading over the limit (the newest `keep` are kept)."""
        if self.seen_before(snapshot):
            return "seen"
        went_back = self.last_record_count is not None and snapshot.record_count < self.last_record_count
        previous_mono = self.last_confirmed_mono
        self.last_taken_at = snapshot.taken_at
        self.last_taken_mono = snapshot.taken_mono
        self.last_record_count = snapshot.record_count
        self.run_name = snapshot.run_name or self.run_name
        if reading.value is None or snapshot.terminal or not breached:
            self.confirmations.clear()
            return "unknown" if reading.value is None else "under"
        if self.confirmations and snapshot.taken_mono is not None and previous_mono is not None:
            gap = snapshot.taken_mono - previous_mono
        else:
            gap = snapshot.taken_at - self.confirmations[-1].taken_at if self.confirmations else 0.0
        outcome: Counted = "counted"
        if went_back or gap > stale_after:
            self.confirmations.clear()
            outcome = "reset"
            if went_back:
                return outcome
        self.confirmations.append(reading)
        self.last_confirmed_mono = snapshot.taken_mono
        del self.confirmations[:-keep]
        return outcome
