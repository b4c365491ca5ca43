"""Fast recovery: while Slack is down the outbox probes it every few seconds, and the moment it
answers the whole backlog goes, in order, each message once. Real slack-sdk, the fake Slack over
loopback: 500s, then 429s with Retry-After, then connection refused (listener closed), then healthy."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator

import pytest

from monitor.clock import SYSTEM_CLOCK, ManualClock
from monitor.daemon import OUTBOX_INTERVAL
from monitor.notify import OutboxDispatcher, SlackNotifier
from monitor.records import Notification
from monitor.store.state_store import StateStore
from tests.support.fake_slack import FakeSlack
from tests.test_notify_blocks import make_notification


@pytest.fixture
def store() -> Iterator[StateStore]:
    with StateStore(":memory:") as state:
        yield state


def note(n: int, *, now: float) -> Notification:
    return make_notification(dedup_key=f"alert:run-{n}:cap:e0:t1", thread_key=f"run-{n}:cap:e0", title=f"alert {n}",
                             created_at=now)  # fmt: skip


async def warm_up(outbox: OutboxDispatcher, fake: FakeSlack, now: float) -> None:
    """One delivery before the outage: the notifier learns the channel id it needs for lookups."""
    outbox.publish(note(0, now=now))
    await outbox.deliver_due()
    assert len(fake.messages) == 1


@pytest.mark.timeout(60)
async def test_after_a_long_outage_the_backlog_drains_within_seconds_in_order(
    fake_slack_async: FakeSlack, store: StateStore
) -> None:
    fake = fake_slack_async
    slack = SlackNotifier(fake.settings())
    # Backoff scaled for a 24 s outage: unbounded, it would have grown to 16-32 s by the end.
    outbox = OutboxDispatcher(store=store, notifiers=[slack], clock=SYSTEM_CLOCK, retry_base=1.0, retry_max=60.0)
    await warm_up(outbox, fake, SYSTEM_CLOCK.now())

    async def scheduler() -> None:  # what the daemon's deliver_outbox job does
        while True:
            await outbox.deliver_due()
            await asyncio.sleep(OUTBOX_INTERVAL)

    delivering = asyncio.create_task(scheduler())
    published: list[str] = []
    try:
        for phase in ("500", "429", "refused"):
            if phase == "500":
                fake.set_outage(status=500)
            elif phase == "429":
                fake.set_outage(status=429, retry_after=3)
            else:
                fake.end_outage()
                await fake.close_listener()
            for _ in range(8):
                notification = note(len(published) + 1, now=SYSTEM_CLOCK.now())
                assert outbox.publish(notification)
                published.append(notification.dedup_key)
                await asyncio.sleep(1.0)
        during = outbox.channel_health()["slack"]
        await fake.reopen_listener()
        recovered_at = time.monotonic()
        messages = await fake.wait_for_messages_async(1 + len(published), seconds=20)
        for _ in range(50):  # the last answer is on its way back: let the pass record it
            if outbox.channel_health()["slack"].backlog == 0:
                break
            await asyncio.sleep(0.1)
    finally:
        delivering.cancel()
        await asyncio.gather(delivering, return_exceptions=True)
        await outbox.aclose()

    drain = messages[-1]["received_at"] - recovered_at
    print(f"\nbacklog of {len(published)} drained {drain:.2f} s after Slack recovered")
    assert fake.dedup_keys() == ["alert:run-0:cap:e0:t1", *published]  # each once, in order
    assert drain <= 10.0
    assert during.failing_since is not None and during.consecutive_failures >= 3
    assert during.backlog == len(published) and "unreachable" in (during.last_error or "")
    after = outbox.channel_health()["slack"]
    assert after.failing_since is None and after.backlog == 0 and after.oldest_undelivered_at is None
    # Every 429's Retry-After was waited out before Slack heard from us again.
    requests = fake.requests
    for answer, following in itertools.pairwise(requests):
        if answer["status"] == 429:
            assert following["at"] - answer["at"] >= 2.9


async def test_a_ten_minute_outage_is_probed_every_few_seconds_and_drains_at_once(
    fake_slack_async: FakeSlack, store: StateStore
) -> None:
    fake = fake_slack_async
    clock = ManualClock()
    fake.set_clock(clock.now)
    slack = SlackNotifier(fake.settings())
    outbox = OutboxDispatcher(store=store, notifiers=[slack], clock=clock)  # defaults: 5 s to 300 s
    await warm_up(outbox, fake, clock.now())
    start = clock.now()
    probes: list[float] = []
    published: list[str] = []
    drained_at: float | None = None
    try:
        for second in range(0, 660, 2):
            if second == 0:
                fake.set_outage(status=500)
            elif second == 200:
                fake.set_outage(status=429, retry_after=4)
            elif second == 400:
                fake.end_outage()
                await fake.close_listener()
            elif second == 600:
                await fake.reopen_listener()
            if second < 600 and second % 20 == 0:
                notification = note(len(published) + 1, now=clock.now())
                outbox.publish(notification)
                published.append(notification.dedup_key)
            failures = outbox.channel_health()["slack"].consecutive_failures
            await outbox.deliver_due()
            if outbox.channel_health()["slack"].consecutive_failures > failures:
                probes.append(clock.now() - start)
            if second >= 600 and drained_at is None and store.outbox.pending() == []:
                drained_at = clock.now() - start
            clock.advance(2.0)
    finally:
        await outbox.aclose()

    gaps = [later - earlier for earlier, later in itertools.pairwise(probes)]
    # Probed at most 5 s apart (plus the 2 s pass interval), never backed off towards retry_max.
    assert len(probes) > 80 and max(gaps) <= 7.0
    assert drained_at is not None and drained_at - 600 <= 7.0
    assert fake.dedup_keys() == ["alert:run-0:cap:e0:t1", *published]
    # The ones that waited more than a minute say so.
    first_late = fake.messages[1]["text"]
    assert "Delayed: queued at" in first_late and "while Slack was unreachable" in first_late
