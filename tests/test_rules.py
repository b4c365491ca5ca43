"""The budget rules engine: every metric against its tiers, burn rates from stepwise meters, wallet
runway and spend, and bad data that must never look like a breach."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.rules.config import (
    RUN_METRICS_ABOVE,
    RUN_METRICS_BELOW,
    WALLET_METRICS_ABOVE,
    WALLET_METRICS_BELOW,
    RunRule,
    WalletRule,
)
from monitor.rules.evaluate import (
    burn_rate_usd_per_hour,
    evaluate_run,
    evaluate_wallet,
    runway_seconds,
    tier_thresholds,
    time_to_limit_seconds,
    wallet_spend_usd,
)
from monitor.snapshots import RunSnapshot, WalletSnapshot

T0 = 1_700_000_000.0
HOUR = 3600.0


def snap(cost: float = 0.0, *, t: float = T0, run_id: str = "run-1", **fields: Any) -> RunSnapshot:
    fields.setdefault("run_name", "exp-7")
    fields.setdefault("status", "RUNNING")
    return RunSnapshot(run_id=run_id, taken_at=t, total_cost_usd=cost, **fields)


def wallet(balance: float, *, t: float = T0) -> WalletSnapshot:
    return WalletSnapshot(wallet_id="w-1", taken_at=t, balance_usd=balance)


def run_rule(metric: str = "total_cost_usd", **fields: Any) -> RunRule:
    return RunRule.model_validate({"name": "cap", "metric": metric, **fields})


def reading_with(metric: str, value: float) -> tuple[RunSnapshot, list[RunSnapshot]]:
    """A latest reading (and its history) whose `metric` equals `value`."""
    if metric == "burn_rate_usd_per_hour":
        return snap(value, t=T0 + HOUR), [snap(0.0, t=T0)]
    if metric == "projected_cost_usd":  # horizon 1h: projected = total + one more hour at the same rate
        return snap(value / 2, t=T0 + HOUR), [snap(0.0, t=T0)]
    if metric == "inference_input_cost_usd":
        return snap(value, inference_cost_usd=value, inference_input_tokens=1), []
    if metric == "inference_output_cost_usd":
        return snap(value, inference_cost_usd=value, inference_output_tokens=1), []
    fields: dict[str, Any] = {metric: int(value)} if metric.endswith("_tokens") else {metric: value}
    if metric.endswith("_tokens"):
        return snap(1.0, **fields), []
    return (snap(value, **fields) if metric != "total_cost_usd" else snap(value)), []


# The value at and around each tier of a cap T with warn_at [0.5, 0.8], and the tier it must land in.
TIER_CASES = [(0.2, 0, "ok"), (0.5, 1, "50%"), (0.6, 1, "50%"), (0.8, 2, "80%"), (1.0, 3, "breach"), (1.5, 3, "breach")]


@pytest.mark.parametrize("metric", RUN_METRICS_ABOVE)
@pytest.mark.parametrize(("fraction", "tier", "label"), TIER_CASES)
def test_rising_run_metric_lands_in_the_right_tier(metric: str, fraction: float, tier: int, label: str) -> None:
    cap = 1_000_000.0 if metric.endswith("_tokens") else 50.0
    rule = run_rule(metric, threshold=cap, warn_at=[0.8, 0.5], severity="critical")
    latest, history = reading_with(metric, cap * fraction)

    evaluation = evaluate_run(rule, latest, history, now=latest.taken_at, burn_window=2 * HOUR)

    assert evaluation is not None
    assert evaluation.value == pytest.approx(cap * fraction)
    assert (evaluation.tier, evaluation.tier_label, evaluation.tier_count) == (tier, label, 3)
    assert evaluation.severity == {0: "info", 1: "warning", 2: "warning", 3: "critical"}[tier]
    assert evaluation.breached == (tier == 3)
    assert evaluation.utilisation == pytest.approx(fraction)
    assert evaluation.clear == (fraction < 0.5 * (1 - rule.hysteresis))
    assert evaluation.tier_threshold == (None if tier == 0 else pytest.approx(cap * [0.5, 0.8, 1.0][tier - 1]))


@pytest.mark.parametrize(
    ("seconds_left", "tier", "clear"),
    [(3 * HOUR, 0, True), (2 * HOUR, 1, False), (1.5 * HOUR, 1, False), (HOUR, 2, False), (0.25 * HOUR, 2, False)],
)
def test_time_to_budget_falls_through_its_tiers(seconds_left: float, tier: int, clear: bool) -> None:
    assert RUN_METRICS_BELOW == ("time_to_budget_seconds",)
    rule = run_rule("time_to_budget_seconds", below="1h", warn_at=[0.5], budget_usd=100)
    total = 100 - seconds_left * 10 / HOUR  # burning $10/h
    latest, history = snap(total, t=T0 + HOUR), [snap(total - 10, t=T0)]

    evaluation = evaluate_run(rule, latest, history, now=T0 + HOUR, burn_window=2 * HOUR)

    assert evaluation is not None
    assert evaluation.value == pytest.approx(seconds_left)
    assert (evaluation.tier, evaluation.clear) == (tier, clear)
    assert evaluation.tier_label == ["ok", "50%", "breach"][tier]
    assert evaluation.time_to_limit_seconds == pytest.approx(seconds_left)


def test_time_to_budget_is_zero_past_the_budget_and_never_without_burn() -> None:
    rule = run_rule("time_to_budget_seconds", below="1h", budget_usd=100)
    past = evaluate_run(rule, snap(120, t=T0 + 60), [snap(110, t=T0)], now=T0 + 60, burn_window=HOUR)
    idle = evaluate_run(rule, snap(50, t=T0 + 60), [snap(50, t=T0)], now=T0 + 60, burn_window=HOUR)
    assert past is not None and idle is not None
    assert (past.value, past.breached) == (0.0, True)
    assert idle.value == math.inf and idle.tier == 0 and idle.clear
    assert idle.utilisation == 0.0


def test_balance_floor_warns_at_the_floor_over_each_fraction() -> None:
    assert set(WALLET_METRICS_BELOW) == {"balance_usd", "runway_seconds"}
    rule = WalletRule(name="floor", scope="wallet", below=100, warn_at=[0.5])
    assert tier_thresholds(rule) == [200.0, 100.0]
    tiers = {}
    for balance in (300.0, 200.0, 150.0, 100.0, 50.0, -5.0):
        evaluation = evaluate_wallet(rule, wallet(balance), [], total_burn_rate_usd_per_hour=10.0, now=T0)
        tiers[balance] = (evaluation.tier, evaluation.clear)
    assert tiers == {
        300.0: (0, True),
        200.0: (1, False),
        150.0: (1, False),
        100.0: (2, False),
        50.0: (2, False),
        -5.0: (2, False),
    }
    at_warning = evaluate_wallet(rule, wallet(200.0), [], total_burn_rate_usd_per_hour=10.0, now=T0)
    assert at_warning.utilisation == pytest.approx(0.5)  # the same scale as a rising 50% tier
    assert at_warning.time_to_limit_seconds == pytest.approx(10 * HOUR)  # $100 above the floor at $10/h


def test_runway_tiers_follow_the_total_burn_rate() -> None:
    rule = WalletRule(name="runway", scope="wallet", metric="runway_seconds", below="2h", warn_at=[0.5])
    results = {
        balance: evaluate_wallet(rule, wallet(balance), [], total_burn_rate_usd_per_hour=10.0, now=T0)
        for balance in (100.0, 40.0, 20.0, 5.0)
    }
    assert {b: (e.value, e.tier) for b, e in results.items()} == {
        100.0: (36000.0, 0),
        40.0: (14400.0, 1),
        20.0: (7200.0, 2),
        5.0: (1800.0, 2),
    }
    assert results[40.0].time_to_limit_seconds == pytest.approx(7200.0)


def test_runway_with_zero_burn_is_infinite_and_never_breaches() -> None:
    assert runway_seconds(50.0, 0.0) == math.inf
    assert runway_seconds(0.0, 10.0) == 0.0
    assert runway_seconds(50.0, -1.0) is None
    assert runway_seconds(math.nan, 1.0) is None
    rule = WalletRule(name="runway", scope="wallet", metric="runway_seconds", below="2h")
    evaluation = evaluate_wallet(rule, wallet(1.0), [], total_burn_rate_usd_per_hour=0.0, now=T0)
    assert evaluation.value == math.inf
    assert (evaluation.tier, evaluation.breached, evaluation.clear) == (0, False, True)


@pytest.mark.parametrize(("spent", "tier"), [(40.0, 0), (50.0, 1), (80.0, 2), (100.0, 3), (130.0, 3)])
def test_spend_over_window_lands_in_the_right_tier(spent: float, tier: int) -> None:
    assert WALLET_METRICS_ABOVE == ("spend_usd",)
    rule = WalletRule(name="spend", scope="wallet", metric="spend_usd", threshold=100, warn_at=[0.5, 0.8], window="1h")
    history = [wallet(1000.0, t=T0), wallet(1000.0 - spent / 2, t=T0 + 600)]
    evaluation = evaluate_wallet(
        rule, wallet(1000.0 - spent, t=T0 + 1200), history, total_burn_rate_usd_per_hour=0.0, now=T0 + 1200
    )
    assert evaluation.value == pytest.approx(spent)
    assert evaluation.tier == tier


def test_spend_counts_what_a_top_up_inside_the_window_would_hide() -> None:
    history = [
        wallet(2000.0, t=T0 - 2 * HOUR),  # outside the window: the drop to 1000 is not counted
        wallet(1000.0, t=T0),
        wallet(900.0, t=T0 + 600),
        wallet(1500.0, t=T0 + 1200),  # a $600 top-up
        wallet(1400.0, t=T0 + 1800),
    ]
    assert wallet_spend_usd(history, now=T0 + 1800, window=HOUR) == pytest.approx(200.0)
    assert wallet_spend_usd(history[:2], now=T0 + 1800, window=HOUR) is None  # one reading in the window
    assert wallet_spend_usd([wallet(math.nan, t=T0), wallet(5.0, t=T0 + 1)], now=T0 + 1, window=HOUR) is None


def test_selectors_pick_runs_by_id_name_model_and_team() -> None:
    reading = snap(10.0, run_id="r-42", run_name="exp-7", base_model="Qwen/Qwen3.5-9B", team_id="team-a")

    def selected(**match: Any) -> bool:
        rule = run_rule(threshold=50, match=match)
        return evaluate_run(rule, reading, [], now=T0, burn_window=HOUR) is not None

    assert selected()
    assert selected(run_id="r-42") and not selected(run_id=["r-1", "r-2"])
    assert selected(name="exp-*") and not selected(name="prod-*")
    assert selected(base_model="Qwen/*") and not selected(base_model="meta-llama/*")
    assert selected(team="team-a") and not selected(team="team-b")
    assert selected(name=["prod-*", "exp-?"], base_model="*9B", team=["team-a"])
    assert not selected(name="exp-*", team="team-b")  # every criterion must hold


def test_selector_name_glob_does_not_match_a_run_without_a_name() -> None:
    rule = run_rule(threshold=50, match={"name": "exp-*"})
    assert evaluate_run(rule, snap(10.0, run_name=None), [], now=T0, burn_window=HOUR) is None


def stepwise_meter(
    *, start: float, end: float, poll: float, landing: float, usd_per_landing: float
) -> list[RunSnapshot]:
    """Polls every `poll` s of a meter that lands `usd_per_landing` every `landing` s."""
    readings = []
    t = start
    while t <= end:
        readings.append(snap(usd_per_landing * math.floor((t - T0) / landing), t=t))
        t += poll
    return readings


def test_burn_rate_of_a_stepwise_meter_is_the_landing_rate() -> None:
    history = stepwise_meter(start=T0 + 7, end=T0 + 3600, poll=25, landing=60, usd_per_landing=1.0)
    rate = burn_rate_usd_per_hour(history, now=T0 + 3600, window=900)
    assert rate == pytest.approx(60.0, rel=0.05)


def test_burn_rate_with_a_meter_slower_than_the_polls_is_still_close() -> None:
    history = stepwise_meter(start=T0 + 3, end=T0 + 7200, poll=30, landing=300, usd_per_landing=5.0)
    rate = burn_rate_usd_per_hour(history, now=T0 + 7200, window=1800)
    assert rate == pytest.approx(60.0, rel=0.05)  # the endpoint slope would read ~$51/h here


def test_burn_rate_decays_once_the_meter_stops_landing() -> None:
    running = stepwise_meter(start=T0, end=T0 + 1800, poll=30, landing=60, usd_per_landing=1.0)
    last_cost = running[-1].total_cost_usd
    quiet = running + [snap(last_cost, t=T0 + 1800 + k * 30) for k in range(1, 21)]  # 10 min with nothing new
    while_running = burn_rate_usd_per_hour(running, now=T0 + 1800, window=900)
    after_quiet = burn_rate_usd_per_hour(quiet, now=T0 + 2400, window=900)
    assert while_running == pytest.approx(60.0, rel=0.05)
    assert after_quiet is not None and 0 <= after_quiet < 0.7 * 60


def test_burn_rate_needs_two_readings_that_span_time() -> None:
    assert burn_rate_usd_per_hour([], now=T0, window=HOUR) is None
    assert burn_rate_usd_per_hour([snap(5.0)], now=T0, window=HOUR) is None
    assert burn_rate_usd_per_hour([snap(5.0), snap(6.0)], now=T0, window=HOUR) is None
    # Readings older than the window do not count.
    assert burn_rate_usd_per_hour([snap(1.0, t=T0 - 2 * HOUR), snap(5.0)], now=T0, window=HOUR) is None
    assert burn_rate_usd_per_hour([snap(5.0, t=T0 - 600), snap(5.0)], now=T0, window=HOUR) == 0.0


def test_a_decreasing_total_is_bad_data_not_a_negative_burn() -> None:
    history = [snap(10.0, t=T0), snap(12.0, t=T0 + 60), snap(11.0, t=T0 + 120), snap(13.0, t=T0 + 180)]
    assert burn_rate_usd_per_hour(history, now=T0 + 180, window=HOUR) is None
    rule = run_rule("burn_rate_usd_per_hour", threshold=1)
    evaluation = evaluate_run(rule, history[-1], history[:-1], now=T0 + 180, burn_window=HOUR)
    assert evaluation is not None
    assert (evaluation.value, evaluation.tier, evaluation.clear) == (None, 0, False)


def test_a_terminal_run_burns_nothing() -> None:
    history = [snap(10.0, t=T0), snap(20.0, t=T0 + 600, status="COMPLETED")]
    assert burn_rate_usd_per_hour(history, now=T0 + 600, window=HOUR) == 0.0
    rule = run_rule("projected_cost_usd", threshold=25)
    evaluation = evaluate_run(rule, history[-1], history[:1], now=T0 + 600, burn_window=HOUR)
    assert evaluation is not None
    assert evaluation.value == pytest.approx(20.0) and evaluation.tier == 0


def test_time_to_limit() -> None:
    assert time_to_limit_seconds(40.0, 50.0, 10.0) == pytest.approx(HOUR)
    assert time_to_limit_seconds(50.0, 50.0, 10.0) == 0.0
    assert time_to_limit_seconds(60.0, 50.0, None) == 0.0  # already past, whatever the rate
    assert time_to_limit_seconds(40.0, 50.0, None) is None
    assert time_to_limit_seconds(40.0, 50.0, 0.0) is None
    assert time_to_limit_seconds(40.0, 50.0, -3.0) is None
    assert time_to_limit_seconds(math.nan, 50.0, 10.0) is None


def test_every_run_evaluation_carries_burn_rate_and_time_to_the_hard_limit() -> None:
    history = [snap(10.0, t=T0, training_tokens=1_000_000)]
    latest = snap(20.0, t=T0 + HOUR, training_tokens=2_000_000)
    cost = evaluate_run(run_rule(threshold=50), latest, history, now=T0 + HOUR, burn_window=2 * HOUR)
    tokens = evaluate_run(
        run_rule("training_tokens", threshold=5_000_000), latest, history, now=T0 + HOUR, burn_window=2 * HOUR
    )
    assert cost is not None and tokens is not None
    assert cost.burn_rate_usd_per_hour == pytest.approx(10.0)
    assert cost.time_to_limit_seconds == pytest.approx(3 * HOUR)  # $30 to go at $10/h
    assert tokens.burn_rate_usd_per_hour == pytest.approx(10.0)
    assert tokens.time_to_limit_seconds == pytest.approx(3 * HOUR)  # 3M tokens to go at 1M/h


def test_history_with_or_without_the_latest_reading_gives_the_same_answer() -> None:
    history = stepwise_meter(start=T0, end=T0 + 900, poll=30, landing=60, usd_per_landing=1.0)
    rule = run_rule("projected_cost_usd", threshold=100, warn_at=[0.5])
    with_latest = evaluate_run(rule, history[-1], history, now=T0 + 900, burn_window=900)
    without = evaluate_run(rule, history[-1], history[:-1], now=T0 + 900, burn_window=900)
    other_runs = [snap(1000.0, t=T0 + 450, run_id="run-2")]
    mixed = evaluate_run(rule, history[-1], history[:-1] + other_runs, now=T0 + 900, burn_window=900)
    assert with_latest == without == mixed


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1.0])
def test_bad_totals_are_unknown_never_a_breach_or_a_resolve(bad: float) -> None:
    rule = run_rule(threshold=50, warn_at=[0.5])
    evaluation = evaluate_run(rule, snap(bad), [snap(10.0, t=T0 - 60)], now=T0, burn_window=HOUR)
    assert evaluation is not None
    assert (evaluation.value, evaluation.tier, evaluation.clear, evaluation.utilisation) == (None, 0, False, None)
    for metric in ("projected_cost_usd", "burn_rate_usd_per_hour"):
        other = evaluate_run(
            run_rule(metric, threshold=1), snap(bad), [snap(10.0, t=T0 - 60)], now=T0, burn_window=HOUR
        )
        assert other is not None and other.tier == 0 and not other.clear


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_bad_wallet_data_is_unknown(bad: float) -> None:
    for metric in ("balance_usd", "runway_seconds"):
        rule = WalletRule(name="w", scope="wallet", metric=metric, below=100)
        evaluation = evaluate_wallet(rule, wallet(bad), [], total_burn_rate_usd_per_hour=5.0, now=T0)
        assert (evaluation.value, evaluation.tier, evaluation.clear) == (None, 0, False)
    rule = WalletRule(name="w", scope="wallet", metric="runway_seconds", below=100)
    evaluation = evaluate_wallet(rule, wallet(10.0), [], total_burn_rate_usd_per_hour=bad, now=T0)
    assert (evaluation.tier, evaluation.clear, evaluation.burn_rate_usd_per_hour) == (0, False, None)


def test_a_value_at_a_threshold_with_float_noise_still_reaches_it() -> None:
    rule = run_rule(threshold=3, warn_at=[0.1])
    assert tier_thresholds(rule)[0] != 0.3  # 0.1 * 3 = 0.30000000000000004
    evaluation = evaluate_run(rule, snap(0.3), [], now=T0, burn_window=HOUR)
    assert evaluation is not None and evaluation.tier == 1


def test_breach_severity_is_the_rules_and_clear_needs_the_hysteresis() -> None:
    rule = run_rule(threshold=100, severity="warning", hysteresis=0.1)
    results = {c: evaluate_run(rule, snap(c), [], now=T0, burn_window=HOUR) for c in (120.0, 95.0, 89.0)}
    assert results[120.0] is not None and results[120.0].severity == "warning" and results[120.0].breached
    assert results[95.0] is not None and (results[95.0].tier, results[95.0].clear) == (0, False)
    assert results[89.0] is not None and results[89.0].clear


def test_config_refuses_limits_that_would_silently_never_fire() -> None:
    with pytest.raises(ValueError, match="finite"):
        run_rule(threshold=math.inf)
    with pytest.raises(ValueError, match="renotify"):
        run_rule(threshold=1, renotify="0s")
    with pytest.raises(ValueError, match="window"):
        WalletRule(name="s", scope="wallet", metric="spend_usd", threshold=1, window=0)


@settings(max_examples=150, deadline=None)
@given(
    cap=st.floats(min_value=0.01, max_value=1e7),
    fractions=st.lists(st.floats(min_value=0.01, max_value=0.99), max_size=3, unique=True),
    low=st.floats(min_value=-1e8, max_value=1e8),
    high=st.floats(min_value=-1e8, max_value=1e8),
)
def test_tiers_rise_with_the_value_and_clear_only_at_tier_zero(
    cap: float, fractions: list[float], low: float, high: float
) -> None:
    low, high = sorted((low, high))
    rule = run_rule(threshold=cap, warn_at=fractions)
    below_low = evaluate_run(rule, snap(max(low, 0.0)), [], now=T0, burn_window=HOUR)
    below_high = evaluate_run(rule, snap(max(high, 0.0)), [], now=T0, burn_window=HOUR)
    assert below_low is not None and below_high is not None
    assert below_low.tier <= below_high.tier <= len(fractions) + 1
    for evaluation in (below_low, below_high):
        assert not (evaluation.clear and evaluation.tier > 0)
        assert evaluation.breached == (evaluation.value is not None and evaluation.value >= cap * (1 - 1e-9))


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.floats(min_value=0.1, max_value=600), st.floats(min_value=0, max_value=50)), max_size=40
    )
)
def test_burn_rate_is_never_negative(steps: list[tuple[float, float]]) -> None:
    t, cost, history = T0, 0.0, []
    for gap, added in steps:
        t, cost = t + gap, cost + added
        history.append(snap(cost, t=t))
    rate = burn_rate_usd_per_hour(history, now=t, window=HOUR)
    assert rate is None or (math.isfinite(rate) and rate >= 0)
