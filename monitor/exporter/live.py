"""The daemon's live view of the world: what the latest reads saw, kept in memory.

The poller and pipeline replace entries as readings arrive; the metrics collector, the health
endpoints and the demo's console view only read it. Everything runs on one event loop, so a
scrape always sees a whole snapshot, never a half-updated one.

What happened to a read is recorded through methods named for it (`run_read`, `run_read_failed`,
`wallet_read`, ...), so the counters and freshness marks that health, metrics and self-alerts rely
on change in one place each. Freshness is measured on the monotonic clock: a host clock that jumps
neither makes stale data look fresh nor fresh data look stale.

Those methods also tell `changes` which subjects' series changed (a run's reading, read health,
burn rate or evaluations; a wallet's evaluations): the /metrics cache re-renders only those. A
change made to the dicts directly, not through a method, is invisible to a scrape.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from monitor.exporter.read_health import MONITOR_WIDE_KINDS, SEEING_KINDS, RunHealth
from monitor.exporter.requests import RequestStats
from monitor.records import Evaluation
from monitor.snapshots import RunSnapshot, WalletSnapshot


class SeriesChanges:
    """Which subjects' per-subject series changed, for the /metrics cache (monitor.exporter.scrape_cache).

    `version` goes up on every change; `last_changed` holds each subject the runtime knows with the
    version of its last change, oldest change first, so a reader that rendered at version v finds
    what changed since by walking it backwards until v. `removals` counts subjects forgotten (a
    reader that saw fewer drops their series). `rules` indexes the evaluated rules by subject, so a
    subject's evaluations are found without scanning every (subject, rule).
    """

    __slots__ = ("last_changed", "removals", "rules", "version")

    def __init__(self) -> None:
        self.version = 0
        self.removals = 0
        self.last_changed: dict[str, int] = {}
        self.rules: dict[str, dict[str, None]] = {}

    def changed(self, subject: str, *, rule: str | None = None) -> None:
        self.version += 1
        # Re-inserted so the dict stays in order of change: a reader stops at the first it has seen.
        self.last_changed.pop(subject, None)
        self.last_changed[subject] = self.version
        if rule is not None:
            self.rules.setdefault(subject, {})[rule] = None

    def forgot(self, subject: str) -> None:
        self.version += 1
        self.removals += 1
        self.last_changed.pop(subject, None)
        self.rules.pop(subject, None)

    def since(self, version: int) -> list[str]:
        """Subjects changed after `version`, most recent first."""
        changed = []
        for subject, at in reversed(self.last_changed.items()):
            if at <= version:
                break
            changed.append(subject)
        return changed


@dataclass
class RuntimeState:
    runs: dict[str, RunSnapshot] = field(default_factory=dict)
    health: dict[str, RunHealth] = field(default_factory=dict)
    burn_rates: dict[str, float] = field(default_factory=dict)
    # Latest evaluation per (subject, rule).
    evaluations: dict[tuple[str, str], Evaluation] = field(default_factory=dict)
    wallet: WalletSnapshot | None = None
    wallet_runway_seconds: float | None = None
    wallet_spend_usd: dict[str, float] = field(default_factory=dict)  # by rule name (its window)
    alerts_sent: Counter[tuple[str, str]] = field(default_factory=Counter)  # (rule, severity)
    deletions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (rule, outcome)
    invalid_responses: Counter[str] = field(default_factory=Counter)  # by endpoint
    # Readings refused by the reading model, by (endpoint, reason): implausible, a decrease never confirmed.
    readings_rejected: Counter[tuple[str, str]] = field(default_factory=Counter)
    # Decreases accepted as billing corrections once the next reading confirmed them, by endpoint.
    corrections: Counter[str] = field(default_factory=Counter)
    # Failed reads by (endpoint, kind): what /metrics shows as prime_monitor_read_failures_total.
    read_failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    notifications_failed: Counter[str] = field(default_factory=Counter)  # by channel
    # Self-alerts sent ("monitor is blind" / "restored" / a run unreadable / readable), by (cause, kind).
    self_alerts: Counter[tuple[str, str]] = field(default_factory=Counter)
    requests: RequestStats = field(default_factory=RequestStats)
    last_poll_success_at: float | None = None
    last_wallet_success_at: float | None = None
    wallet_health: RunHealth = field(default_factory=RunHealth)
    # Monotonic time of the last read that proved the API answers and takes the key (any endpoint).
    last_seen_mono: float | None = None
    # Monotonic time of the last read attempt that ended at all (seeing or not).
    last_attempt_mono: float | None = None
    # The first 401 since the last seeing read (wall and monotonic), and its message. A 401 on one run
    # beside good reads of others is cleared by those reads within a pass; the key is refused when
    # this persists (monitor.exporter.health decides how long) or the wallet itself answered 401.
    unauthorized_since: float | None = None
    unauthorized_mono: float | None = None
    unauthorized_error: str | None = None
    # The first blind failure (API down, 5xx, timeouts, 429) since the last seeing read, and the last one.
    unreachable_since: float | None = None
    unreachable_mono: float | None = None
    unreachable_error: str | None = None
    # The state store: None while it works; since when (wall and monotonic) and why it fails.
    store_failing_since: float | None = None
    store_failing_mono: float | None = None
    store_error: str | None = None
    # Per scheduled job: monotonic time of its last completion without an exception, and since when it fails.
    job_ok_mono: dict[str, float] = field(default_factory=dict)
    job_failing_since_mono: dict[str, float] = field(default_factory=dict)
    # Discovery: billing rows the last bounded wallet read could not reach (runs may be missed).
    discovery_rows_unread: int = 0
    # Last time the scheduler ran any job: /healthz fails when it stops moving.
    heartbeat_at: float | None = None
    heartbeat_mono: float | None = None
    config_loaded: bool = False
    config_hash: str = ""
    started_at: float = 0.0
    started_mono: float = 0.0
    # Causes the monitor is blind for right now (set by the self-watch), with since when (wall time).
    blind: dict[str, float] = field(default_factory=dict)
    # Enforcement: its mode (dry_run, live, stopped) and the countdowns in progress: (run, rule) -> deadline.
    enforcement_mode: str = "dry_run"
    pending_deadlines: dict[tuple[str, str], float] = field(default_factory=dict)
    # Notification channels configured, and per channel: (undelivered items, when the oldest was queued).
    channels: list[str] = field(default_factory=list)
    outbox: dict[str, tuple[int, float | None]] = field(default_factory=dict)
    notifications_superseded: Counter[str] = field(default_factory=Counter)
    # Config reloads by outcome (applied, rejected), and whether the last one applied.
    reloads: Counter[str] = field(default_factory=Counter)
    # Scheduled runs of a job skipped because its last run had not finished, by job.
    jobs_skipped: Counter[str] = field(default_factory=Counter)
    last_reload_ok: bool | None = None
    # Money the wallet lost since the monitor started (sum of balance decreases), by wallet id.
    wallet_spend_total: dict[str, float] = field(default_factory=dict)
    # Which subjects' series changed, for the /metrics cache; kept by the methods below.
    changes: SeriesChanges = field(default_factory=SeriesChanges, compare=False, repr=False)

    # -- what happened to a read ----------------------------------------------------------------

    def run_read(self, run_id: str, snapshot: RunSnapshot, *, mono: float) -> RunHealth:
        """A good reading of a run was accepted."""
        health = self.health.setdefault(run_id, RunHealth())
        self.runs[run_id] = snapshot
        self.changes.changed(run_id)
        health.last_success_at = snapshot.taken_at
        health.last_success_mono = mono
        if health.last_kind != "internal_error":
            self.run_processed(run_id)
        # else: the streak of failures to process this run goes on until `run_processed` says it ended.
        self.last_poll_success_at = snapshot.taken_at
        self._seen(mono)
        return health

    def run_processed(self, run_id: str) -> None:
        """A reading of the run went through the rules and enforcement without an error."""
        self.health.setdefault(run_id, RunHealth()).succeeded()
        self.changes.changed(run_id)

    def run_read_failed(self, run_id: str, *, kind: str, error: str, at: float, mono: float) -> RunHealth:
        """A read of a run gave nothing usable: an API error, bad data, a held decrease or a bug."""
        health = self.health.setdefault(run_id, RunHealth())
        health.failed(kind=kind, error=error, at=at, mono=mono, last_seen_mono=self.last_seen_mono)
        self.changes.changed(run_id)
        self._read_failed("usage", kind=kind, error=error, at=at, mono=mono)
        return health

    def wallet_read(self, wallet: WalletSnapshot, *, mono: float) -> None:
        previous = self.wallet
        spent = self.wallet_spend_total.setdefault(wallet.wallet_id, 0.0)
        same_wallet = previous is not None and previous.wallet_id == wallet.wallet_id
        if same_wallet and previous is not None and wallet.balance_usd < previous.balance_usd:
            # A top-up raises the balance and hides nothing: only decreases are spend.
            self.wallet_spend_total[wallet.wallet_id] = spent + previous.balance_usd - wallet.balance_usd
        self.wallet = wallet
        self.last_wallet_success_at = wallet.taken_at
        self.last_poll_success_at = wallet.taken_at
        self.wallet_health.last_success_at = wallet.taken_at
        self.wallet_health.last_success_mono = mono
        self.wallet_health.succeeded()
        self._seen(mono)

    def wallet_read_failed(self, *, kind: str, error: str, at: float, mono: float) -> None:
        self.wallet_health.failed(kind=kind, error=error, at=at, mono=mono, last_seen_mono=self.last_seen_mono)
        self._read_failed("wallet", kind=kind, error=error, at=at, mono=mono)

    def _read_failed(self, endpoint: str, *, kind: str, error: str, at: float, mono: float) -> None:
        self.read_failures[(endpoint, kind)] += 1
        if kind in SEEING_KINDS:
            self._seen(mono)
        elif kind in MONITOR_WIDE_KINDS:
            self._blind_failure(kind, error, at=at, mono=mono)
        # else (internal_error): our own failure says nothing about the API or the key.

    def config_applied(self, config_hash: str) -> None:
        """A config was loaded (at start or by a reload) and is in force."""
        self.config_loaded = True
        self.config_hash = config_hash

    def restored(self, run_id: str, snapshot: RunSnapshot) -> None:
        """A run's last reading, loaded from the store at start (not a fresh read: no health mark)."""
        self.runs[run_id] = snapshot
        self.changes.changed(run_id)

    def invalid_response(self, endpoint: str) -> None:
        self.invalid_responses[endpoint] += 1

    def unaddressable_run_refused(self) -> None:
        self.read_failures[("wallet", "unaddressable")] += 1

    def discovery_coverage(self, *, rows_unread: int) -> None:
        self.discovery_rows_unread = rows_unread

    def burn_rate_measured(self, run_id: str, rate: float | None) -> None:
        if rate is None:
            self.burn_rates.pop(run_id, None)
        else:
            self.burn_rates[run_id] = rate
        self.changes.changed(run_id)

    def evaluated(self, evaluation: Evaluation) -> None:
        self.evaluations[(evaluation.subject, evaluation.rule)] = evaluation
        self.changes.changed(evaluation.subject, rule=evaluation.rule)

    def wallet_figures(self, *, runway_seconds: float | None, spend_by_rule: dict[str, float]) -> None:
        self.wallet_runway_seconds = runway_seconds
        self.wallet_spend_usd.update(spend_by_rule)

    def alert_delivered(self, *, rule: str, severity: str) -> None:
        """An alert or reminder reached its first channel (counted once, not per channel or attempt)."""
        self.alerts_sent[(rule, severity)] += 1

    def notification_failed(self, channel: str) -> None:
        self.notifications_failed[channel] += 1

    def deletion_concluded(self, *, rule: str, outcome: str) -> None:
        self.deletions[(rule, outcome)] += 1

    def enforcement_mode_is(self, mode: str) -> None:
        self.enforcement_mode = mode

    def deletes_pending(self, deadlines: dict[tuple[str, str], float]) -> None:
        self.pending_deadlines = deadlines

    def channels_configured(self, channels: list[str]) -> None:
        self.channels = list(channels)

    def outbox_seen(self, backlog: dict[str, tuple[int, float | None]], superseded: Counter[str]) -> None:
        self.outbox = backlog
        self.notifications_superseded = Counter(superseded)

    def reload_applied(self) -> None:
        self.reloads["applied"] += 1
        self.last_reload_ok = True

    def reload_rejected(self) -> None:
        self.reloads["rejected"] += 1
        self.last_reload_ok = False

    def blind_now(self, causes: dict[str, float]) -> None:
        self.blind = causes

    def self_alert_sent(self, *, cause: str, kind: str) -> None:
        self.self_alerts[(cause, kind)] += 1

    def reading_rejected(self, endpoint: str, reason: str) -> None:
        self.readings_rejected[(endpoint, reason)] += 1

    def reading_corrected(self, endpoint: str) -> None:
        self.corrections[endpoint] += 1

    def store_failed(self, error: str, *, at: float, mono: float) -> None:
        if self.store_failing_since is None:
            self.store_failing_since, self.store_failing_mono = at, mono
        self.store_error = error

    def store_works(self) -> None:
        self.store_failing_since = self.store_failing_mono = None
        self.store_error = None

    def jobs_scheduled(self, jobs: Iterable[str]) -> None:
        for job in jobs:
            self.jobs_skipped.setdefault(job, 0)

    def job_skipped(self, job: str) -> None:
        self.jobs_skipped[job] += 1

    def job_finished(self, job: str, *, ok: bool, mono: float) -> None:
        if ok:
            self.job_ok_mono[job] = mono
            self.job_failing_since_mono.pop(job, None)
        else:
            self.job_failing_since_mono.setdefault(job, mono)

    def beat(self, *, at: float, mono: float) -> None:
        self.heartbeat_at = at
        self.heartbeat_mono = mono

    def forget_run(self, run_id: str) -> None:
        """A finished run past its retention leaves the live view, and its series with it."""
        self.runs.pop(run_id, None)
        self.burn_rates.pop(run_id, None)
        self.health.pop(run_id, None)
        for key in [k for k in self.evaluations if k[0] == run_id]:
            del self.evaluations[key]
        self.changes.forgot(run_id)

    def _seen(self, mono: float) -> None:
        self.last_seen_mono = mono
        self.last_attempt_mono = mono
        self.unauthorized_since = self.unauthorized_mono = None
        self.unauthorized_error = None
        self.unreachable_since = self.unreachable_mono = None
        self.unreachable_error = None

    def _blind_failure(self, kind: str, error: str, *, at: float, mono: float) -> None:
        self.last_attempt_mono = mono
        if kind == "unauthorized":
            if self.unauthorized_since is None:
                self.unauthorized_since, self.unauthorized_mono = at, mono
            self.unauthorized_error = error
        else:
            if self.unreachable_since is None:
                self.unreachable_since, self.unreachable_mono = at, mono
            self.unreachable_error = error

    # -- what readers ask --------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Kept for views that only need a yes/no; /readyz asks monitor.exporter.health for the reasons."""
        return self.config_loaded and self.last_seen_mono is not None and self.unauthorized_since is None
