"""The SQL of pruning: each function deletes at most `limit` rows (or runs) in the caller's transaction,
through an index, and says whether anything is left. monitor.store.maintenance runs them in bounded
steps; the hot path (StateStore.save_run_snapshot) calls `prune_run_readings` for one run.

Why each rule is safe is said where it is applied; the notifications' is in monitor.store.recurrence.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from dataclasses import dataclass

from monitor.store.recurrence import RecurrenceCheck, candidate_of


def prune_run_readings(
    conn: sqlite3.Connection, run_id: str, *, before: float, newest_seq: int, keep_newest: int, limit: int
) -> int:
    """Delete one run's readings taken before `before`, never its `keep_newest` newest; returns how many.
    An index range on (run_id, taken_at): nothing to delete costs one seek."""
    cursor = conn.execute(
        "DELETE FROM run_history WHERE id IN (SELECT id FROM run_history WHERE run_id = ? AND taken_at < ?"
        " AND seq <= ? ORDER BY taken_at LIMIT ?)",
        (run_id, before, newest_seq - keep_newest, limit),
    )
    return cursor.rowcount


@dataclass(frozen=True, slots=True)
class RunCursor:
    """Where a sweep goes on: from this run id, itself included or not."""

    run_id: str = ""
    inclusive: bool = True


def sweep_run_history(
    conn: sqlite3.Connection, *, before: float, keep_newest: int, start: RunCursor, runs: int, rows: int
) -> tuple[int, RunCursor | None]:
    """The readings of runs the hot path no longer prunes (finished, or not polled), `runs` runs at a
    time from `start` on, deleting at most `rows`; returns (deleted, where to go on, or None when every
    run was swept). A run with more to delete than the budget is taken up again by the next step."""
    batch = conn.execute(
        f"SELECT run_id, seq FROM run_latest WHERE run_id {'>=' if start.inclusive else '>'} ? ORDER BY run_id LIMIT ?",
        (start.run_id, runs),
    ).fetchall()
    deleted = 0
    for run_id, seq in batch:
        budget = rows - deleted
        removed = prune_run_readings(
            conn, run_id, before=before, newest_seq=int(seq), keep_newest=keep_newest, limit=budget
        )
        deleted += removed
        if removed >= budget:
            return deleted, RunCursor(str(run_id), inclusive=True)
    if len(batch) < runs:
        return deleted, None
    return deleted, RunCursor(str(batch[-1][0]), inclusive=False)


def prune_wallet_history(conn: sqlite3.Connection, *, before: float, keep_newest: int, limit: int) -> int:
    """Wallet balances taken before `before`, never the `keep_newest` newest."""
    cursor = conn.execute(
        "DELETE FROM wallet_history WHERE id IN (SELECT id FROM wallet_history WHERE taken_at < ?"
        " AND id <= (SELECT MAX(id) FROM wallet_history) - ? ORDER BY taken_at LIMIT ?)",
        (before, keep_newest, limit),
    )
    return cursor.rowcount


# -- retired runs ------------------------------------------------------------------------------------


def retire_run(conn: sqlite3.Connection, run_id: str, *, at: float) -> None:
    """Drop a finished run's readings and alert state; keep its id as a tombstone (finished and retired),
    so a restart neither polls it (the poller restores it as finished) nor discovers it again."""
    for table, column in (("run_latest", "run_id"), ("run_history", "run_id"), ("alerts", "subject")):
        conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (run_id,))
    conn.execute(
        "INSERT INTO known_runs (run_id, source, first_seen, finished_at, retired_at) VALUES (?, 'discovered', ?, ?, ?)"
        " ON CONFLICT (run_id) DO UPDATE SET retired_at = excluded.retired_at,"
        " finished_at = COALESCE(known_runs.finished_at, excluded.finished_at)",
        (run_id, at, at, at),
    )


def stale_finished_runs(conn: sqlite3.Connection, *, finished_before: float, limit: int) -> list[str]:
    """Finished runs past their retention that were never retired: a run whose retention passed while
    the daemon was down is not restored into memory at the next start, so nothing else retires it."""
    rows = conn.execute(
        "SELECT run_id FROM known_runs WHERE finished_at < ? AND retired_at IS NULL ORDER BY finished_at LIMIT ?",
        (finished_before, limit),
    ).fetchall()
    return [str(row[0]) for row in rows]


def prune_tombstones(
    conn: sqlite3.Connection, *, kept: int, configured: Collection[str], limit: int
) -> tuple[int, bool]:
    """Tombstones of discovered runs beyond the newest `kept` by finish time. Discovery reads only the
    newest watch.wallet_rows billing rows, and every run that finished later has a newer row, so a run
    with that many (times a margin) finishing after it cannot be discovered again. Runs named in
    watch.runs keep theirs: a restart would poll them. Returns (deleted, done)."""
    # The finish time of the kept-th newest tombstone: older ones go (ties with it stay).
    row = conn.execute(
        "SELECT finished_at FROM known_runs WHERE retired_at IS NOT NULL AND finished_at IS NOT NULL"
        " ORDER BY finished_at DESC LIMIT 1 OFFSET ?",
        (max(kept - 1, 0),),
    ).fetchone()
    if row is None:
        return 0, True
    candidates = conn.execute(
        "SELECT run_id, source FROM known_runs WHERE retired_at IS NOT NULL AND finished_at < ?"
        " ORDER BY finished_at LIMIT ?",
        (row[0], limit),
    ).fetchall()
    doomed = [(run_id,) for run_id, source in candidates if source == "discovered" and run_id not in configured]
    conn.executemany("DELETE FROM known_runs WHERE run_id = ?", doomed)
    return len(doomed), len(candidates) < limit


# -- notifications -----------------------------------------------------------------------------------

# Closed on every channel (delivered or superseded) before the cutoff, and not folded into an item that
# is still open (its message names the tiers it supersedes when it goes out).
_CLOSED_BEFORE = """
    NOT EXISTS (SELECT 1 FROM outbox o WHERE o.notification_id = n.id
                AND COALESCE(o.delivered_at, o.superseded_at, :cutoff) >= :cutoff)
    AND NOT EXISTS (SELECT 1 FROM outbox o JOIN outbox b ON b.id = o.superseded_by
                    WHERE o.notification_id = n.id AND b.delivered_at IS NULL AND b.superseded_at IS NULL)
"""


@dataclass(frozen=True, slots=True)
class NotificationsPruned:
    notifications: int
    outbox: int
    thread_refs: int
    # (created_at, id) of the last candidate looked at, or None when there are no more.
    cursor: tuple[float, int] | None


def prune_notifications(
    conn: sqlite3.Connection, *, before: float, after: tuple[float, int], limit: int
) -> NotificationsPruned:
    """Notifications created before `before`, closed on every channel before it, whose dedup key can
    never be published again; with their outbox rows, and the thread refs no notification uses any more."""
    rows = conn.execute(
        "SELECT n.id, n.created_at, n.dedup_key, n.kind, n.thread_key, json_extract(n.data, '$.subject'),"
        " json_extract(n.data, '$.rule') FROM notifications n"
        f" WHERE n.created_at < :cutoff AND (n.created_at, n.id) > (:at, :id) AND {_CLOSED_BEFORE}"
        " ORDER BY n.created_at, n.id LIMIT :limit",
        {"cutoff": before, "at": after[0], "id": after[1], "limit": limit},
    ).fetchall()
    # The scan above may skip open items; the cursor moves past what it read either way.
    check = RecurrenceCheck(conn)
    doomed = [candidate_of(row[0], *row[2:]) for row in rows]
    doomed = [c for c in doomed if not check.can_recur(c)]
    outbox = 0
    for candidate in doomed:
        outbox += conn.execute("DELETE FROM outbox WHERE notification_id = ?", (candidate.id,)).rowcount
        conn.execute("DELETE FROM notifications WHERE id = ?", (candidate.id,))
    threads = {c.thread_key for c in doomed if c.thread_key}
    refs = 0
    for thread_key in threads:
        refs += conn.execute(
            "DELETE FROM thread_refs WHERE thread_key = ?"
            " AND NOT EXISTS (SELECT 1 FROM notifications WHERE thread_key = ? AND thread_key != '')",
            (thread_key, thread_key),
        ).rowcount
    cursor = (float(rows[-1][1]), int(rows[-1][0])) if len(rows) >= limit else None
    return NotificationsPruned(notifications=len(doomed), outbox=outbox, thread_refs=refs, cursor=cursor)


# -- the action log ----------------------------------------------------------------------------------

# Runs with a delete episode still open: a pending announcement or a DELETE intent that nothing
# concludes. Every record of such a run stays (a restart rebuilds the episode from them and counts
# the failed attempts of its intent).
_OPEN_EPISODE_RUNS = """
    SELECT DISTINCT a.run_id FROM actions a WHERE a.decision IN ('delete_pending', 'delete_intent')
    AND NOT EXISTS (SELECT 1 FROM actions r WHERE r.intent_id = a.id)
"""

# Deleted one by one in age order, each condition checked at its own delete:
# - a record that concludes another goes only after the one it concludes (or a restart would find
#   that one open again and act on it);
# - the newest record of each run x rule stays while the run is watched (not retired): enforcement
#   reads it to know a run is already deleted, or that a dry run already reported it.
_DELETE_ACTION = """
    DELETE FROM actions WHERE id = :id
    AND (intent_id IS NULL OR NOT EXISTS (SELECT 1 FROM actions p WHERE p.id = actions.intent_id))
    AND (EXISTS (SELECT 1 FROM actions b WHERE b.run_id = actions.run_id AND b.rule = actions.rule
                 AND b.id > actions.id)
         OR (NOT :configured
             AND NOT EXISTS (SELECT 1 FROM known_runs k WHERE k.run_id = actions.run_id AND k.retired_at IS NULL)))
"""


def prune_actions(
    conn: sqlite3.Connection, *, before: float, after: tuple[float, int], configured: Collection[str], limit: int
) -> tuple[int, tuple[float, int] | None]:
    """Action records created before `before` (see the rules above; a run named in watch.runs counts as
    watched even before the store first saw it); returns (deleted, cursor or None)."""
    open_runs = {str(row[0]) for row in conn.execute(_OPEN_EPISODE_RUNS)}
    rows = conn.execute(
        "SELECT id, created_at, run_id FROM actions WHERE created_at < ? AND (created_at, id) > (?, ?)"
        " ORDER BY created_at, id LIMIT ?",
        (before, after[0], after[1], limit),
    ).fetchall()
    deleted = 0
    for id_, _created_at, run_id in rows:
        if run_id not in open_runs:
            params = {"id": id_, "configured": run_id in configured}
            deleted += conn.execute(_DELETE_ACTION, params).rowcount
    cursor = (float(rows[-1][1]), int(rows[-1][0])) if len(rows) >= limit else None
    return deleted, cursor


def prune_protections(conn: sqlite3.Connection, *, now: float, limit: int) -> int:
    """Runtime protections that expired: nothing reads them (`protections(now)` leaves them out)."""
    cursor = conn.execute(
        "DELETE FROM protections WHERE run_id IN (SELECT run_id FROM protections WHERE until IS NOT NULL"
        " AND until <= ? LIMIT ?)",
        (now, limit),
    )
    return cursor.rowcount
