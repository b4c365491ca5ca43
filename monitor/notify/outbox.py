"""The outbox dispatcher: every notification is written to the state store first, then delivered.

Guarantees, per channel:
- never lost: a failed send stays in the outbox and is retried, even after a restart;
- exactly once on Slack (Web API), as people see it, across crashes: just before a post the item
  records that an attempt started; the post carries the dedup key in its message metadata; an item
  whose attempt started but never ended (the daemon was killed, the request timed out, Slack
  answered 5xx) is looked up (`conversations.history`, or `conversations.replies` for a thread
  reply) before it is sent again, and marked delivered if it is there. When Slack will not let us
  look (no `channels:history` scope, bot not in the channel, channel id not learned yet) it is sent
  again: at least once, logged once per channel. The generic webhook and Slack incoming webhooks
  are at least once (the webhook carries a stable `Idempotency-Key`); the console too;
- in order: items go oldest first; after a channel-wide failure (down, rate limited, bad auth)
  nothing on that channel overtakes the failed item;
- fast recovery: while a channel is down its oldest item is retried (the probe) at most
  `probe_interval` apart (default min(retry_max, 5 s)); a 429's Retry-After is waited exactly; the
  first success releases every item's own backoff and the whole backlog goes in the same pass, in
  order (bounded by `pass_seconds`); message-specific refusals back off from retry_base to retry_max;
- honest when late: a message delivered more than `stale_after` (60 s) after it was queued says so,
  and an alert superseded while queued is folded into the newer message of its thread instead of
  being sent as if new (see monitor.notify.outbox_notes; folded items end in the distinct
  "superseded" state, logged and counted in `superseded_total`);
- threaded: a message whose thread already has a ref on the channel replies in it; the first
  delivered message of a thread stores its ref; a follow-up whose older thread items are still open
  waits instead of being posted top-level.
One channel failing never holds up another: channels are delivered concurrently and independently.
Items queued for a channel that is no longer configured stay queued (logged once) and go out when it
is configured again.
"""

from __future__ import annotations

import asyncio
import random
import traceback
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import structlog

from monitor.clock import Clock
from monitor.exporter.live import RuntimeState
from monitor.notify import outbox_notes as notes
from monitor.notify.base import Notifier, NotifyError, SentMessageLookup
from monitor.notify.outbox_channels import ChannelSet, check_unique, close_all
from monitor.notify.outbox_health import ChannelHealth, ChannelState
from monitor.records import Notification
from monitor.store.outbox import OutboxEntry
from monitor.store.state_store import StateStore

log = structlog.get_logger(__name__)

COUNTED_KINDS = frozenset({"alert", "renotify"})
# How many recently counted dedup keys to remember (alerts_sent counts a notification once).
_COUNTED_MEMORY = 10_000
DEFAULT_PROBE_CEILING = 5.0

Outcome = Literal["delivered", "superseded", "deferred", "failed", "channel_failed"]


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    # Due but not tried this pass: waiting for a thread root, or behind a failure on its channel.
    deferred: int = 0
    # Folded into a newer message of their thread, never sent themselves.
    superseded: int = 0


class OutboxDispatcher:
    def __init__(
        self,
        *,
        store: StateStore,
        notifiers: Sequence[Notifier],
        clock: Clock,
        retry_base: float = 5.0,
        retry_max: float = 300.0,
        runtime: RuntimeState | None = None,
        batch_size: int = 50,
        rng: random.Random | None = None,
        probe_interval: float | None = None,
        stale_after: float = 60.0,
        pass_seconds: float = 60.0,
    ) -> None:
        if retry_base <= 0 or retry_max < retry_base:
            raise ValueError("need 0 < retry_base <= retry_max")
        if probe_interval is not None and probe_interval <= 0:
            raise ValueError("probe_interval must be positive")
        self._store = store
        self._clock = clock
        self._retry_base = retry_base
        self._retry_max = retry_max
        # None: min(retry_max, 5 s), worked out on use so a reload's new retry_max applies to it too.
        self._probe_override = probe_interval
        self._stale_after = stale_after
        self._pass_seconds = pass_seconds
        self._runtime = runtime
        self._batch_size = batch_size
        self._rng = rng or random.Random()
        self._channels = ChannelSet(store, notifiers)
        self._counted: OrderedDict[str, None] = OrderedDict()
        self._lock = asyncio.Lock()
        # By channel: alerts folded into a newer message instead of being sent (for metrics).
        self.superseded_total: Counter[str] = Counter()
        # By channel: possibly-sent messages sent again because the channel would not let us look.
        self.lookup_fallbacks_total: Counter[str] = Counter()

    @property
    def channels(self) -> list[str]:
        return list(self._channels.notifiers)

    def publish(self, notification: Notification, *, channels: Sequence[str] | None = None) -> bool:
        """Queue a notification on every configured channel (`channels=None`) or on those of `channels`
        that are configured. False if its dedup key was ever queued (nothing is sent twice) or no
        channel is left to queue it on."""
        targets = [c for c in self._channels.notifiers if channels is None or c in channels]
        if not targets:
            log.debug("notification_dropped_no_channels", dedup_key=notification.dedup_key, asked=channels)
            return False
        added = self._store.outbox.enqueue(notification, channels=targets, now=self._clock.now())
        if added:
            log.info("notification_queued", dedup_key=notification.dedup_key, kind=notification.kind, channels=targets)
        return added

    async def deliver_due(self) -> DeliveryReport:
        """Send every item that is due, on every channel; returns what happened."""
        async with self._lock:
            self._channels.note_orphans()
            # return_exceptions: every channel finishes before the lock is released, even if one
            # raised (a store error), so no send can overlap the next pass.
            results = await asyncio.gather(
                *(self._deliver_channel(channel) for channel in self._channels.notifiers), return_exceptions=True
            )
        tally: Counter[Outcome] = Counter()
        for result in results:
            if isinstance(result, BaseException):
                raise result
            tally.update(result)
        return DeliveryReport(
            delivered=tally["delivered"],
            failed=tally["failed"] + tally["channel_failed"],
            deferred=tally["deferred"],
            superseded=tally["superseded"],
        )

    def channel_health(self) -> dict[str, ChannelHealth]:
        """Every configured channel: outage state from memory, backlog from an index (no table scan).
        Raises StoreError when the state store cannot be read."""
        health: dict[str, ChannelHealth] = {}
        for channel, state in self._channels.states.items():
            backlog, oldest = self._store.outbox.outbox_backlog(channel)
            health[channel] = state.snapshot(backlog=backlog, oldest_undelivered_at=oldest)
        return health

    async def send_direct(
        self,
        notification: Notification,
        *,
        channels: Sequence[str] | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 - a bound per channel, not a cancel scope for the caller
    ) -> dict[str, bool]:
        """Send at once on the chosen channels, bypassing the state store (for when the store itself is
        failing): no retry, no thread. Never raises; returns whether each channel took the message."""
        return await self._channels.send_direct(notification, channels=channels, timeout=timeout)

    async def replace_notifiers(self, notifiers: Sequence[Notifier]) -> None:
        """A config reload: waits for the delivery pass in flight, swaps the notifiers, closes the old
        ones. A replaced or new channel is retried at once; items of a removed channel stay queued."""
        check_unique(notifiers)
        async with self._lock:
            old = self._channels.install(notifiers)
            now = self._clock.now()
            for channel, notifier in self._channels.notifiers.items():
                if old.get(channel) is not notifier:
                    # New credentials or target: whatever waited for a fix goes now.
                    self._channels.states[channel].resting_until = 0.0
                    self._store.outbox.release_channel(channel, now=now)
            for channel in old.keys() - self._channels.notifiers.keys():
                log.warning("notification_channel_removed", channel=channel)
        kept = {id(n) for n in self._channels.notifiers.values()}
        await close_all([n for n in old.values() if id(n) not in kept])
        log.info("notifiers_replaced", channels=self.channels)

    def set_retry(self, *, retry_base: float, retry_max: float) -> None:
        """A reload's new notify.retry_base / retry_max: they apply to the next failure."""
        if retry_base <= 0 or retry_max < retry_base:
            raise ValueError("need 0 < retry_base <= retry_max")
        self._retry_base = retry_base
        self._retry_max = retry_max

    async def aclose(self) -> None:
        await close_all(list(self._channels.notifiers.values()))

    def retry_delay(self, *, attempts: int, error: NotifyError) -> float:
        """Seconds until the next attempt, given the attempts already made before this failure."""
        if error.retry_after is not None:
            return error.retry_after
        if error.permanent:
            return self._retry_max
        # A channel that is down is probed often, so its backlog goes out soon after it recovers.
        probe = self._probe_override if self._probe_override is not None else DEFAULT_PROBE_CEILING
        cap = min(self._retry_max, probe) if error.scope == "channel" else self._retry_max
        step = min(cap, self._retry_base * 2.0 ** min(attempts, 32))
        # Jitter in the upper half: spreads retries without ever retrying sooner than half the step.
        return max(min(self._retry_base, cap), step * self._rng.uniform(0.5, 1.0))

    # -- one channel -------------------------------------------------------------------------------

    async def _deliver_channel(self, channel: str) -> Counter[Outcome]:
        tally: Counter[Outcome] = Counter()
        notifier = self._channels.notifiers[channel]
        state = self._channels.states[channel]
        if self._clock.now() < state.resting_until:
            tally["deferred"] = len(
                self._store.outbox.due(now=self._clock.now(), channel=channel, limit=self._batch_size)
            )
            return tally
        deadline = self._clock.monotonic() + self._pass_seconds
        after_id = 0
        while items := self._store.outbox.due(
            now=self._clock.now(), channel=channel, limit=self._batch_size, after_id=after_id
        ):
            for index, item in enumerate(items):
                if self._clock.monotonic() >= deadline:
                    # The rest goes next pass; the daemon's job timeout must never cut a send in half.
                    tally["deferred"] += len(items) - index
                    return tally
                after_id = item.id
                outcome = await self._process(notifier, state, item)
                tally[outcome] += 1
                if outcome == "channel_failed":
                    # Keep the order: nothing after the failed item goes before it is retried.
                    tally["deferred"] += len(items) - index - 1
                    return tally
        return tally

    async def _process(self, notifier: Notifier, state: ChannelState, item: OutboxEntry) -> Outcome:
        channel, notification = item.channel, item.notification
        thread_key = notification.thread_key
        thread_ref = self._store.outbox.thread_ref(channel, thread_key) if thread_key else None
        lookup = notifier if isinstance(notifier, SentMessageLookup) else None
        if lookup is not None and item.attempt_started_at is not None:
            try:
                found = await lookup.find_sent(
                    notification, thread_ref=thread_ref, attempt_started_at=item.attempt_started_at
                )
            except Exception as error:
                # Cannot look now (down, rate limited): sending blind could post twice; wait instead.
                failure = self._as_notify_error(channel, error)
                return self._failed(state, item, failure, unknown_since=item.attempt_started_at)
            if found.found_ref is not None:
                self._delivered(state, item, ref=found.found_ref, thread_ref=thread_ref, found=True)
                return "delivered"
            if found.unavailable is not None:
                self._lookup_unavailable(state, item, found.unavailable)
        thread = self._store.outbox.thread_entries(channel=channel, thread_key=thread_key) if thread_key else []
        # Only a late item is folded: in normal operation every tier crossing is its own message.
        late = self._clock.now() - _queued_at(item) > self._stale_after
        newer = notes.superseding_id(item.id, notification.kind, thread) if late else None
        if newer is not None:
            if not self._store.outbox.mark_superseded(item.id, by=newer, now=self._clock.now()):
                return "deferred"  # no longer open: nothing to send
            self.superseded_total[channel] += 1
            log.info("notification_superseded", channel=channel, item_id=item.id, dedup_key=notification.dedup_key,
                     kind=notification.kind, superseded_by=newer)  # fmt: skip
            return "superseded"
        if thread_key and thread_ref is None and any(e.id < item.id and e.state == "open" for e in thread):
            return "deferred"  # its thread's first message has not gone yet
        annotated = self._annotate(state, item, reached=any(e.state == "delivered" for e in thread))
        started = self._clock.now()
        if lookup is not None:
            # Committed before the request leaves: after a crash this item says "maybe sent".
            self._store.outbox.mark_attempt_started(item.id, at=started)
        try:
            ref = await notifier.send(annotated, thread_ref=thread_ref)
        except Exception as error:
            failure = self._as_notify_error(channel, error)
            maybe_sent = lookup is not None and failure.outcome_unknown
            return self._failed(state, item, failure, unknown_since=started if maybe_sent else None)
        self._delivered(state, item, ref=ref, thread_ref=thread_ref, found=False)
        return "delivered"

    def _annotate(self, state: ChannelState, item: OutboxEntry, *, reached: bool) -> Notification:
        now = self._clock.now()
        queued_at = _queued_at(item)
        waited = state.waited_for_outage(queued_at=queued_at, attempts=item.attempts)
        cause = notes.hold_up(item.channel, failing=waited)
        lines: list[str] = []
        if now - queued_at > self._stale_after:
            lines.append(notes.delayed_note(queued_at=queued_at, now=now, cause=cause))
        folded = self._store.outbox.superseded_into(item.id) if item.notification.thread_key else []
        if folded:
            note = notes.folded_note(item.notification, folded, thread_reached_channel=reached, cause=cause, now=now)
            lines.append(note)
        return notes.with_notes(item.notification, lines)

    def _delivered(
        self, state: ChannelState, item: OutboxEntry, *, ref: str | None, thread_ref: str | None, found: bool
    ) -> None:
        now = self._clock.now()
        notification = item.notification
        # First, before anything else can fail: this is what makes delivery exactly once. A new thread
        # root's ref is stored with it, so no crash leaves its follow-ups without a thread.
        root = notification.thread_key if notification.thread_key and thread_ref is None and ref else None
        self._store.outbox.mark_delivered(item.id, now=now, thread_key=root, ref=ref if root else None)
        outage_started = state.failing_since
        failures = state.consecutive_failures
        if state.recovered(now=now):
            released = self._store.outbox.release_channel(item.channel, now=now)
            down_for = round(now - outage_started, 3) if outage_started is not None else None
            log.info("notification_channel_recovered", channel=item.channel, down_for_seconds=down_for,
                     failures=failures, released=released)  # fmt: skip
        self._channels.save_lookup_state(item.channel)
        self._count_alert(notification)
        queued_at = _queued_at(item)
        log.info(
            "notification_found_already_sent" if found else "notification_delivered",
            channel=item.channel,
            item_id=item.id,
            dedup_key=notification.dedup_key,
            kind=notification.kind,
            attempts=item.attempts + (0 if found else 1),
            threaded=thread_ref is not None,
            delay_seconds=round(now - queued_at, 3),
        )

    def _failed(
        self, state: ChannelState, item: OutboxEntry, error: NotifyError, *, unknown_since: float | None
    ) -> Outcome:
        now = self._clock.now()
        delay = self.retry_delay(attempts=item.attempts, error=error)
        message = self._channels.redact(item.channel, str(error))
        self._store.outbox.mark_failed(
            item.id, error=message, next_attempt_at=now + delay, attempt_started_at=unknown_since
        )
        starts_outage = True
        if error.scope == "channel":
            starts_outage = state.failed(now=now, error=message, retry_at=now + delay)
        if self._runtime is not None:
            self._runtime.notification_failed(item.channel)
        event = dict(channel=item.channel, item_id=item.id, dedup_key=item.notification.dedup_key,
                     attempts=item.attempts + 1, error=message, retry_in_seconds=round(delay, 3), scope=error.scope,
                     outcome_unknown=error.outcome_unknown)  # fmt: skip
        if not starts_outage:
            # Loud once per outage; the probes that follow are routine until it recovers.
            log.debug("notification_failed", consecutive_failures=state.consecutive_failures, **event)
        elif error.permanent:
            log.error("notification_failed_permanently", hint="check the notify config and credentials", **event)
        else:
            log.warning("notification_failed", **event)
        return "channel_failed" if error.scope == "channel" else "failed"

    def _lookup_unavailable(self, state: ChannelState, item: OutboxEntry, reason: str) -> None:
        self.lookup_fallbacks_total[item.channel] += 1
        if not state.lookup_fallback_logged:
            state.lookup_fallback_logged = True
            log.warning("notification_lookup_unavailable", channel=item.channel, dedup_key=item.notification.dedup_key,
                        reason=self._channels.redact(item.channel, reason),
                        hint="a message whose send was cut short is sent again and may show twice; for exactly"
                        " once give the Slack app channels:history (groups:history for a private channel)"
                        " and invite it to the channel")  # fmt: skip

    def _as_notify_error(self, channel: str, error: Exception) -> NotifyError:
        if isinstance(error, NotifyError):
            return error
        # A bug in one notifier must not lose the message or stop the others; it may have sent.
        trace = self._channels.redact(channel, "".join(traceback.format_exception(error)))
        log.error("notifier_crashed", channel=channel, error_type=type(error).__name__, traceback=trace)
        message = self._channels.redact(channel, f"unexpected {type(error).__name__}: {error}")
        return NotifyError(message, outcome_unknown=True)

    def _count_alert(self, notification: Notification) -> None:
        if self._runtime is None or notification.kind not in COUNTED_KINDS:
            return
        if notification.dedup_key in self._counted:
            return
        self._counted[notification.dedup_key] = None
        if len(self._counted) > _COUNTED_MEMORY:
            self._counted.popitem(last=False)
        self._runtime.alert_delivered(rule=notification.rule, severity=notification.severity)


def _queued_at(item: OutboxEntry) -> float:
    return item.queued_at if item.queued_at is not None else item.notification.created_at
