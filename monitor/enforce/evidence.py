"""The evidence enforcement records with each decision, typed.

The action log is the only memory that survives a restart, so everything a resumed countdown needs
(its deadline, the readings it announced, the DELETE attempts made) travels in the evidence of its
records. On disk it is the same JSON list as always, one object per entry, told apart by `source`:
readings ("poll": taken by the poller, "reread": taken just before the DELETE), the countdown
("schedule") and failed DELETE attempts ("attempt"). Entries of a kind this version does not know
are kept as they are, so a record read back and written again loses nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from monitor.snapshots import RunSnapshot

ReadingSource = Literal["poll", "reread"]


def _float(entry: Mapping[str, Any], key: str, default: float = 0.0) -> float:
    value = entry.get(key, default)
    return float(value) if value is not None else default


@dataclass(frozen=True, slots=True)
class Reading:
    """One reading as the audit trail keeps it: enough to re-check the decision by hand."""

    source: ReadingSource
    taken_at: float
    total_cost_usd: float
    metric: str
    value: float | None
    limit: float
    record_count: int | None
    status: str | None

    @classmethod
    def of(
        cls, snapshot: RunSnapshot, *, metric: str, value: float | None, limit: float, source: ReadingSource = "poll"
    ) -> Reading:
        return cls(
            source=source,
            taken_at=snapshot.taken_at,
            total_cost_usd=snapshot.total_cost_usd,
            metric=metric,
            value=value,
            limit=limit,
            record_count=snapshot.record_count,
            status=snapshot.status,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "taken_at": self.taken_at,
            "total_cost_usd": self.total_cost_usd,
            "metric": self.metric,
            "value": self.value,
            "limit": self.limit,
            "record_count": self.record_count,
            "status": self.status,
        }

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> Reading:
        value = entry.get("value")
        count = entry.get("record_count")
        return cls(
            source="reread" if entry.get("source") == "reread" else "poll",
            taken_at=_float(entry, "taken_at"),
            total_cost_usd=_float(entry, "total_cost_usd"),
            metric=str(entry.get("metric", "total_cost_usd")),
            value=None if value is None else float(value),
            limit=_float(entry, "limit"),
            record_count=count if isinstance(count, int) else None,
            status=entry.get("status"),
        )


@dataclass(frozen=True, slots=True)
class Schedule:
    """The countdown of a pending delete, as stored in its delete_pending (and later) records."""

    deadline: float
    grace_period: float
    run_name: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "source": "schedule",
            "deadline": self.deadline,
            "grace_period": self.grace_period,
            "run_name": self.run_name,
        }

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> Schedule:
        return cls(
            deadline=_float(entry, "deadline"),
            grace_period=_float(entry, "grace_period"),
            run_name=entry.get("run_name"),
        )


@dataclass(frozen=True, slots=True)
class Attempt:
    """A DELETE attempt that failed and will be retried (its record leaves the intent open)."""

    intent_id: int
    attempt: int
    of: int
    retry_at: float
    error: str

    def to_json(self) -> dict[str, Any]:
        return {
            "source": "attempt",
            "intent_id": self.intent_id,
            "attempt": self.attempt,
            "of": self.of,
            "retry_at": self.retry_at,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> Attempt:
        return cls(
            intent_id=int(entry.get("intent_id", 0)),
            attempt=int(entry.get("attempt", 0)),
            of=int(entry.get("of", 0)),
            retry_at=_float(entry, "retry_at"),
            error=str(entry.get("error", "")),
        )


@dataclass(frozen=True, slots=True)
class Evidence:
    """All the evidence of one record, in the order it is stored: readings, attempts, the schedule."""

    readings: tuple[Reading, ...] = ()
    attempts: tuple[Attempt, ...] = ()
    schedule: Schedule | None = None
    # Entries this version does not know, kept as they were.
    other: tuple[dict[str, Any], ...] = field(default=())

    @classmethod
    def of(
        cls, readings: Iterable[Reading] = (), *, attempts: Iterable[Attempt] = (), schedule: Schedule | None = None
    ) -> Evidence:
        return cls(readings=tuple(readings), attempts=tuple(attempts), schedule=schedule)

    def to_json(self) -> list[dict[str, Any]]:
        entries = [reading.to_json() for reading in self.readings]
        entries += [attempt.to_json() for attempt in self.attempts]
        entries += [dict(entry) for entry in self.other]
        if self.schedule is not None:
            entries.append(self.schedule.to_json())
        return entries

    @classmethod
    def from_json(cls, entries: Iterable[Mapping[str, Any]]) -> Evidence:
        readings: list[Reading] = []
        attempts: list[Attempt] = []
        other: list[dict[str, Any]] = []
        schedule: Schedule | None = None
        for entry in entries:
            source = entry.get("source")
            if source in ("poll", "reread"):
                readings.append(Reading.from_json(entry))
            elif source == "attempt":
                attempts.append(Attempt.from_json(entry))
            elif source == "schedule" and schedule is None:
                schedule = Schedule.from_json(entry)
            else:
                other.append(dict(entry))
        return cls(readings=tuple(readings), attempts=tuple(attempts), schedule=schedule, other=tuple(other))

    @property
    def last_reading(self) -> Reading | None:
        return self.readings[-1] if self.readings else None
