"""The outbox dispatcher: every notification is written to the state store first, then delivered.

Guarantees, per channel:
- never lost: a failed send stays in the outbox and is retried (exponential backoff with jitter
  from retry_base to retry_max, or exactly the receiver's Retry-After), even after a restart;
- never duplicated: an item is marked delivered right after its send returns, and one lock keeps
  two passes from sending the same item (a crash between the send and the mark is the only way to
  repeat a message; the webhook document carries dedup_key for receivers that care);
- in order: items go oldest first; after a channel-wide failure (down, rate limited, bad auth)
  the channel rests until the failed item is due again, so nothing overtakes it;
- threaded: a message whose thread already has a ref on the channel replies in it; the first
  delivered message of a thread stores its ref; a follow-up whose thread root is still undelivered
  waits instead of being posted top-level.
One channel failing never holds up another: channels are delivered concurrently and independently.
"""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from monitor.clock import Clock
from monitor.events import Notification, OutboxItem
from monitor.notify.base import Notifier, NotifyError
from monitor.runtime import RuntimeState
from monitor.store import StateStore

log = structlog.get_logger(__name__)

COUNTED_KINDS = frozenset({"alert", "renotify"})
# How many recently counted dedup keys to remember (alerts_sent counts a notification once).
_COUNTED_MEMORY = 10_000


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    # Due but not tried this pass: waiting for a thread root, or behind a failure on its channel.
    deferred: int = 0


@dataclass(slots=True)
class _Tally:
    delivered: int = 0
    failed: int = 0
    deferred: int = 0


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
    ) -> None:
        channels = [notifier.channel for notifier in notifiers]
        if len(set(channels)) != len(channels):
            raise ValueError(f"two notifiers share a channel name: {channels}")
        if retry_base <= 0 or retry_max < retry_base:
            raise ValueError("need 0 < retry_base <= retry_max")
        self._store = store
        self._notifiers = {notifier.channel: notifier for notifier in notifiers}
        self._clock = clock
        self._retry_base = retry_base
        self._retry_max = retry_max
        self._runtime = runtime
        self._batch_size = batch_size
        self._rng = rng or random.Random()
        # After a channel-wide failure the channel rests until then (wall time, like next_attempt_at).
        self._resting_until: dict[str, float] = {}
        self._counted: OrderedDict[str, None] = OrderedDict()
        self._lock = asyncio.Lock()

    @property
    def channels(self) -> list[str]:
        return list(self._notifiers)

    def publish(self, notification: Notification) -> bool:
        """Queue a notification on every configured channel. False if its dedup key was ever queued
        (nothing is sent twice) or if no channel is configured."""
        if not self._notifiers:
            log.debug("notification_dropped_no_channels", dedup_key=notification.dedup_key)
            return False
        added = self._store.enqueue(notification, channels=self.channels, now=self._clock.now())
        if added:
            log.info(
                "notification_queued",
                dedup_key=notification.dedup_key,
                kind=notification.kind,
                channels=self.channels,
            )
        return added

    async def deliver_due(self) -> DeliveryReport:
        """Send every item that is due, on every channel; returns what happened."""
        async with self._lock:
            # return_exceptions: every channel finishes before the lock is released, even if one
            # raised (a store error), so no send can overlap the next pass.
            results = await asyncio.gather(
                *(self._deliver_channel(channel) for channel in self._notifiers), return_exceptions=True
            )
        tallies: list[_Tally] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            tallies.append(result)
        return DeliveryReport(
            delivered=sum(t.delivered for t in tallies),
            failed=sum(t.failed for t in tallies),
            deferred=sum(t.deferred for t in tallies),
        )

    async def aclose(self) -> None:
        for notifier in self._notifiers.values():
            try:
                await notifier.aclose()
            except Exception as error:  # closing one must not keep the others open
                log.warning("notifier_close_failed", channel=notifier.channel, error=str(error))

    # -- one channel -------------------------------------------------------------------------------

    async def _deliver_channel(self, channel: str) -> _Tally:
        tally = _Tally()
        now = self._clock.now()
        items = self._store.due(now=now, channel=channel, limit=self._batch_size)
        if not items:
            return tally
        if now < self._resting_until.get(channel, 0.0):
            tally.deferred = len(items)
            return tally
        pending: list[OutboxItem] | None = None  # loaded only when a thread root must be looked up
        delivered_ids: set[int] = set()
        for index, item in enumerate(items):
            thread_key = item.notification.thread_key
            thread_ref = self._store.thread_ref(channel, thread_key) if thread_key else None
            if thread_key and thread_ref is None:
                if pending is None:
                    pending = self._store.pending(channel=channel)
                if _root_undelivered(item, pending, delivered_ids):
                    tally.deferred += 1
                    continue
            outcome = await self._attempt(item, thread_ref=thread_ref)
            if outcome is None:
                delivered_ids.add(item.id)
                tally.delivered += 1
                continue
            tally.failed += 1
            if outcome.scope == "channel":
                # Keep the order: nothing after the failed item goes before it is retried.
                tally.deferred += len(items) - index - 1
                break
        return tally

    async def _attempt(self, item: OutboxItem, *, thread_ref: str | None) -> NotifyError | None:
        """Send one item and record the outcome; returns the error, or None when delivered."""
        notifier = self._notifiers[item.channel]
        notification = item.notification
        try:
            ref = await notifier.send(notification, thread_ref=thread_ref)
        except NotifyError as error:
            self._record_failure(item, error)
            return error
        except Exception as error:  # a bug in one notifier must not lose the message or stop the others
            wrapped = NotifyError(f"unexpected {type(error).__name__}: {error}")
            log.exception("notifier_crashed", channel=item.channel, item_id=item.id)
            self._record_failure(item, wrapped)
            return wrapped
        now = self._clock.now()
        # First, before anything else can fail: this is what makes delivery exactly once.
        self._store.mark_delivered(item.id, now=now)
        if notification.thread_key and thread_ref is None and ref:
            self._store.set_thread_ref(item.channel, notification.thread_key, ref)
        self._resting_until.pop(item.channel, None)
        self._count_alert(notification)
        log.info(
            "notification_delivered",
            channel=item.channel,
            item_id=item.id,
            dedup_key=notification.dedup_key,
            kind=notification.kind,
            attempts=item.attempts + 1,
            threaded=thread_ref is not None,
        )
        return None

    def _record_failure(self, item: OutboxItem, error: NotifyError) -> None:
        now = self._clock.now()
        delay = self.retry_delay(attempts=item.attempts, error=error)
        next_attempt_at = now + delay
        self._store.mark_failed(item.id, error=str(error), next_attempt_at=next_attempt_at)
        if error.scope == "channel":
            self._resting_until[item.channel] = next_attempt_at
        if self._runtime is not None:
            self._runtime.notifications_failed[item.channel] += 1
        event = dict(
            channel=item.channel,
            item_id=item.id,
            dedup_key=item.notification.dedup_key,
            attempts=item.attempts + 1,
            error=str(error),
            retry_in_seconds=round(delay, 3),
            scope=error.scope,
        )
        if error.permanent:
            log.error("notification_failed_permanently", hint="check the notify config and credentials", **event)
        else:
            log.warning("notification_failed", **event)

    def retry_delay(self, *, attempts: int, error: NotifyError) -> float:
        """Seconds until the next attempt, given the attempts already made before this failure."""
        if error.retry_after is not None:
            return error.retry_after
        if error.permanent:
            return self._retry_max
        ceiling = min(self._retry_max, self._retry_base * 2.0 ** min(attempts, 32))
        # Jitter in the upper half: spreads retries without ever retrying sooner than half the step.
        return max(self._retry_base, ceiling * self._rng.uniform(0.5, 1.0))

    def _count_alert(self, notification: Notification) -> None:
        if self._runtime is None or notification.kind not in COUNTED_KINDS:
            return
        if notification.dedup_key in self._counted:
            return
        self._counted[notification.dedup_key] = None
        if len(self._counted) > _COUNTED_MEMORY:
            self._counted.popitem(last=False)
        self._runtime.alerts_sent[(notification.rule, notification.severity)] += 1


def _root_undelivered(item: OutboxItem, pending: list[OutboxItem], delivered_ids: set[int]) -> bool:
    """True when an older message of the same thread on this channel has not been delivered yet."""
    key = item.notification.thread_key
    return any(
        other.id < item.id and other.notification.thread_key == key and other.id not in delivered_ids
        for other in pending
    )
