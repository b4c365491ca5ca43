"""Exactly once on Slack, as people see it: a post whose outcome is unknown (the sender was killed
mid-post, the request timed out, Slack answered 5xx) is looked up by the dedup key in its message
metadata before it is sent again. Real slack-sdk against the fake Slack over loopback."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog

from monitor.clock import SYSTEM_CLOCK, ManualClock
from monitor.notify import OutboxDispatcher, SlackNotifier
from monitor.notify.slack_lookup import EVENT_TYPE
from monitor.records import Notification
from monitor.store.state_store import StateStore
from tests.support.fake_slack import FakeSlack
from tests.test_notify_blocks import make_notification

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def clock(fake_slack: FakeSlack) -> ManualClock:
    """The monitor's clock, shared with the fake so message ts and attempt times agree."""
    manual = ManualClock()
    fake_slack.set_clock(manual.now)
    return manual


@pytest.fixture
def store() -> Iterator[StateStore]:
    with StateStore(":memory:") as state:
        yield state


@pytest.fixture
async def slack(fake_slack: FakeSlack) -> AsyncIterator[SlackNotifier]:
    notifier = SlackNotifier(fake_slack.settings(), timeout=1.0)
    yield notifier
    await notifier.aclose()


def outbox_for(store: StateStore, clock: ManualClock, slack: SlackNotifier) -> OutboxDispatcher:
    return OutboxDispatcher(store=store, notifiers=[slack], clock=clock)


def note(n: int, *, thread: str = "run-1:run-cap:e0", kind: str = "alert") -> Notification:
    return make_notification(dedup_key=f"{kind}:{thread}:{n}", thread_key=thread, kind=kind, title=f"message {n}")


async def retry_now(outbox: OutboxDispatcher, store: StateStore, clock: ManualClock) -> None:
    """Advance to the next attempt of the oldest open item and run a pass."""
    waiting = store.outbox.pending()
    if waiting:
        clock.advance(max(0.0, waiting[0].next_attempt_at - clock.now()))
    await outbox.deliver_due()


def reads(fake: FakeSlack) -> list[str]:
    return [r["path"].rsplit("/", 1)[-1] for r in fake.requests if "conversations." in r["path"]]


async def test_every_post_carries_its_dedup_key_in_metadata(
    fake_slack: FakeSlack, slack: SlackNotifier, store: StateStore, clock: ManualClock
) -> None:
    outbox = outbox_for(store, clock, slack)
    outbox.publish(note(1))

    await outbox.deliver_due()

    [message] = fake_slack.messages
    assert message["metadata"] == {"event_type": EVENT_TYPE, "event_payload": {"dedup_key": "alert:run-1:run-cap:e0:1"}}


async def test_a_post_that_timed_out_but_arrived_is_found_not_sent_again(
    fake_slack: FakeSlack, slack: SlackNotifier, store: StateStore, clock: ManualClock
) -> None:
    outbox = outbox_for(store, clock, slack)
    outbox.publish(note(0, thread="warm-up"))
    await outbox.deliver_due()  # teaches the notifier the channel's id
    outbox.publish(note(1))
    fake_slack.stall_next(1, 2.0)  # Slack posts it, but answers after the client gave up

    first = await outbox.deliver_due()
    [item] = store.outbox.pending()
    assert first.failed == 1 and item.attempt_started_at is not None and "unreachable" in (item.last_error or "")

    await retry_now(outbox, store, clock)

    assert fake_slack.dedup_keys() == ["alert:warm-up:0", "alert:run-1:run-cap:e0:1"]
    assert store.outbox.pending() == [] and reads(fake_slack) == ["conversations.history"]
    # Found as the thread's first message: later replies go under it.
    assert store.outbox.thread_ref("slack", "run-1:run-cap:e0") == fake_slack.messages[1]["ts"]
    outbox.publish(note(2))
    await outbox.deliver_due()
    assert fake_slack.messages[2]["thread_ts"] == fake_slack.messages[1]["ts"]


async def test_a_thread_reply_that_timed_out_is_found_in_its_thread(
    fake_slack: FakeSlack, slack: SlackNotifier, store: StateStore, clock: ManualClock
) -> None:
    outbox = outbox_for(store, clock, slack)
    outbox.publish(note(1))
    await outbox.deliver_due()
    outbox.publish(note(2))
    fake_slack.stall_next(1, 2.0)
    await outbox.deliver_due()

    await retry_now(outbox, store, clock)

    root, reply = fake_slack.messages
    assert len(fake_slack.messages) == 2 and reply["thread_ts"] == root["ts"]
    assert store.outbox.pending() == [] and reads(fake_slack) == ["conversations.replies"]


async def test_a_5xx_that_never_posted_is_looked_up_then_sent_once(
    fake_slack: FakeSlack, slack: SlackNotifier, store: StateStore, clock: ManualClock
) -> None:
    outbox = outbox_for(store, clock, slack)
    outbox.publish(note(0, thread="warm-up"))
    await outbox.deliver_due()
    outbox.publish(note(1))
    fake_slack.fail_next(1, status=503)  # may or may not have posted: Slack does not say

    await outbox.deliver_due()
    await retry_now(outbox, store, clock)

    assert fake_slack.dedup_keys() == ["alert:warm-up:0", "alert:run-1:run-cap:e0:1"]
    assert reads(fake_slack) == ["conversations.history"]


async def test_while_slack_cannot_be_read_the_possibly_sent_message_waits(
    fake_slack: FakeSlack, slack: SlackNotifier, store: StateStore, clock: ManualClock
) -> None:
    outbox = outbox_for(store, clock, slack)
    outbox.publish(note(0, thread="warm-up"))
    await outbox.deliver_due()
    outbox.publish(note(1))
    fake_slack.stall_next(1, 2.0)
    await outbox.deliver_due()
    fake_slack.fail_next(2, status=500)  # the lookups fail: sending blind could post twice

    await retry_now(outbox, store, clock)
    await retry_now(outbox, store, clock)
    assert len(fake_slack.messages) == 2 and store.outbox.pending()[0].attempt_started_at is not None
    await retry_now(outbox, store, clock)

    assert fake_slack.dedup_keys() == ["alert:warm-up:0", "alert:run-1:run-cap:e0:1"]
    assert store.outbox.pending() == [] and reads(fake_slack) == ["conversations.history"] * 3


async def test_the_message_is_found_across_pages(
    fake_slack: FakeSlack, slack: SlackNotifier, store: StateStore, clock: ManualClock
) -> None:
    outbox = outbox_for(store, clock, slack)
    fake_slack.set_max_page_size(3)  # Slack's cap for apps outside the Marketplace is 15
    outbox.publish(note(0, thread="warm-up"))
    await outbox.deliver_due()
    outbox.publish(note(1))
    fake_slack.stall_next(1, 2.0)
    await outbox.deliver_due()
    client = SlackNotifier(fake_slack.settings())
    try:
        for n in range(20):  # newer top-level messages: history answers newest first
            await client.send(note(n, thread=f"other-{n}"), thread_ref=None)
    finally:
        await client.aclose()

    await retry_now(outbox, store, clock)

    assert fake_slack.dedup_keys().count("alert:run-1:run-cap:e0:1") == 1 and store.outbox.pending() == []
    # 22 messages in the window, newest first, 3 a page: ours (21st) is on the 7th page.
    assert reads(fake_slack) == ["conversations.history"] * 7


async def test_without_the_history_scope_it_sends_again_and_says_so_once(
    fake_slack: FakeSlack, slack: SlackNotifier, store: StateStore, clock: ManualClock
) -> None:
    outbox = outbox_for(store, clock, slack)
    outbox.publish(note(0, thread="warm-up"))
    await outbox.deliver_due()
    fake_slack.scopes.discard("channels:history")
    for n in (1, 2):
        outbox.publish(note(n, thread=f"thread-{n}"))
    second = store.outbox.pending()[1]
    store.outbox.mark_attempt_started(second.id, at=clock.now())  # a crash left this one "maybe sent" too

    with structlog.testing.capture_logs() as logs:
        fake_slack.stall_next(1, 2.0)
        await outbox.deliver_due()  # the first is cut short (and arrives)
        await retry_now(outbox, store, clock)  # neither can be looked up: both are sent

    keys = fake_slack.dedup_keys()
    # At least once: the first shows twice, because its cut-short post arrived after all.
    assert keys == ["alert:warm-up:0", "alert:thread-1:1", "alert:thread-1:1", "alert:thread-2:2"]
    assert store.outbox.pending() == []
    [warning] = [e for e in logs if e["event"] == "notification_lookup_unavailable"]
    assert "missing_scope" in warning["reason"] and "channels:history" in warning["reason"]
    assert "channels:history" in warning["hint"]
    assert outbox.lookup_fallbacks_total["slack"] == 2


async def test_a_crash_before_the_request_left_sends_once(
    fake_slack: FakeSlack, slack: SlackNotifier, store: StateStore, clock: ManualClock
) -> None:
    outbox = outbox_for(store, clock, slack)
    outbox.publish(note(0, thread="warm-up"))
    await outbox.deliver_due()
    outbox.publish(note(1))
    [item] = store.outbox.pending()
    store.outbox.mark_attempt_started(item.id, at=clock.now())  # what a kill right after the marker leaves

    await outbox.deliver_due()

    assert fake_slack.dedup_keys() == ["alert:warm-up:0", "alert:run-1:run-cap:e0:1"]
    assert reads(fake_slack) == ["conversations.history"] and store.outbox.pending() == []


SENDER = textwrap.dedent(
    """
    import asyncio, sys
    from monitor.clock import SYSTEM_CLOCK
    from monitor.config.settings import SlackSettings
    from monitor.records import Notification
    from monitor.notify import OutboxDispatcher, SlackNotifier
    from monitor.store.state_store import StateStore
    from pydantic import SecretStr

    db, base_url, token = sys.argv[1:4]

    def note(n):
        return Notification(kind="alert", dedup_key=f"alert:run-1:run-cap:e0:t{n}", thread_key="run-1:run-cap:e0",
                            severity="warning", title=f"tier {n}", text="", created_at=SYSTEM_CLOCK.now())

    async def main():
        settings = SlackSettings(token=SecretStr(token), channel="#budgets", base_url=base_url)
        outbox = OutboxDispatcher(store=StateStore(db), notifiers=[SlackNotifier(settings)], clock=SYSTEM_CLOCK)
        outbox.publish(note(1))
        await outbox.deliver_due()
        print("first delivered", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        outbox.publish(note(2))
        await outbox.deliver_due()

    asyncio.run(main())
    """
)


def test_a_sender_killed_mid_post_does_not_post_again_after_restart(fake_slack: FakeSlack, tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    sender = subprocess.Popen(
        [sys.executable, "-c", SENDER, str(db), fake_slack.base_url, fake_slack.token],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    try:
        assert sender.stdout is not None and sender.stdin is not None
        while sender.stdout.readline().strip() != "first delivered":  # after the sender's own log lines
            assert sender.poll() is None, "the sender died before its first delivery"
        fake_slack.stall_next(1, 30.0)  # posted at once, answered never (before the kill)
        sender.stdin.write("go\n")
        sender.stdin.flush()
        fake_slack.wait_for_messages(2, timeout=20)
    finally:
        sender.send_signal(signal.SIGKILL)
        sender.wait(timeout=10)

    async def restart() -> None:
        with StateStore(db) as store:
            outbox = OutboxDispatcher(store=store, notifiers=[SlackNotifier(fake_slack.settings())], clock=SYSTEM_CLOCK)
            [item] = store.outbox.pending()
            assert item.attempt_started_at is not None  # the kill left it "maybe sent"
            report = await outbox.deliver_due()
            await outbox.aclose()
            assert report.delivered == 1 and store.outbox.pending() == []

    asyncio.run(restart())

    # The channel id learned by the first process let the second one read the thread.
    assert fake_slack.dedup_keys() == ["alert:run-1:run-cap:e0:t1", "alert:run-1:run-cap:e0:t2"]
    assert reads(fake_slack) == ["conversations.replies"]


SOAK_SENDER = textwrap.dedent(
    """
    import asyncio, sys
    from monitor.clock import SYSTEM_CLOCK
    from monitor.config.settings import SlackSettings
    from monitor.records import Notification
    from monitor.notify import OutboxDispatcher, SlackNotifier
    from monitor.store.state_store import StateStore
    from pydantic import SecretStr

    db, base_url, token, channel, count = sys.argv[1:6]

    async def main():
        store = StateStore(db)
        settings = SlackSettings(token=SecretStr(token), channel=channel, base_url=base_url)
        outbox = OutboxDispatcher(store=store, notifiers=[SlackNotifier(settings)], clock=SYSTEM_CLOCK,
                                  retry_base=0.05, retry_max=0.2, stale_after=3600)
        for n in range(int(count)):
            thread = f"run-{n % 6}:cap:e0"
            outbox.publish(Notification(kind="alert", dedup_key=f"alert:{thread}:{n}", thread_key=thread,
                                        severity="warning", title=f"m{n}", text="", created_at=1.8e9))
        print("ready", flush=True)
        while store.outbox.pending():
            await outbox.deliver_due()
            await asyncio.sleep(0.02)
        print("done", flush=True)

    asyncio.run(main())
    """
)


def test_twenty_kills_at_random_moments_still_deliver_each_message_once_in_its_thread(
    fake_slack: FakeSlack, tmp_path: Path
) -> None:
    db, count = tmp_path / "state.db", 60
    # Configured by id, as the docs advise for exactly once from the very first message.
    args = [str(db), fake_slack.base_url, fake_slack.token, fake_slack.channel_id("#budgets"), str(count)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    fake_slack.stall_next(100_000, 0.06)  # every answer takes 60 ms: kills land mid-request too
    rng = random.Random(7)

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-c", SOAK_SENDER, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=env)  # fmt: skip

    for _ in range(20):
        sender = start()
        try:
            assert sender.stdout is not None
            while (line := sender.stdout.readline()) and line.strip() != "ready":
                pass
            time.sleep(rng.uniform(0.0, 0.4))
        finally:
            sender.send_signal(signal.SIGKILL)
            sender.wait(timeout=10)
    finished = start()
    output, _ = finished.communicate(timeout=120)
    assert "done" in output

    keys = fake_slack.dedup_keys()
    assert sorted(keys, key=str) == sorted((f"alert:run-{n % 6}:cap:e0:{n}" for n in range(count)), key=str)
    by_thread: dict[str, list[dict[str, object]]] = {}
    for message, key in zip(fake_slack.messages, keys, strict=True):
        by_thread.setdefault(str(key).rsplit(":", 1)[0], []).append(message)
    for messages in by_thread.values():
        root, *replies = messages
        assert root["thread_ts"] is None and all(reply["thread_ts"] == root["ts"] for reply in replies)
