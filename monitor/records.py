"""What the pipeline produces after the readings: rule evaluations, alert state, notifications
and action-log records. Plain data shared by rules, alerts, the store, notifiers and enforcement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from monitor.enforce.evidence import Evidence
from monitor.rules.trend import Trend

Scope = Literal["run", "wallet"]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One rule applied to one subject (a run id or the wallet id) at one moment."""

    rule: str
    scope: Scope
    subject: str
    subject_name: str
    metric: str
    # None when the metric cannot be computed yet (e.g. a burn rate with one reading).
    value: float | None
    limit: float
    breaches_below: bool
    # 0 = within all tiers; 1..len(warn_at) = warning tiers; len(warn_at) + 1 = breached.
    tier: int
    tier_count: int
    tier_label: str
    tier_threshold: float | None
    severity: str
    action: str
    # Fraction of the limit used: value/limit for rising metrics, limit/value for falling ones.
    utilisation: float | None
    # True when the value is back inside the first tier by the rule's hysteresis: an open alert resolves.
    clear: bool
    taken_at: float
    burn_rate_usd_per_hour: float | None = None
    time_to_limit_seconds: float | None = None
    # The pace of the rule's metric behind time_to_limit (landings, steadiness): what a projection
    # may act on (anticipated countdowns, kill-ahead).
    trend: Trend | None = None

    @property
    def breached(self) -> bool:
        return self.tier == self.tier_count and self.tier > 0


@dataclass(slots=True)
class AlertState:
    """The alert of one rule on one subject: the highest tier already announced in this episode."""

    subject: str
    rule: str
    tier: int = 0
    # Bumped each time an alert opens after a resolve, so dedup keys of a new episode differ.
    episode: int = 0
    opened_at: float | None = None
    last_notified_at: float | None = None
    last_value: float | None = None
    severity: str = "info"

    @property
    def firing(self) -> bool:
        return self.tier > 0


NotificationKind = Literal[
    "alert",
    "renotify",
    "resolve",
    "delete_pending",
    "delete_done",
    "delete_refused",
    "delete_failed",
    "delete_cap_reached",
    "enforcement_stopped",
    # The monitor about itself: it cannot see (key refused, API unreachable, data stale, store or
    # notifications failing), then it can again; and one run it cannot read, then can.
    "monitor_blind",
    "monitor_restored",
    "run_unreadable",
    "run_readable",
]


@dataclass(frozen=True, slots=True)
class Notification:
    kind: NotificationKind
    # Unique: enqueuing a key the outbox already holds is a no-op, so nothing is sent twice.
    dedup_key: str
    # Messages with the same thread key reply in the thread of the first one delivered (Slack).
    thread_key: str
    severity: str
    title: str
    text: str
    created_at: float
    subject: str = ""
    rule: str = ""
    fields: tuple[tuple[str, str], ...] = ()
    link: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A notification waiting for one channel (slack, webhook, console)."""

    id: int
    channel: str
    notification: Notification
    attempts: int
    next_attempt_at: float
    last_error: str | None = None


ActionDecision = Literal[
    "delete_pending",
    "would_delete",
    "delete_intent",
    "deleted",
    "already_gone",
    "refused",
    "failed",
    "cancelled",
    "reconciled",
]


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One line of the action log: a decision with the evidence that justified it."""

    run_id: str
    rule: str
    decision: ActionDecision
    reason: str
    created_at: float
    config_hash: str
    dry_run: bool
    evidence: Evidence = field(default_factory=Evidence)
    # A result points at the intent it completes, so a restart can find intents without results.
    intent_id: int | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Protection:
    """A runtime exemption from deletion (`prime-cost-monitor protect RUN`)."""

    run_id: str
    created_at: float
    until: float | None
    reason: str = ""
