"""Which notifications' dedup keys can never be published again: only those may be pruned, so pruning
can never let a message be sent twice.

A dedup key is published again only when the daemon re-derives the same transition: after a crash
between publishing and saving the state that records it, or when an episode that is still open
re-emits one of its keys (a rule edited to fewer tiers and back, a renotify interval changed). So a
key can recur exactly as long as the episode it belongs to is open, or newer than the saved state:

- alert, renotify, resolve (`...:e{episode}...`, thread `{subject}:{rule}:e{episode}`): the alert
  state of subject x rule moves to a new episode only after the old one resolved and was notified.
  An episode is closed when the saved state is past it (a later episode), or is that episode at
  tier 0 with `last_notified_at` set (resolved). With no saved state the key is kept while the
  subject is a watched run or the wallet (the crash came before the state was first saved); a
  retired run cannot be read again (its tombstone stops discovery and polling).
- delete_pending, delete_done / refused / failed, enforcement_stopped (`...:p{episode}`): the episode
  is the id of its `delete_pending` record; it is open while that record, or the DELETE intent that
  followed it, has no concluding record. A closed episode's messages are never re-derived, and
  action ids are never reused (AUTOINCREMENT).
- delete_cap_reached (`{mode}:a{id}` or `{mode}:h{hour}`): names an hour window; a key is derived only
  while its oldest delete is inside the last hour, and notification_retention is at least an hour.
- monitor_blind / restored, run_unreadable / readable (`...:{since}`): keyed by the episode's start
  time; open episodes live in the `selfwatch_open_episodes` meta entry and keep their thread.
- anything else (a kind this version does not know): kept.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass

ALERT_KINDS = frozenset({"alert", "renotify", "resolve"})
DELETE_KINDS = frozenset({"delete_pending", "delete_done", "delete_refused", "delete_failed", "enforcement_stopped"})
WINDOW_KINDS = frozenset({"delete_cap_reached"})
SELFWATCH_KINDS = frozenset({"monitor_blind", "monitor_restored", "run_unreadable", "run_readable"})
# monitor.alerts.selfwatch keeps its open episodes here.
SELFWATCH_META_KEY = "selfwatch_open_episodes"

_ALERT_EPISODE = re.compile(r":e(\d+)$")
_DELETE_EPISODE = re.compile(r":p(\d+)$")

# Episodes of delete enforcement that nothing concluded yet (see monitor.enforce.restart): an open
# announcement, or an open DELETE intent (its episode is the announcement it followed).
_OPEN_DELETE_EPISODES = """
    SELECT a.id FROM actions a WHERE a.decision = 'delete_pending'
    AND NOT EXISTS (SELECT 1 FROM actions r WHERE r.intent_id = a.id)
    UNION
    SELECT COALESCE(a.intent_id, a.id) FROM actions a WHERE a.decision = 'delete_intent'
    AND NOT EXISTS (SELECT 1 FROM actions r WHERE r.intent_id = a.id)
"""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A closed notification old enough to prune, as far as deciding needs it."""

    id: int
    dedup_key: str
    kind: str
    thread_key: str
    subject: str
    rule: str


def candidate_of(
    id_: int, dedup_key: str, kind: str | None, thread_key: str | None, subject: object, rule: object
) -> Candidate:
    return Candidate(
        id=int(id_),
        dedup_key=str(dedup_key),
        kind=str(kind or ""),
        thread_key=str(thread_key or ""),
        subject=str(subject or ""),
        rule=str(rule or ""),
    )


class RecurrenceCheck:
    """Answers `can_recur` for candidates of one pruning step, reading what it needs once."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._open_deletes = {int(row[0]) for row in conn.execute(_OPEN_DELETE_EPISODES)}
        self._open_selfwatch = _open_selfwatch_episodes(conn)

    def can_recur(self, candidate: Candidate) -> bool:
        kind = candidate.kind
        if kind in ALERT_KINDS:
            return self._alert_can_recur(candidate)
        if kind in DELETE_KINDS:
            match = _DELETE_EPISODE.search(candidate.dedup_key)
            return match is None or int(match.group(1)) in self._open_deletes
        if kind in WINDOW_KINDS:
            return False
        if kind in SELFWATCH_KINDS:
            if self._open_selfwatch is None:
                return True  # the open episodes cannot be read: keep everything of theirs
            return candidate.dedup_key.partition(":")[2] in self._open_selfwatch
        return True

    def _alert_can_recur(self, candidate: Candidate) -> bool:
        match = _ALERT_EPISODE.search(candidate.thread_key)
        if match is None:
            return True
        episode = int(match.group(1))
        state = self._conn.execute(
            "SELECT episode, tier, last_notified_at FROM alerts WHERE subject = ? AND rule = ?",
            (candidate.subject, candidate.rule),
        ).fetchone()
        if state is None:
            watched = self._conn.execute(
                "SELECT 1 FROM known_runs WHERE run_id = ? AND retired_at IS NULL"
                " UNION ALL SELECT 1 FROM wallet_latest WHERE wallet_id = ?",
                (candidate.subject, candidate.subject),
            ).fetchone()
            return watched is not None
        saved_episode, tier, last_notified_at = int(state[0]), int(state[1]), state[2]
        if episode < saved_episode:
            return False
        resolved = episode == saved_episode and tier == 0 and last_notified_at is not None
        return not resolved


def _open_selfwatch_episodes(conn: sqlite3.Connection) -> set[str] | None:
    """`{key}:{since}` of each open selfwatch episode; None when the entry cannot be read."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (SELFWATCH_META_KEY,)).fetchone()
    if row is None or not row[0]:
        return set()
    try:
        data = json.loads(row[0])
        return {
            f"{key}:{int(episode['since'])}"
            for group in ("blind", "unreadable")
            for key, episode in dict(data.get(group, {})).items()
        }
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
