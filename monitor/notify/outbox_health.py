"""How each notification channel is doing: what the outbox remembers between passes, and the
snapshot it hands out (`OutboxDispatcher.channel_health()`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChannelHealth:
    """One channel, now. `failing_since` is None while the channel is healthy."""

    # Wall time of the first failure of the current outage (channel-wide failures only: a message
    # Slack refuses for its content does not make the channel unhealthy).
    failing_since: float | None
    # The latest channel-wide error of the current outage, secrets redacted; None when healthy.
    last_error: str | None
    consecutive_failures: int
    # Open items: neither delivered nor superseded.
    backlog: int
    # When the oldest open item was queued (wall time); None when nothing waits.
    oldest_undelivered_at: float | None

    @property
    def healthy(self) -> bool:
        return self.failing_since is None


@dataclass(slots=True)
class ChannelState:
    """The outbox's memory of one channel (in memory: a restart probes every channel at once)."""

    failing_since: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    # After a channel-wide failure nothing is sent before this (wall time): the probe's schedule.
    resting_until: float = 0.0
    # When the latest outage ended: items queued before then waited for it (what a late message says).
    outage_ended_at: float | None = None
    # "Cannot look for a possibly-sent message here" was logged (once per channel).
    lookup_fallback_logged: bool = False

    def failed(self, *, now: float, error: str, retry_at: float) -> bool:
        """Record a channel-wide failure; True when it starts an outage."""
        starts = self.failing_since is None
        if starts:
            self.failing_since = now
        self.last_error = error
        self.consecutive_failures += 1
        self.resting_until = retry_at
        return starts

    def recovered(self, *, now: float) -> bool:
        """Record a delivery; True when it ends an outage."""
        was_failing = self.failing_since is not None
        if was_failing:
            self.outage_ended_at = now
        self.failing_since = None
        self.last_error = None
        self.consecutive_failures = 0
        self.resting_until = 0.0
        return was_failing

    def waited_for_outage(self, *, queued_at: float, attempts: int) -> bool:
        """Whether an item queued then was held up by this channel failing (now or in its last outage)."""
        if attempts > 0 or self.failing_since is not None:
            return True
        return self.outage_ended_at is not None and queued_at <= self.outage_ended_at

    def snapshot(self, *, backlog: int, oldest_undelivered_at: float | None) -> ChannelHealth:
        return ChannelHealth(
            failing_since=self.failing_since,
            last_error=self.last_error,
            consecutive_failures=self.consecutive_failures,
            backlog=backlog,
            oldest_undelivered_at=oldest_undelivered_at,
        )
