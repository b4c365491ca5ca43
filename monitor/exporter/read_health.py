"""How the reading of one run (or of the wallet) is going: the kinds a read can end in, and each run's
freshness and failure streak, which decide whether enforcement may act, what health says, and when the
monitor tells people it cannot see. Kept in the live state (monitor.exporter.live), changed only
through its methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# How a read of one run (or of the wallet) ended. "Seeing" kinds prove the API answered and took the
# key; "blind" kinds say nothing about the run itself.
ReadKind = Literal[
    "ok",
    "held",  # a decrease (a billing correction?) waiting for the next reading to confirm it
    "rejected",  # an implausible reading: counted, never the baseline
    "invalid_response",  # a 2xx that does not match the spec
    "not_found",
    "forbidden",  # 403: the key works but may not read this run
    "unauthorized",  # 401: the key is refused
    "unaddressable",  # an id that cannot be put in a URL safely
    "rate_limited",
    "server_error",
    "unreachable",
    "timeout",
    "internal_error",  # a bug while processing this run: confined to it, logged with its traceback
]
SEEING_KINDS: frozenset[str] = frozenset(
    {"ok", "held", "rejected", "invalid_response", "not_found", "forbidden", "unaddressable"}
)
# Failures that say the API or the key is the problem, not this run: while every read fails this way
# the monitor is blind as a whole (one "monitor is blind" message), not one alert per run.
MONITOR_WIDE_KINDS: frozenset[str] = frozenset(
    {"unauthorized", "rate_limited", "server_error", "unreachable", "timeout"}
)


@dataclass
class RunHealth:
    """How the reading of one run is going: freshness and failures decide whether enforcement may act."""

    last_success_at: float | None = None
    # Monotonic time of the last good reading: what freshness is judged on.
    last_success_mono: float | None = None
    last_attempt_at: float | None = None
    last_error: str | None = None
    # The kind of the last read ("ok" after a good one) and when the current failing streak began.
    last_kind: str = "ok"
    failing_since: float | None = None
    consecutive_failures: int = 0
    # Set when the run reached a terminal status and its final totals were read.
    finished_at: float | None = None

    @property
    def last_poll_failed(self) -> bool:
        return self.consecutive_failures > 0

    # The streak began at this monotonic time; other reads were seen during it (so its failures are
    # this run's own, not a monitor-wide outage's).
    failing_since_mono: float | None = None
    others_seen_during_streak: bool = False

    @property
    def failing_on_its_own(self) -> bool:
        """The failures are this run's: a kind that says so (404, 403, bad data, a bug), or a 401/5xx/timeout
        streak during which other reads succeeded."""
        return self.last_kind in SEEING_KINDS or self.last_kind == "internal_error" or self.others_seen_during_streak

    def succeeded(self) -> None:
        self.last_error = None
        self.last_kind = "ok"
        self.failing_since = self.failing_since_mono = None
        self.others_seen_during_streak = False
        self.consecutive_failures = 0

    def failed(self, *, kind: str, error: str, at: float, mono: float, last_seen_mono: float | None) -> None:
        if self.failing_since is None:
            self.failing_since, self.failing_since_mono = at, mono
        elif last_seen_mono is not None and self.failing_since_mono is not None:
            self.others_seen_during_streak |= last_seen_mono > self.failing_since_mono
        self.consecutive_failures += 1
        self.last_error = error
        self.last_kind = kind
