"""The budget rules engine: pure functions from snapshots and their history to Evaluations.

No I/O and no clock reads: `now` is always passed in, so the same readings give the same answer
in the daemon, in `check`, in tests and on a replay after a restart.

Unknown is never a breach: a value that cannot be computed yet (one reading, a decreasing total,
NaN or infinite data) evaluates to tier 0 with `clear` False, so it neither opens nor resolves an alert.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from itertools import pairwise

from monitor.records import Evaluation
from monitor.rules.catalog import CATALOG
from monitor.rules.config import RunRule, WalletRule
from monitor.rules.trend import UNKNOWN, Trend, step_trend
from monitor.snapshots import RunSnapshot, WalletSnapshot

_HOUR = 3600.0
# Thresholds are products like 0.8 * 50; a value "at" a threshold must count as reaching it even when the
# product carries float noise (0.1 * 3 = 0.30000000000000004). One part in 1e9 of a dollar cap is nothing.
_REL_TOLERANCE = 1e-9


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _step_slope_per_second(points: Sequence[tuple[float, float]]) -> float | None:
    """Slope of a cumulative total from (taken_at, value) readings, oldest first, per second.

    Usage lands in steps (the meter writes a record every N seconds), while polls sample at their
    own pace, so a reading's total is flat between landings. A least-squares fit through such a
    staircase is biased by where the polls happen to fall relative to the steps, and the endpoints
    of the window sit at arbitrary points inside a step. The step edges are not: the first reading
    that shows a new total is (to within one poll) when a landing happened. So the slope is taken
    between the first and last edges in the window (monitor.rules.trend.step_trend, the one place
    this is computed).
    """
    trend = step_trend([t for t, _ in points], [v for _, v in points])
    return None if trend.rate_per_hour is None else trend.rate_per_hour / _HOUR


def _window_points(
    history: Sequence[RunSnapshot], metric: str, *, now: float, window: float
) -> list[tuple[float, float]] | None:
    if not (_finite(now) and _finite(window)) or window <= 0:
        return None
    start = now - window
    readings = sorted((s for s in history if start <= s.taken_at <= now), key=lambda s: s.taken_at)
    read = CATALOG[metric].read
    assert read is not None, f"{metric} is not a total of a reading"
    return [(s.taken_at, read(s)) for s in readings]


def _metric_rate_per_hour(history: Sequence[RunSnapshot], metric: str, *, now: float, window: float) -> float | None:
    past = [s for s in history if s.taken_at <= now]
    if past and max(past, key=lambda s: s.taken_at).terminal:
        return 0.0
    points = _window_points(history, metric, now=now, window=window)
    slope = _step_slope_per_second(points) if points is not None else None
    return None if slope is None else slope * _HOUR


def burn_rate_usd_per_hour(history: Sequence[RunSnapshot], *, now: float, window: float) -> float | None:
    """Total-cost slope over the trailing `window` seconds, in USD/hour (see _step_slope_per_second).

    0 for a run whose latest reading is terminal; None with fewer than two readings spanning more
    than 0 s in the window, or when the total decreases (bad data). Never negative.
    """
    return _metric_rate_per_hour(history, "total_cost_usd", now=now, window=window)


def time_to_limit_seconds(value: float, limit: float, rate_per_hour: float | None) -> float | None:
    """Seconds until a rising `value` reaches `limit` at `rate_per_hour`.

    0 when already at or past the limit (whatever the rate); None when the rate is unknown or not
    positive (it never gets there) or an input is not a finite number.
    """
    if not (_finite(value) and _finite(limit)):
        return None
    if value >= limit:
        return 0.0
    if rate_per_hour is None or not math.isfinite(rate_per_hour) or rate_per_hour <= 0:
        return None
    return (limit - value) / rate_per_hour * _HOUR


def runway_seconds(balance_usd: float, total_burn_rate_usd_per_hour: float) -> float | None:
    """How long the balance lasts at the total burn rate: inf when nothing burns, 0 when it is gone."""
    if not (_finite(balance_usd) and _finite(total_burn_rate_usd_per_hour)) or total_burn_rate_usd_per_hour < 0:
        return None
    if balance_usd <= 0:
        return 0.0
    if total_burn_rate_usd_per_hour == 0:
        return math.inf
    return balance_usd / total_burn_rate_usd_per_hour * _HOUR


def wallet_spend_usd(history: Sequence[WalletSnapshot], *, now: float, window: float) -> float | None:
    """Money spent in the trailing window: the sum of balance decreases between consecutive readings.

    Summing decreases (rather than first minus last) keeps a top-up inside the window from hiding
    the spend around it. None with fewer than two readings spanning more than 0 s, or bad data.
    """
    if not (_finite(now) and _finite(window)) or window <= 0:
        return None
    start = now - window
    readings = sorted((w for w in history if start <= w.taken_at <= now), key=lambda w: w.taken_at)
    if len(readings) < 2 or readings[-1].taken_at <= readings[0].taken_at:
        return None
    if any(not math.isfinite(w.balance_usd) for w in readings):
        return None
    return sum(max(earlier.balance_usd - later.balance_usd, 0.0) for earlier, later in pairwise(readings))


def tier_thresholds(rule: RunRule | WalletRule) -> list[float]:
    """Thresholds in ascending severity: the warning tiers, then the hard limit.

    Rising metric, threshold T: [f * T for f in warn_at] + [T]. Falling metric, floor B:
    [B / f for f in warn_at] + [B] (a floor of 100 with warn_at 0.5 warns below 200), so the
    utilisation (B / value) at a warning threshold equals its fraction, as for rising metrics.
    """
    fractions = sorted(rule.warn_at)
    if rule.breaches_below:
        floor = rule.limit
        return [floor / f for f in fractions] + [floor]
    cap = rule.limit
    return [cap * f for f in fractions] + [cap]


def _reached(value: float, threshold: float, *, below: bool) -> bool:
    if math.isclose(value, threshold, rel_tol=_REL_TOLERANCE, abs_tol=0.0):
        return True
    return value <= threshold if below else value >= threshold


def _known(value: float | None, *, below: bool) -> bool:
    """Whether a value may be compared at all. +inf is a real answer only for falling metrics (a runway
    or a time to budget with nothing burning: never); every other non-finite value is bad data."""
    if value is None or math.isnan(value):
        return False
    return math.isfinite(value) or (below and value > 0)


def _tier_label(rule: RunRule | WalletRule, tier: int) -> str:
    if tier == 0:
        return "ok"
    if tier > len(rule.warn_at):
        return "breach"
    return f"{sorted(rule.warn_at)[tier - 1] * 100:g}%"


def _evaluation(
    rule: RunRule | WalletRule,
    value: float | None,
    *,
    subject: str,
    subject_name: str,
    now: float,
    burn_rate: float | None,
    time_to_limit: float | None,
) -> Evaluation:
    below = rule.breaches_below
    limit = rule.limit
    thresholds = tier_thresholds(rule)
    tier_count = len(thresholds)
    tier = 0
    clear = False
    utilisation: float | None = None
    if _known(value, below=below):
        assert value is not None  # narrowed by _known
        tier = sum(1 for threshold in thresholds if _reached(value, threshold, below=below))
        first = thresholds[0]
        if below:
            clear = value > first * (1 + rule.hysteresis)
            utilisation = limit / value if value > 0 else None
        else:
            clear = value < first * (1 - rule.hysteresis)
            utilisation = value / limit
    else:
        value = None
    if tier == 0:
        severity = "info"
    elif tier == tier_count:
        severity = rule.severity
    else:
        severity = "warning"
    return Evaluation(
        rule=rule.name,
        scope=rule.scope,
        subject=subject,
        subject_name=subject_name,
        metric=rule.metric,
        value=value,
        limit=limit,
        breaches_below=below,
        tier=tier,
        tier_count=tier_count,
        tier_label=_tier_label(rule, tier),
        tier_threshold=thresholds[tier - 1] if tier else None,
        severity=severity,
        action=rule.action,
        utilisation=utilisation,
        clear=clear,
        taken_at=now,
        burn_rate_usd_per_hour=burn_rate if _finite(burn_rate) else None,
        time_to_limit_seconds=time_to_limit,
    )


def _run_history(snapshot: RunSnapshot, history: Sequence[RunSnapshot]) -> list[RunSnapshot]:
    """This run's readings up to and including `snapshot`, oldest first, whether or not the caller's
    history already holds it."""
    earlier = [s for s in history if s.run_id == snapshot.run_id and s.taken_at < snapshot.taken_at]
    return [*sorted(earlier, key=lambda s: s.taken_at), snapshot]


def evaluate_run(
    rule: RunRule,
    snapshot: RunSnapshot,
    history: Sequence[RunSnapshot],
    *,
    now: float,
    burn_window: float,
    trends: Mapping[str, Trend] | None = None,
) -> Evaluation | None:
    """Apply a run rule to the latest reading of a run; None when the rule does not select the run.

    `trends`: each total's trend, computed once per reading by the caller (monitor.rules.trend);
    without it the rates are computed from `history`."""
    selected = rule.match.matches(
        run_id=snapshot.run_id, run_name=snapshot.run_name, base_model=snapshot.base_model, team=snapshot.team_id
    )
    if not selected:
        return None
    readings = _run_history(snapshot, history) if trends is None else [snapshot]

    def trend_of(metric: str) -> Trend:
        if trends is not None:
            return trends.get(metric, UNKNOWN)
        rate = _metric_rate_per_hour(readings, metric, now=now, window=burn_window)
        return Trend(rate_per_hour=rate)

    cost_trend = trend_of("total_cost_usd")
    burn = cost_trend.rate_per_hour
    metric_trend = cost_trend
    total_cost = snapshot.total_cost_usd
    total = total_cost if math.isfinite(total_cost) and total_cost >= 0 else None
    value: float | None
    time_to_limit: float | None = None
    metric = rule.metric
    spec = CATALOG[metric]
    if spec.read is not None:
        value = spec.read(snapshot)
        # A cumulative total below zero is bad data: unknown, so it cannot resolve an open alert either.
        value = value if value >= 0 else math.nan
        metric_trend = cost_trend if metric == "total_cost_usd" else trend_of(metric)
        rate = metric_trend.rate_per_hour
        time_to_limit = time_to_limit_seconds(value, rule.limit, rate) if math.isfinite(value) else None
    elif metric == "burn_rate_usd_per_hour":
        value = burn
    elif metric == "projected_cost_usd":
        value = None if total is None or burn is None else total + burn * rule.horizon / _HOUR
        time_to_limit = time_to_limit_seconds(value, rule.limit, burn) if value is not None else None
    else:  # time_to_budget_seconds: how long until the run's cost reaches budget_usd at the current rate
        budget = float(rule.budget_usd or 0)
        if total is None:
            value = None
        elif total >= budget:
            value = 0.0
        elif burn is None:
            value = None
        else:
            value = math.inf if burn == 0 else (budget - total) / burn * _HOUR
        time_to_limit = value if _finite(value) else None
    evaluation = _evaluation(
        rule,
        value,
        subject=snapshot.run_id,
        subject_name=snapshot.display_name,
        now=now,
        burn_rate=burn,
        time_to_limit=time_to_limit,
    )
    return replace(evaluation, trend=metric_trend)


def evaluate_wallet(
    rule: WalletRule,
    wallet: WalletSnapshot,
    history: Sequence[WalletSnapshot],
    *,
    total_burn_rate_usd_per_hour: float,
    now: float,
) -> Evaluation:
    """Apply a wallet rule to the latest wallet reading; the burn rate is the sum over the watched runs."""
    burn = total_burn_rate_usd_per_hour
    balance = wallet.balance_usd if math.isfinite(wallet.balance_usd) else None
    value: float | None
    time_to_limit: float | None = None
    if rule.metric == "balance_usd":
        value = balance
        if balance is not None and rule.below is not None and _finite(burn) and burn > 0:
            # The balance falls at the burn rate: time until it reaches the floor.
            time_to_limit = max(balance - rule.below, 0.0) / burn * _HOUR
    elif rule.metric == "runway_seconds":
        value = runway_seconds(balance, burn) if balance is not None else None
        if _finite(value) and rule.below is not None:
            assert value is not None  # narrowed by _finite
            # Runway shrinks one second per second while the burn holds.
            time_to_limit = max(value - rule.below, 0.0)
    else:  # spend_usd
        earlier = [w for w in history if w.wallet_id == wallet.wallet_id and w.taken_at < wallet.taken_at]
        value = wallet_spend_usd([*earlier, wallet], now=now, window=rule.window)
    return _evaluation(
        rule,
        value,
        subject=wallet.wallet_id,
        subject_name=wallet.wallet_id,
        now=now,
        burn_rate=burn if _finite(burn) and burn >= 0 else None,
        time_to_limit=time_to_limit,
    )
