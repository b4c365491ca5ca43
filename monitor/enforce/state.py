"""What enforcement keeps per (run, rule), and how it is written into and read back from the action log.

The action log is the only memory that survives a restart, so everything a resumed countdown needs
(its deadline, its episode, the readings it announced) travels in the `evidence` of its records:
readings are dicts with `source` "poll" (taken by the poller) or "reread" (taken by the executor just
before the DELETE); one dict with `source` "schedule" carries the countdown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monitor.snapshots import RunSnapshot

READING_SOURCES = ("poll", "reread")


def reading_evidence(
    snapshot: RunSnapshot, *, metric: str, value: float | None, limit: float, source: str = "poll"
) -> dict[str, Any]:
    """One reading as the audit trail keeps it: enough to re-check the decision by hand."""
    return {
        "source": source,
        "taken_at": snapshot.taken_at,
        "total_cost_usd": snapshot.total_cost_usd,
        "metric": metric,
        "value": value,
        "limit": limit,
        "record_count": snapshot.record_count,
        "status": snapshot.status,
    }


def readings_of(evidence: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in evidence if entry.get("source") in READING_SOURCES]


@dataclass(frozen=True, slots=True)
class Schedule:
    """The countdown of a pending delete, as stored in its delete_pending (and delete_intent) record."""

    deadline: float
    grace_period: float
    run_name: str | None

    def to_evidence(self) -> dict[str, Any]:
        return {
            "source": "schedule",
            "deadline": self.deadline,
            "grace_period": self.grace_period,
            "run_name": self.run_name,
        }

    @classmethod
    def from_evidence(cls, evidence: list[dict[str, Any]]) -> Schedule | None:
        for entry in evidence:
            if entry.get("source") == "schedule":
                return cls(
                    deadline=float(entry.get("deadline", 0.0)),
                    grace_period=float(entry.get("grace_period", 0.0)),
                    run_name=entry.get("run_name"),
                )
        return None


def attempt_evidence(*, intent_id: int, attempt: int, of: int, retry_at: float, error: str) -> dict[str, Any]:
    """A DELETE attempt that failed and will be retried (its record leaves the intent open)."""
    return {
        "source": "attempt",
        "intent_id": intent_id,
        "attempt": attempt,
        "of": of,
        "retry_at": retry_at,
        "error": error,
    }


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
    announced: list[dict[str, Any]] = field(default_factory=list)
    # Set once a delete_intent is written: the DELETE may have been sent, so only a result closes it.
    intent_id: int | None = None
    # The intent was found open at start: its DELETE may have reached the API before the restart.
    restarted: bool = False
    # DELETE attempts made under the intent (retried with backoff after 5xx, timeouts, 429).
    attempt: int = 0
    # The last "not yet" reason logged, so waiting is logged when it changes, not every tick.
    waiting: str | None = None

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
    confirmations: list[dict[str, Any]] = field(default_factory=list)
    pending: PendingDelete | None = None
    # The last reason a new episode was not started, logged once.
    skipped: str | None = None
