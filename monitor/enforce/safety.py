"""The questions the enforcement executor asks before a delete, as small functions of plain data.

Each answers with a reason (a sentence for the log and the audit trail) or None when the check
passes, so the executor can record exactly why it did not act.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from monitor.config.durations import format_duration
from monitor.enforce.evidence import Projection, Reading
from monitor.enforce.state import Track
from monitor.exporter.read_health import RunHealth
from monitor.rules.config import RunRule
from monitor.rules.evaluate import evaluate_run
from monitor.snapshots import RunSnapshot
from monitor.store.state_store import StateStore

HOUR = 3600.0
# A DELETE the API keeps failing (5xx, timeouts, 429 after the client's own retries) is tried again
# on later ticks after these delays, then given up loudly: 30 s, 1 m, 2 m, 4 m between the 5 attempts.
MAX_DELETE_ATTEMPTS = 5
RETRY_BASE_SECONDS = 30.0
RETRY_MAX_SECONDS = 600.0
# Decisions that mean the run is gone: no new episode starts for it, whatever the rule.
GONE_DECISIONS = frozenset({"deleted", "reconciled", "already_gone"})
# How far back the action log is read to find a run's last decisions (they are few per run).
RECENT_ACTIONS = 200


def retry_delay(attempt: int) -> float:
    """Seconds before DELETE attempt `attempt + 1`, after attempt `attempt` failed (attempt >= 1)."""
    return min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2.0 ** max(attempt - 1, 0))


def static_protection(patterns: list[str], *, run_id: str, run_name: str | None) -> str | None:
    """The first `enforce.protect` entry that matches the run's id or its name (globs allowed)."""
    for pattern in patterns:
        if fnmatchcase(run_id, pattern) or (run_name is not None and fnmatchcase(run_name, pattern)):
            return pattern
    return None


def protection_reason(
    store: StateStore, *, patterns: list[str], run_id: str, run_name: str | None, now: float
) -> str | None:
    """Why the run must not be deleted, or None. Runtime protections are read from the store each time,
    so `prime-cost-monitor protect RUN` takes effect in a running daemon without a restart."""
    pattern = static_protection(patterns, run_id=run_id, run_name=run_name)
    if pattern is not None:
        return f"enforce.protect matches {pattern!r}"
    for protection in store.protections(now=now):
        if protection.run_id == run_id:
            until = (
                "until unprotected" if protection.until is None else f"for {format_duration(protection.until - now)}"
            )
            why = f": {protection.reason}" if protection.reason else ""
            return f"protected at runtime {until}{why}"
    return None


def freshness_problem(
    health: RunHealth | None,
    confirmations: Sequence[Reading],
    *,
    now_mono: float,
    last_confirmed_mono: float | None,
    stale_after: float,
    confirm_polls: int,
) -> str | None:
    """Why the readings behind a delete cannot be trusted right now, or None.

    A delete needs: a successful latest poll, taken within `stale_after` (twice the poll interval), and
    `confirm_polls` consecutive fresh readings over the limit ending with that latest reading. Ages
    are measured on the monotonic clock, so a jump of the host clock cannot make old data look fresh.
    """
    if health is None or health.last_success_at is None or health.last_success_mono is None:
        return "no successful reading of the run in this process yet"
    if health.last_poll_failed:
        return f"the last poll failed ({health.last_error or 'unknown error'})"
    age = now_mono - health.last_success_mono
    if age > stale_after:
        return (
            f"the last successful reading is {format_duration(age)} old "
            f"(older than twice poll.interval, {format_duration(stale_after)})"
        )
    if len(confirmations) < confirm_polls:
        return f"{len(confirmations)} of {confirm_polls} consecutive fresh readings over the limit"
    if last_confirmed_mono is None or last_confirmed_mono < health.last_success_mono:
        return "the newest reading has not been evaluated against the rule"
    return None


def counted_decisions(*, dry_run: bool) -> tuple[str, ...]:
    """What counts against max_deletes_per_hour: deletes done (live), or deletes that would be done (dry run)."""
    return ("would_delete",) if dry_run else ("deleted", "reconciled")


def deletes_in_last_hour(store: StateStore, *, dry_run: bool, now: float) -> int:
    return store.count_actions(decisions=counted_decisions(dry_run=dry_run), since=now - HOUR)


def cap_window(store: StateStore, *, dry_run: bool, now: float) -> tuple[str, float | None]:
    """Names the hour window that filled the cap, and when its oldest delete was done.

    The key is the oldest delete still inside the last hour: the same deletes filling the cap give
    the same key (one alert), a new window that fills again gives a new one.
    """
    decisions = counted_decisions(dry_run=dry_run)
    records = store.actions(since=now - HOUR, limit=100_000)
    counted = [record for record in records if record.decision in decisions and record.id is not None]
    mode = "dry" if dry_run else "live"
    if counted:
        oldest = min(counted, key=lambda record: record.id or 0)
        return f"{mode}:a{oldest.id}", oldest.created_at
    # A cap of 0 refuses every delete: one alert per clock hour.
    return f"{mode}:h{int(now // HOUR)}", None


def not_deletable(
    rule: RunRule,
    snapshot: RunSnapshot,
    *,
    now: float,
    burn_window: float,
    protection: str | None,
    kill_projection: Projection | None = None,
) -> str | None:
    """Why a fresh re-read says not to delete after all, or None. With a kill-ahead projection, a run
    under the limit may still go: if the re-read, at the projected pace, crosses before the next
    reading could show it."""
    if snapshot.terminal:
        return f"the run is {snapshot.status} on the re-read: it finished or was stopped outside the monitor"
    evaluation = evaluate_run(rule, snapshot, [], now=now, burn_window=burn_window)
    if evaluation is None:
        return "the rule no longer selects the run"
    if not evaluation.breached:
        if kill_projection is None or evaluation.value is None:
            return "the run is back under the limit on the re-read"
        added = kill_projection.rate_per_hour / 3600.0 * (kill_projection.horizon or 0.0)
        if evaluation.value + added < rule.limit:
            return "the re-read no longer projects the crossing before the next reading"
    return None if protection is None else f"the run is protected: {protection}"


def episode_blocked(
    store: StateStore,
    track: Track,
    *,
    stopped: str | None,
    gave_up: bool,
    protection: str | None,
    dry_run_on_same_config: str | None,
    cap_full: bool,
) -> str | None:
    """Why no new countdown starts for this run and rule, or None. `dry_run_on_same_config`: the config
    hash when in dry run (a dry run reports each breach once per config)."""
    if stopped is not None:
        return f"enforcement is stopped: {stopped}"
    if gave_up:
        return "gave up after repeated DELETE failures; reload the config to try again"
    if protection is not None:
        return f"the run is protected: {protection}"
    recent = store.actions(run_id=track.run_id, limit=RECENT_ACTIONS)
    gone = next((record for record in recent if record.decision in GONE_DECISIONS), None)
    if gone is not None:
        return f"the run is already deleted or gone (action {gone.id}: {gone.decision})"
    last = next((record for record in recent if record.rule == track.rule), None)
    if last is None:
        return None
    if last.decision == "would_delete" and last.config_hash == dry_run_on_same_config:
        return f"the dry run already recorded that it would delete this run (action {last.id})"
    if last.decision == "refused" and cap_full:
        return f"the hourly delete cap is still reached (refused in action {last.id})"
    return None
