"""The words and numbers of alert messages: how a value reads in its unit, a safe one-line name,
and the title, text and fields of each notification an alert transition sends.

Units and nouns come from the metric catalog (monitor.rules.catalog), so a new metric needs no
edit here. User-controlled text (run names, models, statuses from the API) goes through safe_text.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass

from monitor.config.durations import format_duration
from monitor.records import AlertState, Evaluation, Notification, NotificationKind
from monitor.rules.catalog import CATALOG
from monitor.rules.config import RunRule, WalletRule

NAME_LIMIT = 80
_ZERO_WIDTH_JOINER = "\u200d"  # kept: it glues emoji sequences together
_EMOJI = {"critical": "🔴", "warning": "🟠", "info": "🔵"}


@dataclass(frozen=True)
class AlertContext:
    """What messages need beyond the evaluation."""

    subject_name: str
    run_id: str | None = None
    base_model: str | None = None
    status: str | None = None
    link: str | None = None
    # A finished run: its totals no longer move, so no reminders.
    terminal: bool = False


# ---------------------------------------------------------------------------------------------- formatting


def safe_text(value: object, *, limit: int = NAME_LIMIT) -> str:
    """One sane line from untrusted text (run names, models, statuses from the API).

    Whitespace of any kind (newlines included) becomes one space; control, format (bidi overrides,
    zero-width) and lone-surrogate characters are dropped (a surrogate cannot even be encoded to
    send); longer than `limit` is cut with an ellipsis. Escaping &, <, > is the formatter's job.
    """
    kept: list[str] = []
    for char in str(value):
        if char.isspace():
            kept.append(" ")
        elif char == _ZERO_WIDTH_JOINER or unicodedata.category(char) not in ("Cc", "Cf", "Cs"):
            kept.append(char)
    text = " ".join("".join(kept).split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def format_money(value: float | None) -> str:
    """$1,234.56; sub-cent amounts keep four decimals so a small run does not read as $0.00."""
    if value is None or not math.isfinite(value):
        return "unknown" if value is None or math.isnan(value) else ("∞" if value > 0 else "-∞")
    sign = "-" if value < 0 else ""
    amount = abs(value)
    decimals = 4 if 0 < amount < 0.01 else 2
    return f"{sign}${amount:,.{decimals}f}"


def format_tokens(value: float | None) -> str:
    """1,234 tokens below a million, then 12.35M / 1.2B."""
    if value is None or not math.isfinite(value):
        return "unknown"
    for size, suffix in ((1e9, "B"), (1e6, "M")):
        if abs(value) >= size:
            return f"{value / size:.2f}".rstrip("0").rstrip(".") + f"{suffix} tokens"
    return f"{round(value):,} tokens"


def format_metric_value(metric: str, value: float | None) -> str:
    """A metric's value in its unit (from the catalog): money, tokens, money per hour, or a duration."""
    if value is None:
        return "unknown"
    unit = CATALOG[metric].unit if metric in CATALOG else "usd"
    if unit == "tokens":
        return format_tokens(value)
    if unit == "seconds":
        return format_duration(value) if value >= 0 else "unknown"
    if unit == "usd_per_hour":
        return format_money(value) + "/h"
    return format_money(value)


def _percent(utilisation: float | None) -> str | None:
    if utilisation is None or not math.isfinite(utilisation):
        return None
    # Floored, so 99.98% of a cap never reads as "100%" while it is not breached.
    return f"{math.floor(utilisation * 100 + 1e-9):,}%"


def _noun(rule: RunRule | WalletRule) -> str:
    noun = CATALOG[rule.metric].noun
    if isinstance(rule, RunRule) and rule.metric == "projected_cost_usd":
        return f"{noun} in {format_duration(rule.horizon)}"
    if isinstance(rule, WalletRule) and rule.metric == "spend_usd":
        return f"{noun} over {format_duration(rule.window)}"
    return noun


def _display_name(rule: RunRule | WalletRule, context: AlertContext, evaluation: Evaluation) -> str:
    name = safe_text(context.subject_name) or safe_text(evaluation.subject) or "?"
    if isinstance(rule, WalletRule) and not name.lower().startswith("wallet"):
        name = f"wallet {name}"
    return name


def _safe_link(link: str | None) -> str | None:
    if not link or not link.startswith(("https://", "http://")):
        return None
    return link if safe_text(link, limit=2048) == link else None


# ---------------------------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class _Facts:
    """Everything a message says, formatted once."""

    name: str
    rule: str
    noun: str
    value: str
    limit: str
    percent: str | None
    below: bool
    metric: str
    wallet: bool


def _facts(rule: RunRule | WalletRule, evaluation: Evaluation, context: AlertContext) -> _Facts:
    def shown(value: float | None) -> str:
        # "training tokens 12.35M of 20M": the noun already names the unit.
        return format_metric_value(rule.metric, value).removesuffix(" tokens")

    return _Facts(
        name=_display_name(rule, context, evaluation),
        rule=safe_text(rule.name, limit=100),
        noun=_noun(rule),
        value=shown(evaluation.value),
        limit=shown(evaluation.limit),
        percent=_percent(evaluation.utilisation),
        below=evaluation.breaches_below,
        metric=rule.metric,
        wallet=isinstance(rule, WalletRule),
    )


def _title(kind: NotificationKind, facts: _Facts, evaluation: Evaluation, *, tier: int, tier_count: int) -> str:
    breach = tier == tier_count
    emoji = "✅" if kind == "resolve" else _EMOJI.get(evaluation.severity, "🔴")
    if facts.below:
        reading = f"{facts.noun} {facts.value} (alert below {facts.limit})"
        if kind == "resolve":
            verb = "back above"
        elif kind == "renotify":
            verb = "still below" if breach else "still nearing"
        else:
            verb = "breached" if breach else "nearing"
        return f"{emoji} {facts.name} {verb} {facts.rule}: {reading}"
    noun = "" if facts.metric == "total_cost_usd" else f"{facts.noun} "
    reading = f"{noun}{facts.value} of {facts.limit}"
    if kind == "resolve":
        return f"{emoji} {facts.name} back within {facts.rule}: {reading}"
    used = f" ({facts.percent})" if facts.percent else ""
    if breach:
        verb = "still over" if kind == "renotify" else "breached"
        return f"{emoji} {facts.name} {verb} {facts.rule}: {reading}{used}"
    verb = "still at" if kind == "renotify" else "at"
    return f"{emoji} {facts.name} {verb} {evaluation.tier_label} of {facts.rule}: {reading}"


def _what_line(kind: NotificationKind, facts: _Facts, evaluation: Evaluation, *, breach: bool) -> str:
    subject = facts.name[:1].upper() + facts.name[1:] if facts.wallet else f"Run {facts.name}"
    value = evaluation.value
    gap = None if value is None else format_metric_value(facts.metric, abs(value - evaluation.limit))
    gap = gap.removesuffix(" tokens") if gap else gap
    verb = "are" if facts.noun.endswith("tokens") else "is"
    reading = f"{facts.noun} {verb} {facts.value}"
    if kind == "resolve":
        return f"{subject} is back within rule {facts.rule}: {reading} (limit {facts.limit})."
    if facts.below:
        if breach:
            return f"{subject} breached rule {facts.rule}: {reading}, {gap} under the floor of {facts.limit}."
        warn = format_metric_value(facts.metric, evaluation.tier_threshold).removesuffix(" tokens")
        return (
            f"{subject} is nearing rule {facts.rule}: {reading}, under the warning level of {warn};"
            f" it breaches below {facts.limit} ({gap} to go)."
        )
    used = f", {facts.percent} used" if facts.percent else ""
    if breach:
        return f"{subject} breached rule {facts.rule}: {reading}, {gap} over the limit of {facts.limit}{used}."
    return (
        f"{subject} reached the {evaluation.tier_label} warning tier of rule {facts.rule}: {reading}"
        f" of {facts.limit} ({gap} left{used})."
    )


def _action_line(rule: RunRule | WalletRule, *, breach: bool) -> str:
    action = "delete (see enforcement)" if rule.action == "delete" else "alert only"
    if breach:
        return f"Action: {action}."
    where = f"{'below' if rule.breaches_below else 'at'} {format_metric_value(rule.metric, rule.limit)}"
    return f"Next: the rule breaches {where}; action on breach: {action}."


def _text(
    kind: NotificationKind,
    facts: _Facts,
    evaluation: Evaluation,
    *,
    rule: RunRule | WalletRule,
    context: AlertContext,
    state: AlertState,
    now: float,
) -> str:
    breach = evaluation.tier == evaluation.tier_count and evaluation.tier > 0
    lines = [_what_line(kind, facts, evaluation, breach=breach)]
    if kind == "renotify" and state.opened_at is not None:
        lines.append(f"Open for {format_duration(now - state.opened_at)}.")
    if kind == "resolve":
        if state.opened_at is not None:
            lines.append(f"Resolved after {format_duration(now - state.opened_at)}.")
        return "\n".join(lines)
    pace: list[str] = []
    if evaluation.burn_rate_usd_per_hour is not None:
        scope = "Total burn rate of watched runs" if isinstance(rule, WalletRule) else "Burn rate"
        pace.append(f"{scope}: {format_metric_value('burn_rate_usd_per_hour', evaluation.burn_rate_usd_per_hour)}.")
    if evaluation.time_to_limit_seconds is not None:
        if evaluation.time_to_limit_seconds <= 0:
            pace.append("The limit is already reached.")
        else:
            label = "Time to limit" if facts.wallet else "Time to budget"
            pace.append(f"{label} at this rate: {format_duration(evaluation.time_to_limit_seconds)}.")
    if pace:
        lines.append(" ".join(pace))
    lines.append(_action_line(rule, breach=breach))
    if context.terminal:
        status = f" ({safe_text(context.status, limit=20)})" if context.status else ""
        lines.append(f"The run has finished{status}: no reminders will follow.")
    elif rule.renotify is not None:
        lines.append(f"Reminder every {format_duration(rule.renotify)} while this stays open.")
    return "\n".join(lines)


def _format_time_to_limit(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return "reached" if seconds <= 0 else format_duration(seconds)


def _fields(
    facts: _Facts, evaluation: Evaluation, *, rule: RunRule | WalletRule, context: AlertContext
) -> tuple[tuple[str, str], ...]:
    rows: list[tuple[str, str | None]]
    if isinstance(rule, WalletRule):
        rows = [("Wallet", facts.name)]
    else:
        rows = [
            ("Run", facts.name),
            ("Run ID", safe_text(context.run_id or evaluation.subject)),
            ("Model", safe_text(context.base_model) if context.base_model else None),
            ("Status", safe_text(context.status, limit=20) if context.status else None),
        ]
    rows += [
        ("Rule", facts.rule),
        ("Metric", facts.noun),
        ("Value", facts.value),
        ("Threshold", f"below {facts.limit}" if facts.below else facts.limit),
        ("Used", None if facts.below else facts.percent),
        (
            "Burn rate",
            format_metric_value("burn_rate_usd_per_hour", evaluation.burn_rate_usd_per_hour)
            if evaluation.burn_rate_usd_per_hour is not None
            else None,
        ),
        (
            "Time to budget" if isinstance(rule, RunRule) else "Time to limit",
            _format_time_to_limit(evaluation.time_to_limit_seconds),
        ),
        ("Action", rule.action),
    ]
    return tuple((label, value) for label, value in rows if value)


def notification(
    kind: NotificationKind,
    dedup_key: str,
    *,
    state: AlertState,
    evaluation: Evaluation,
    rule: RunRule | WalletRule,
    context: AlertContext,
    now: float,
) -> Notification:
    facts = _facts(rule, evaluation, context)
    return Notification(
        kind=kind,
        dedup_key=dedup_key,
        thread_key=f"{state.subject}:{state.rule}:e{state.episode}",
        severity="info" if kind == "resolve" else evaluation.severity,
        title=_title(kind, facts, evaluation, tier=evaluation.tier, tier_count=evaluation.tier_count),
        text=_text(kind, facts, evaluation, rule=rule, context=context, state=state, now=now),
        created_at=now,
        subject=state.subject,
        rule=state.rule,
        fields=_fields(facts, evaluation, rule=rule, context=context),
        link=_safe_link(context.link),
    )
