"""Acting ahead of a crossing, on a projection: when to announce a delete early, when to call it off,
and when (opt-in, per rule) to delete before the limit is seen.

Reacting after the fact cannot stop a run at its budget: the billing lag, the poll wait and a grace
period that starts only at the crossing all add overspend. So, by default, the countdown (the
announcement and the grace period people get to intervene) starts when a steady burn will reach the
limit within the grace period plus one landing gap; the DELETE still needs fresh readings over the
limit, and lands as soon as they confirm the crossing. If the run slows or stops so that it no
longer gets there in time, the countdown is called off, and that is announced.

Kill-ahead (`kill_ahead: true` on a delete rule) goes further: it deletes when the limit will be
crossed before the next reading can show it (one landing gap plus one poll at the current pace), so
a run may stop slightly under its limit. Never on fewer than three landings or an unsteady pace
(monitor.rules.trend.Trend.actionable). Pure functions of an evaluation.
"""

from __future__ import annotations

from monitor.config.durations import format_duration
from monitor.enforce.evidence import Projection
from monitor.records import Evaluation

# A countdown started ahead of the crossing is called off only when the crossing has moved this many
# times the anticipation window away (or the run stopped): a pace that wobbles does not flap it.
CANCEL_FACTOR = 2.0


def _window(evaluation: Evaluation, *, grace_period: float) -> float:
    trend = evaluation.trend
    # The measured landing gap, else the recent spacing of landings seen (an overestimate when reads
    # were sparse: the countdown then starts earlier, never later).
    gap = None if trend is None else trend.landing_gap if trend.landing_gap is not None else trend.landing_spacing
    gap = gap or 0.0
    return grace_period + gap


def time_to_limit(evaluation: Evaluation) -> float | None:
    """Seconds to the limit projected from the landing that brought the current value, not from this
    reading: between landings the value stands still while the run keeps burning."""
    to_limit, trend = evaluation.time_to_limit_seconds, evaluation.trend
    if to_limit is None or trend is None or trend.last_landing_at is None:
        return to_limit
    return max(to_limit - max(evaluation.taken_at - trend.last_landing_at, 0.0), 0.0)


def anticipation(evaluation: Evaluation, *, grace_period: float) -> Projection | None:
    """The projection that lets a countdown start before the crossing, or None."""
    trend = evaluation.trend
    if evaluation.breaches_below or evaluation.value is None or trend is None:
        return None
    rate, to_limit = trend.rate_per_hour, time_to_limit(evaluation)
    if rate is None or rate <= 0 or to_limit is None or trend.landings < 2:
        return None
    if to_limit > _window(evaluation, grace_period=grace_period):
        return None
    return Projection(
        basis="anticipated",
        rate_per_hour=rate,
        landings=trend.landings,
        landing_gap=trend.landing_gap,
        steady=trend.steady,
        time_to_limit=to_limit,
    )


def calls_off(evaluation: Evaluation, *, grace_period: float) -> str | None:
    """Why a countdown started ahead of the crossing should be called off, or None to keep it.

    Unknown is not a reason (a pace cannot be read right after a restart); a stop, or a crossing that
    moved far past the countdown, is."""
    trend = evaluation.trend
    if trend is None or trend.rate_per_hour is None:
        return None
    if trend.rate_per_hour <= 0:
        return "the run stopped burning before it reached the limit"
    to_limit = time_to_limit(evaluation)
    if to_limit is not None and to_limit > CANCEL_FACTOR * _window(evaluation, grace_period=grace_period):
        return (
            f"the run slowed down: at ${trend.rate_per_hour:,.2f}/h it reaches the limit in about"
            f" {to_limit / 60:.0f} min, long after the countdown"
        )
    return None


def kill_ahead(evaluation: Evaluation, *, poll_gap: float) -> Projection | None:
    """The projection that lets a kill-ahead rule delete now, or None: a steady pace on enough landings
    that crosses the limit before the next reading can show the next landing."""
    trend = evaluation.trend
    value = evaluation.value
    if evaluation.breaches_below or value is None or trend is None or not trend.actionable:
        return None
    assert trend.rate_per_hour is not None and trend.landing_gap is not None
    horizon = trend.landing_gap + poll_gap
    projected = value + trend.rate_per_hour / 3600.0 * horizon
    if projected < evaluation.limit:
        return None
    return Projection(
        basis="kill_ahead",
        rate_per_hour=trend.rate_per_hour,
        landings=trend.landings,
        landing_gap=trend.landing_gap,
        steady=trend.steady,
        time_to_limit=evaluation.time_to_limit_seconds,
        projected_value=projected,
        horizon=horizon,
    )


def shortened_grace(
    grace_period: float,
    *,
    limit: float | None,
    rate_per_hour: float | None,
    time_to_limit: float,
    overspend_cap: float | None,
) -> tuple[float, str | None]:
    """A countdown's length, and why it is shorter than the grace period when it is: never long enough
    for the run, at its measured pace, to spend more than `overspend_cap` of its limit past it (plus
    `time_to_limit` when the countdown starts ahead of the crossing). A run burning $5/s would
    otherwise spend $600 over a $50 cap during a 2-minute grace."""
    if overspend_cap is None or rate_per_hour is None or rate_per_hour <= 0 or not limit:
        return grace_period, None
    affordable = time_to_limit + overspend_cap * limit / (rate_per_hour / 3600.0)
    if affordable >= grace_period:
        return grace_period, None
    return affordable, (
        f"The grace period is cut from {format_duration(grace_period)} to {format_duration(affordable)}:"
        f" at {rate_per_hour:,.2f}/h the full wait would spend more than {overspend_cap:.0%} of the limit"
        " past it (enforce.grace_overspend_cap)."
    )


def advanced_deadline(
    *, value: float, limit: float, rate_per_hour: float | None, overspend_cap: float | None
) -> float | None:
    """Seconds from now by which a confirmed crossing must be acted on so that the run, at its confirmed
    pace, spends no more than `overspend_cap` of its limit past it (None: no cap, or no pace). A
    countdown announced on an early, low estimate of the pace is brought forward by this."""
    if overspend_cap is None or rate_per_hour is None or rate_per_hour <= 0 or limit <= 0:
        return None
    over = max(value - limit, 0.0)
    return max(overspend_cap * limit - over, 0.0) / (rate_per_hour / 3600.0)
