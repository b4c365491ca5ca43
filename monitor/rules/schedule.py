"""When a run is next worth reading: by its projected time to its nearest threshold.

A run far from every limit is read rarely (up to `poll.max_interval`), one closing in ever more often
(down to `poll.min_interval`). Usage lands in steps, so a crossing can only be seen at the first
landing after it: when the landing gap is known, the next read is placed just before that landing,
then every fast poll until it shows, never later than half the projected time left. Pure: from a
reading's evaluations and trends.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from monitor.records import Evaluation
from monitor.rules.config import RunRule
from monitor.rules.evaluate import tier_thresholds


@dataclass(frozen=True, slots=True)
class PollHint:
    """What a reading says about the next one: wait this long after it (None: no projection, use
    poll.interval), and how urgent the run is (seconds to its nearest threshold; None: unknown)."""

    wait: float | None = None
    urgency: float | None = None


NO_HINT = PollHint()


def next_poll(
    evaluations: Sequence[Evaluation],
    rules: Mapping[str, RunRule],
    *,
    taken_at: float,
    min_interval: float,
    interval: float,
    announce_ahead: float | None,
) -> PollHint:
    """`announce_ahead`: with anticipation on, how long before a delete limit its countdown starts (the
    grace period, plus the landing gap): the run is read in time to announce it then."""
    wait: float | None = None
    urgency: float | None = None
    for evaluation in evaluations:
        rule = rules.get(evaluation.rule)
        trend = evaluation.trend
        value = evaluation.value
        if rule is None or evaluation.breaches_below or value is None or trend is None:
            continue
        rate = trend.rate_per_hour
        ahead = [t for t in tier_thresholds(rule) if t > value]
        if ahead and rate is None:
            # One reading: no pace yet, and the run may be burning fast. A second reading soon tells.
            wait = min_interval if wait is None else min(wait, min_interval)
            continue
        if not ahead or rate is None or rate <= 0:
            continue
        # The crossing, projected from the landing that brought the current value (not from this read:
        # between landings the value stands still while the run keeps burning).
        anchor = trend.last_landing_at if trend.last_landing_at is not None else taken_at
        crossing_at = anchor + (ahead[0] - value) / rate * 3600.0
        to_threshold = max(crossing_at - taken_at, 0.0)
        urgency = to_threshold if urgency is None else min(urgency, to_threshold)
        aim = crossing_at
        gap = trend.landing_gap if trend.landing_gap is not None else trend.landing_spacing
        if gap is not None and trend.last_landing_at is not None and gap > 0:
            # Aim a little before the landing that will show the crossing: a reading there that shows
            # nothing new means the landing is due, and the run is read every fast poll until it comes,
            # so it is seen within one fast poll and the landing's phase is measured again (aiming
            # after it would drift later landing after landing, by the margin and the read delays).
            last = trend.last_landing_at
            landings = max(math.ceil((crossing_at - last) / gap), 1)
            aim = last + landings * gap - min(0.2 * gap, min_interval)
        # Due or overdue: every fast poll until it shows (a pace that stalls pushes the projected
        # crossing out, so a run that paused is not read fast for long). Before that: a pace is an
        # estimate (an early one from two landings can be 30% low), so never wait past half the
        # projected time, and the reads thicken as the threshold nears (about log2 of the distance).
        candidate = min_interval if aim <= taken_at else min(aim - taken_at, max(to_threshold / 2, min_interval))
        if announce_ahead is not None and rule.action == "delete" and evaluation.breached is False:
            gap = gap or 0.0
            until_announce = to_threshold - announce_ahead - gap
            if until_announce > 0:
                candidate = min(candidate, until_announce)
        if trend.landings < 2:
            # A pace on fewer than two landings is a guess: read again soon to know it.
            candidate = min(candidate, interval)
        wait = candidate if wait is None else min(wait, candidate)
    return PollHint(wait=wait, urgency=urgency)
