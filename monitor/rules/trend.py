"""How fast a run's totals grow: the recent readings kept compactly, and the trend read from them once
per reading.

A `RunWindow` keeps, for one run, only what a rate needs: the time of each reading and the value of
each total a rule watches, as arrays of floats (16 bytes or so a reading, where a whole reading
object costs about 790). It is trimmed to the burn window as readings arrive, and reset after a
billing correction (the readings before it no longer add up with the new totals).

The rate follows the step edges, as `monitor.rules.evaluate` explains: usage lands in steps, so the
slope is taken between the first and last readings that showed a new total. The same edges give how
often usage lands (the landing gap: the billing lag a poll cannot beat), how many landings the rate
rests on, and whether it is steady: what anticipation and kill-ahead need before they may act on a
projection.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

_HOUR = 3600.0
# A rate is steady when the last landing interval's pace is within this factor of the window's.
STEADY_FACTOR = 2.0
# The landing spacing is the mean of this many latest spacings (reads thicken near a limit: the old
# sparse ones would stretch it).
RECENT_SPACINGS = 3
# Below this many landings in the window a rate is a guess: no projection acts on it.
MIN_LANDINGS_FOR_ACTION = 3


@dataclass(frozen=True, slots=True)
class Trend:
    """The pace of one cumulative total of one run, from its readings in the burn window."""

    rate_per_hour: float | None
    # How many landings (readings that showed a new total) the rate rests on.
    landings: int = 0
    # How often usage lands (the billing lag), at least (see _landing_gap): readings sparser than the
    # landings see a change on every read, so the spacing of changes alone would measure the polls,
    # not the billing. None until readings between two landings showed nothing new.
    landing_gap: float | None = None
    # How often new totals were seen lately (the mean of the last few spacings between readings that
    # showed one): the landing gap when reads are denser than landings, the read spacing when not. What
    # the poll schedule aims with until the landing gap is measured.
    landing_spacing: float | None = None
    # When the newest landing was seen.
    last_landing_at: float | None = None
    # The pace of the latest landing interval agrees with the window's (within STEADY_FACTOR).
    steady: bool = False

    @property
    def actionable(self) -> bool:
        """Enough landings at a steady, positive pace, with a measured landing gap, for a projection to
        act on."""
        return (
            self.steady
            and self.landings >= MIN_LANDINGS_FOR_ACTION
            and self.landing_gap is not None
            and self.rate_per_hour is not None
            and self.rate_per_hour > 0
        )


UNKNOWN = Trend(rate_per_hour=None)
STOPPED = Trend(rate_per_hour=0.0)


def step_trend(times: Sequence[float], values: Sequence[float]) -> Trend:
    """The trend of one total from readings oldest first (see the module doc). None rate with fewer than
    two readings spanning more than 0 s, a non-finite figure, or a total that goes down."""
    count = len(times)
    if count < 2:
        return UNKNOWN
    first_t, last_t = times[0], times[-1]
    span = last_t - first_t
    if span <= 0 or not all(math.isfinite(v) for v in values) or not all(math.isfinite(t) for t in times):
        return UNKNOWN
    edge_t: list[float] = []
    edge_v: list[float] = []
    # The reading before each edge: the landing happened after it and at or before the edge.
    edge_after: list[float] = []
    previous = values[0]
    for i in range(1, count):
        value = values[i]
        if value < previous:
            # A cumulative total never goes down: bad data (a reset, a different run), not a refund.
            return UNKNOWN
        if value != previous:
            edge_t.append(times[i])
            edge_v.append(value)
            edge_after.append(times[i - 1])
        previous = value
    landings = len(edge_t)
    if landings >= 2:
        edge_span = edge_t[-1] - edge_t[0]
        if edge_span > 0:
            typical_gap = edge_span / (landings - 1)
            # When the next landing is overdue (the run paused or the meter stopped), the span is
            # stretched to the last reading minus one typical gap, so the rate decays.
            stretched = last_t - edge_t[0] - typical_gap
            slope = (edge_v[-1] - edge_v[0]) / max(edge_span, stretched)
            last_gap = edge_t[-1] - edge_t[-2]
            landing_gap = _landing_gap(edge_t, edge_after)
            recent = min(landings - 1, RECENT_SPACINGS)
            last_pace = (edge_v[-1] - edge_v[-2]) / last_gap if last_gap > 0 else 0.0
            steady = slope > 0 and last_pace > 0 and 1 / STEADY_FACTOR <= last_pace / slope <= STEADY_FACTOR
            overdue = last_t - edge_t[-1] > 2 * typical_gap
            return Trend(
                rate_per_hour=slope * _HOUR,
                landings=landings,
                landing_gap=landing_gap,
                landing_spacing=(edge_t[-1] - edge_t[-1 - recent]) / recent,
                last_landing_at=edge_t[-1],
                steady=steady and not overdue,
            )
    return Trend(
        rate_per_hour=(values[-1] - values[0]) / span * _HOUR,
        landings=landings,
        last_landing_at=edge_t[-1] if edge_t else None,
    )


def _landing_gap(edge_t: Sequence[float], edge_after: Sequence[float]) -> float | None:
    """A lower bound of the time between landings: the longest stretch between two landings seen over
    which readings showed nothing new (from a reading that showed one to the last reading before the
    next). No landing fell in it, so on a meter that lands every g seconds it is shorter than g; reads
    placed just before a landing make it nearly g. Never longer than the truth: a kill-ahead horizon
    built on it errs late, and a read aimed by it errs early."""
    quiet = max((edge_after[i + 1] - edge_t[i] for i in range(len(edge_t) - 1)), default=0.0)
    return quiet if quiet > 0 else None


class RunWindow:
    """One run's recent readings of the totals rules watch, as float arrays, trimmed to a time window."""

    __slots__ = ("_columns", "_metrics", "_start", "_terminal", "_times")

    def __init__(self, metrics: Sequence[str]) -> None:
        self._metrics = tuple(metrics)
        self._times = array("d")
        self._columns = tuple(array("d") for _ in self._metrics)
        self._start = 0
        self._terminal = False

    @property
    def metrics(self) -> tuple[str, ...]:
        return self._metrics

    def __len__(self) -> int:
        return len(self._times) - self._start

    def add(self, taken_at: float, values: Sequence[float], *, terminal: bool) -> None:
        """One more reading (readings arrive in time order; an older or equal one is ignored)."""
        if len(self) and taken_at <= self._times[-1]:
            return
        self._times.append(taken_at)
        for column, value in zip(self._columns, values, strict=True):
            column.append(value)
        self._terminal = terminal

    def trim(self, since: float) -> None:
        """Forget readings taken before `since`, compacting the arrays once half of them is stale."""
        times = self._times
        start = self._start
        while start < len(times) and times[start] < since:
            start += 1
        self._start = start
        if start and start * 2 >= len(times):
            del times[:start]
            for column in self._columns:
                del column[:start]
            self._start = 0

    def reset(self) -> None:
        self.trim(math.inf)

    def trend(self, metric: str, *, now: float, window: float) -> Trend:
        """The trend of `metric` from the readings in [now - window, now]; a finished run stands still."""
        if self._terminal and len(self):
            return STOPPED
        if metric not in self._metrics or not (math.isfinite(now) and math.isfinite(window)) or window <= 0:
            return UNKNOWN
        column = self._columns[self._metrics.index(metric)]
        times = self._times
        lo, hi = self._start, len(times)
        while lo < hi and times[lo] < now - window:
            lo += 1
        while hi > lo and times[hi - 1] > now:
            hi -= 1
        return step_trend(times[lo:hi], column[lo:hi])

    def nbytes(self) -> int:
        """Memory held by the arrays (what a benchmark reports per watched run)."""
        return sum(a.buffer_info()[1] * a.itemsize for a in (self._times, *self._columns))
