"""The daemon's live view of the world: what the latest pass saw, kept in memory.

The poller and pipeline replace entries as readings arrive; the metrics collector, the health
endpoints and the demo's console view only read it. Everything runs on one event loop, so a
scrape always sees a whole snapshot, never a half-updated one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from monitor.events import Evaluation
from monitor.snapshots import RunSnapshot, WalletSnapshot

# Latency buckets (seconds) for API requests: the API answers in tens of ms, timeouts are ~10 s.
LATENCY_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class LatencyHistogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    count: int = 0
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1


@dataclass
class RequestStats:
    """Every API request the client made, by endpoint and outcome code ("200", "503", "timeout", ...)."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    latency: dict[str, LatencyHistogram] = field(default_factory=dict)
    retries: Counter[str] = field(default_factory=Counter)

    def observe(self, endpoint: str, code: str, seconds: float) -> None:
        self.counts[(endpoint, code)] += 1
        self.latency.setdefault(endpoint, LatencyHistogram()).observe(seconds)

    def observe_retry(self, endpoint: str) -> None:
        self.retries[endpoint] += 1


@dataclass
class RunHealth:
    """How the polling of one run is going: freshness and failures decide whether enforcement may act."""

    last_success_at: float | None = None
    last_attempt_at: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    # Set when the run reached a terminal status and its final totals were read.
    finished_at: float | None = None

    @property
    def last_poll_failed(self) -> bool:
        return self.consecutive_failures > 0


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
    notifications_failed: Counter[str] = field(default_factory=Counter)  # by channel
    requests: RequestStats = field(default_factory=RequestStats)
    last_poll_success_at: float | None = None
    last_wallet_success_at: float | None = None
    # Last time the scheduler ran any job: /healthz fails when it stops moving.
    heartbeat_at: float | None = None
    config_loaded: bool = False
    config_hash: str = ""
    started_at: float = 0.0

    @property
    def ready(self) -> bool:
        return self.config_loaded and self.last_poll_success_at is not None
