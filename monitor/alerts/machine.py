"""The alert state machine: evaluations in, at most one notification per transition out.

The product's promise is "once and clearly, never spam": one message per tier crossed (the highest
one when a poll jumps several), nothing while a value wobbles between tiers, one reminder per
`renotify` interval while an alert stays open, one resolve when the value is back inside the first
tier by the rule's hysteresis. Pure: the caller persists the returned state and enqueues the
notifications; their dedup keys depend only on the state and the evaluation, so replaying a
transition after a crash yields the same keys and the outbox drops the repeat.
"""

from __future__ import annotations

import math
from dataclasses import replace

from monitor.alerts.words import AlertContext, notification
from monitor.records import AlertState, Evaluation, Notification, NotificationKind
from monitor.rules.config import RunRule, WalletRule

# ---------------------------------------------------------------------------------------------- transitions


def advance_alert(
    state: AlertState | None,
    evaluation: Evaluation,
    *,
    rule: RunRule | WalletRule,
    context: AlertContext,
    now: float,
) -> tuple[AlertState, list[Notification]]:
    """The next alert state for one subject x rule, and the notifications the transition sends (0 or 1).

    The given state is not modified. Keys: alert:{subject}:{rule}:e{episode}:t{tier},
    renotify:{subject}:{rule}:e{episode}:n{k} with k = floor((now - opened_at) / renotify),
    resolve:{subject}:{rule}:e{episode}; thread {subject}:{rule}:e{episode}.
    """
    current = replace(state) if state is not None else AlertState(subject=evaluation.subject, rule=evaluation.rule)
    if evaluation.value is not None:
        current.last_value = evaluation.value
    # A rule edited to fewer tiers: the announced tier maps onto the new top (a breach stays a breach).
    current.tier = min(current.tier, evaluation.tier_count)
    base = f"{current.subject}:{current.rule}"

    def emit(kind: NotificationKind, key: str) -> Notification:
        return notification(kind, key, state=current, evaluation=evaluation, rule=rule, context=context, now=now)

    if evaluation.tier > current.tier:
        if current.tier == 0:
            if current.last_notified_at is not None:
                # An earlier episode was announced and resolved: a new thread with new keys.
                current.episode += 1
            current.opened_at = now
        current.tier = evaluation.tier
        current.severity = evaluation.severity
        current.last_notified_at = now
        key = f"alert:{base}:e{current.episode}:t{current.tier}"
        return current, [emit("alert", key)]

    if current.tier > 0 and evaluation.clear:
        note = emit("resolve", f"resolve:{base}:e{current.episode}")
        current.tier = 0
        current.severity = "info"
        current.opened_at = None
        current.last_notified_at = now
        return current, [note]

    interval = rule.renotify
    due = (
        interval is not None
        and interval > 0
        and (current.last_notified_at is None or now - current.last_notified_at >= interval)
    )
    if current.tier > 0 and evaluation.tier == current.tier and due and not context.terminal:
        assert interval is not None  # narrowed by due
        since = current.opened_at if current.opened_at is not None else 0.0
        count = math.floor((now - since) / interval)
        note = emit("renotify", f"renotify:{base}:e{current.episode}:n{count}")
        current.last_notified_at = now
        return current, [note]
    return current, []
