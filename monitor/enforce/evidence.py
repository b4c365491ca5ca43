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
    # Kill-ahead: the value projected at the next reading that can show a new landing.
    projected: float | None = None

    @classmethod
    def of(
        cls,
        snapshot: RunSnapshot,
        *,
        metric: str,
        value: float | None,
        limit: float,
        source: ReadingSource = "poll",
        projected: float | None = None,
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
            projected=projected,
        )

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "source": self.source,
            "taken_at": self.taken_at,
            "total_cost_usd": self.total_cost_usd,
            "metric": self.metric,
            "value": self.value,
            "limit": self.limit,
            "record_count": self.record_count,
            "status": self.status,
        }
        if self.projected is not None:
            entry["projected"] = self.projected
        return entry

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
            projected=float(entry["projected"]) if isinstance(entry.get("projected"), int | float) else None,
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
class Projection:
    """The projection behind a countdown started ahead of the crossing, or a kill-ahead delete."""

    basis: Literal["anticipated", "kill_ahead"]
    rate_per_hour: float
    landings: int
    landing_gap: float | None
    steady: bool
    # Seconds until the limit at this pace (anticipated), and the value projected at the next
    # reading that can show a new landing (kill-ahead).
    time_to_limit: float | None = None
    projected_value: float | None = None
    # Kill-ahead: how far ahead the value was projected (one landing gap plus one poll), seconds.
    horizon: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "source": "projection",
            "horizon": self.horizon,
            "basis": self.basis,
            "rate_per_hour": self.rate_per_hour,
            "landings": self.landings,
            "landing_gap": self.landing_gap,
            "steady": self.steady,
            "time_to_limit": self.time_to_limit,
            "projected_value": self.projected_value,
        }

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> Projection:
        def number(key: str) -> float | None:
            value = entry.get(key)
            return float(value) if isinstance(value, int | float) else None

        return cls(
            basis="kill_ahead" if entry.get("basis") == "kill_ahead" else "anticipated",
            rate_per_hour=_float(entry, "rate_per_hour"),
            landings=int(entry.get("landings", 0)),
            landing_gap=number("landing_gap"),
            steady=bool(entry.get("steady", False)),
            time_to_limit=number("time_to_limit"),
            projected_value=number("projected_value"),
            horizon=number("horizon"),
        )


@dataclass(frozen=True, slots=True)
class Evidence:
    """All the evidence of one record, in the order it is stored: readings, attempts, the schedule."""

    readings: tuple[Reading, ...] = ()
    attempts: tuple[Attempt, ...] = ()
    schedule: Schedule | None = None
    projection: Projection | None = None
    # Entries this version does not know, kept as they were.
    other: tuple[dict[str, Any], ...] = field(default=())

    @classmethod
    def of(
        cls,
        readings: Iterable[Reading] = (),
        *,
        attempts: Iterable[Attempt] = (),
        schedule: Schedule | None = None,
        projection: Projection | None = None,
    ) -> Evidence:
        return cls(readings=tuple(readings), attempts=tuple(attempts), schedule=schedule, projection=projection)

    def to_json(self) -> list[dict[str, Any]]:
        entries = [reading.to_json() for reading in self.readings]
        entries += [attempt.to_json() for attempt in self.attempts]
        entries += [dict(entry) for entry in self.other]
        if self.projection is not None:
            entries.append(self.projection.to_json())
        if self.schedule is not None:
            entries.append(self.schedule.to_json())
        return entries

    @classmethod
    def from_json(cls, entries: Iterable[Mapping[str, Any]]) -> Evidence:
        readings: list[Reading] = []
        attempts: list[Attempt] = []
        other: list[dict[str, Any]] = []
        schedule: Schedule | None = None
        projection: Projection | None = None
        for entry in entries:
            source = entry.get("source")
            if source in ("poll", "reread"):
                readings.append(Reading.from_json(entry))
            elif source == "attempt":
                attempts.append(Attempt.from_json(entry))
            elif source == "schedule" and schedule is None:
                schedule = Schedule.from_json(entry)
            elif source == "projection" and projection is None:
                projection = Projection.from_json(entry)
            else:
                other.append(dict(entry))
        return cls(
            readings=tuple(readings),
            attempts=tuple(attempts),
            schedule=schedule,
            projection=projection,
            other=tuple(other),
        )

    @property
    def last_reading(self) -> Reading | None:
        return self.readings[-1] if self.readings else None
