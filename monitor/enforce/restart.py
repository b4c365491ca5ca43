"""After a restart: open episodes rebuilt from the action log, the only memory that survives.

- A `delete_pending` with nothing after it: its countdown resumes (no second announcement; the
  outbox drops a re-published one). Its readings confirm only if they are still fresh.
- A `delete_intent` with no result: the DELETE may or may not have reached the API; the executor
  re-reads the run before anything else (monitor.enforce.enforcer, `_landed_before`).
"""

from __future__ import annotations

from monitor.enforce.evidence import Schedule
from monitor.enforce.safety import RECENT_ACTIONS
from monitor.enforce.state import PendingDelete, Track
from monitor.records import ActionRecord
from monitor.store.state_store import StateStore


def _schedule(record: ActionRecord) -> Schedule:
    return record.evidence.schedule or Schedule(deadline=record.created_at, grace_period=0.0, run_name=None)


def resume_pending(
    track: Track, record: ActionRecord, *, now: float, now_mono: float, stale_after: float, confirm_polls: int
) -> bool:
    """Rebuild a countdown on `track`; True when its evidence is still fresh enough to confirm."""
    assert record.id is not None
    schedule = _schedule(record)
    readings = list(record.evidence.readings)
    track.run_name = schedule.run_name
    # The wall clock is all a restart has; the wait left is never more than the grace period.
    left = min(max(schedule.deadline - now, 0.0), schedule.grace_period)
    track.pending = PendingDelete(
        episode=record.id,
        deadline=schedule.deadline,
        deadline_mono=now_mono + left,
        grace_period=schedule.grace_period,
        dry_run=record.dry_run,
        run_name=schedule.run_name,
        announced=readings,
        anticipated=record.evidence.projection,
    )
    fresh = bool(readings) and now - readings[-1].taken_at <= stale_after
    # Stale evidence is not thrown away (the announcement quotes it) but cannot confirm: fresh readings must.
    track.confirmations = readings[-confirm_polls:] if fresh else []
    if readings:
        track.last_taken_at = readings[-1].taken_at
    return fresh


def resume_intent(track: Track, record: ActionRecord, *, store: StateStore, now: float, now_mono: float) -> None:
    """Rebuild an episode whose DELETE outcome is unknown, due at once, counting the attempts made."""
    assert record.id is not None
    schedule = _schedule(record)
    attempts = sum(
        1
        for earlier in store.actions(run_id=record.run_id, limit=RECENT_ACTIONS)
        if earlier.decision == "failed" and any(a.intent_id == record.id for a in earlier.evidence.attempts)
    )
    track.run_name = schedule.run_name
    track.pending = PendingDelete(
        episode=record.intent_id if record.intent_id is not None else record.id,
        deadline=now,
        deadline_mono=now_mono,
        grace_period=schedule.grace_period,
        dry_run=record.dry_run,
        run_name=schedule.run_name,
        announced=list(record.evidence.readings),
        intent_id=record.id,
        restarted=True,
        attempt=attempts,
    )
