"""The compact burn window (monitor.rules.trend) against the history-based rate it replaces."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.rules.evaluate import burn_rate_usd_per_hour
from monitor.rules.trend import RunWindow, step_trend
from monitor.snapshots import RunSnapshot


@given(
    steps=st.lists(
        st.tuples(st.floats(0.5, 30.0), st.sampled_from([0.0, 0.0, 0.1, 0.25, 1.0])), min_size=1, max_size=60
    ),
    window=st.floats(10.0, 600.0),
)
def test_the_window_gives_the_rate_the_full_history_gives(steps: list[tuple[float, float]], window: float) -> None:
    """Same readings, same rate: the window keeps only floats, and only the readings a rate needs."""
    run_window = RunWindow(["total_cost_usd"])
    history: list[RunSnapshot] = []
    t, cost = 1_800_000_000.0, 0.0
    for gap, added in steps:
        t += gap
        cost += added
        history.append(RunSnapshot(run_id="r", taken_at=t, total_cost_usd=cost))
        run_window.add(t, [cost], terminal=False)
        run_window.trim(t - window - 30)
    expected = burn_rate_usd_per_hour(history, now=t, window=window)
    got = run_window.trend("total_cost_usd", now=t, window=window).rate_per_hour
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_a_steady_meter_is_actionable_and_one_that_stopped_is_not() -> None:
    times = [float(t) for t in range(0, 601, 5)]
    steady = [60.0 * (t // 60) for t in times]  # $60 land every 60 s: $3,600/h in steps
    trend = step_trend(times, steady)
    assert trend.rate_per_hour == pytest.approx(3600.0)
    # At least 55 s (reads 5 s apart showed nothing new for 55 s), never more than the real 60 s.
    assert trend.landing_gap == pytest.approx(55.0) and trend.landings == 10
    assert trend.actionable
    # The meter stops: after two missed landings the rate decays and no projection may act on it.
    stalled_times = [*times, *[600.0 + 5 * i for i in range(1, 40)]]
    stalled = [*steady, *[steady[-1]] * 39]
    stopped = step_trend(stalled_times, stalled)
    assert stopped.rate_per_hour is not None and stopped.rate_per_hour < 3600.0
    assert not stopped.actionable
    # Two landings are not enough to act on, however steady.
    assert not step_trend(times[:30], steady[:30]).actionable


def test_the_window_keeps_floats_not_readings() -> None:
    window = RunWindow(["total_cost_usd", "training_tokens"])
    for i in range(180):
        window.add(float(i * 5), [i * 0.1, float(i * 1000)], terminal=False)
    assert len(window) == 180 and window.nbytes() == 180 * 3 * 8
    window.trim(600.0)
    assert len(window) == 60


def test_sparse_reads_do_not_pass_for_a_slow_meter() -> None:
    """Usage lands every 5 s; the run was read every 120 s while far from its limit, then every 2 s
    close to it. The billing lag is the meter's, not the poll's: an anticipation window or a
    kill-ahead horizon sized on 120 s would act minutes early."""
    sparse = [0.0, 120.0, 240.0, 360.0]
    dense = [360.0 + 2 * i for i in range(1, 8)]
    times = sparse + dense
    costs = [float(5 * (t // 5)) for t in times]  # $1/s, landing every 5 s
    trend = step_trend(times, costs)
    assert trend.landing_gap is not None and trend.landing_gap <= 5.0
    assert trend.rate_per_hour == pytest.approx(3600.0, rel=0.05)
