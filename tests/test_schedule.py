"""Polling by time to limit (monitor.rules.schedule), driven the way the poller drives it: each read's
hint sets the next read, the pace is measured from the reads themselves, and usage lands in steps."""

from __future__ import annotations

import math

import pytest

from monitor.rules.config import RunRule
from monitor.rules.evaluate import evaluate_run
from monitor.rules.schedule import next_poll
from monitor.rules.trend import step_trend
from monitor.snapshots import RunSnapshot

CAP = 300.0
MIN_INTERVAL, INTERVAL, MAX_INTERVAL = 2.0, 30.0, 300.0


def reads_until_crossing(*, usd_per_second: float, meter: float, first_reads: int = 2) -> tuple[list[float], float]:
    """The read times the schedule picks for a run burning steadily from t=0, up to the first read that
    shows the crossing; and the landing that first shows it."""
    rule = RunRule(name="cap", scope="run", metric="total_cost_usd", threshold=CAP, warn_at=[0.8])

    def billed(t: float) -> float:
        return usd_per_second * meter * math.floor(t / meter)

    times: list[float] = []
    t = 0.5
    while True:
        times.append(t)
        costs = [billed(x) for x in times]
        if costs[-1] >= CAP:
            return times, math.ceil(CAP / usd_per_second / meter) * meter
        trend = step_trend(times[-200:], costs[-200:])
        snapshot = RunSnapshot(run_id="r", taken_at=t, total_cost_usd=costs[-1])
        evaluation = evaluate_run(rule, snapshot, (), now=t, burn_window=900.0, trends={"total_cost_usd": trend})
        assert evaluation is not None
        hint = next_poll(
            [evaluation], {"cap": rule}, taken_at=t, min_interval=MIN_INTERVAL, interval=INTERVAL, announce_ahead=None
        )
        wait = INTERVAL if hint.wait is None else hint.wait
        t += min(max(wait, MIN_INTERVAL), MAX_INTERVAL)
        assert len(times) < 10_000


@pytest.mark.parametrize(("usd_per_second", "meter"), [(0.05, 60.0), (0.5, 60.0), (1.0, 5.0), (5.0, 5.0)])
def test_the_crossing_is_read_within_a_landing_and_far_runs_are_read_rarely(
    usd_per_second: float, meter: float
) -> None:
    times, landing = reads_until_crossing(usd_per_second=usd_per_second, meter=meter)
    # Seen within one fast poll of the landing that shows it...
    assert times[-1] - landing <= MIN_INTERVAL + meter * 0.2 + 1e-6, (times[-1], landing)
    # ...with far fewer reads than a fixed fast poll would make, and never more than a fixed 30 s poll
    # would on a run that takes long to reach its cap.
    if landing >= 300:
        assert len(times) < landing / MIN_INTERVAL / 3
    if landing > 3600:
        assert len(times) <= landing / INTERVAL


def test_a_pace_that_rises_after_the_projection_is_still_caught_in_time() -> None:
    """The projection is an estimate: a run whose pace doubles past mid-way is read at most half its
    projected time to the limit after each read, so the faster crossing is still seen soon after it lands."""
    rule = RunRule(name="cap", scope="run", metric="total_cost_usd", threshold=CAP)
    meter = 5.0

    def billed(t: float) -> float:
        landed = meter * math.floor(t / meter)
        return landed if landed <= 150 else 150 + 2 * (landed - 150)  # $1/s, then $2/s after t=150

    crossing_landing = 150 + math.ceil(75 / meter) * meter  # $300 at t=225
    times: list[float] = []
    t = 0.5
    while billed(times[-1] if times else 0.0) < CAP:
        times.append(t)
        costs = [billed(x) for x in times]
        trend = step_trend(times, costs)
        snapshot = RunSnapshot(run_id="r", taken_at=t, total_cost_usd=costs[-1])
        evaluation = evaluate_run(rule, snapshot, (), now=t, burn_window=900.0, trends={"total_cost_usd": trend})
        assert evaluation is not None
        hint = next_poll(
            [evaluation], {"cap": rule}, taken_at=t, min_interval=MIN_INTERVAL, interval=INTERVAL, announce_ahead=None
        )
        t += min(max(INTERVAL if hint.wait is None else hint.wait, MIN_INTERVAL), MAX_INTERVAL)
    assert times[-1] - crossing_landing <= meter + MIN_INTERVAL, (times[-1], crossing_landing)
