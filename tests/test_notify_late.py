"""Late messages tell the truth: a message delivered more than a minute after it was queued says
when and why, and an alert tier superseded while it waited is folded into the newer message of its
thread instead of being sent as if new. Real slack-sdk against the fake Slack; the console is a
second, healthy channel that keeps receiving everything on time."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator

import pytest
import structlog

from monitor.clock import ManualClock
from monitor.notify import ConsoleNotifier, OutboxDispatcher, SlackNotifier
from monitor.records import Notification
from monitor.store.state_store import StateStore
from tests.support.fake_slack import FakeSlack
from tests.test_notify_blocks import make_notification

THREAD = "run-1:run-cap:e0"


@pytest.fixture
def clock(fake_slack: FakeSlack) -> ManualClock:
    manual = ManualClock()  # 2027-01-15 08:00:00 UTC
    fake_slack.set_clock(manual.now)
    return manual


@pytest.fixture
def store() -> Iterator[StateStore]:
    with StateStore(":memory:") as state:
        yield state


@pytest.fixture
def console() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
async def outbox(
    fake_slack: FakeSlack, store: StateStore, clock: ManualClock, console: io.StringIO
) -> AsyncIterator[OutboxDispatcher]:
    dispatcher = OutboxDispatcher(
        store=store, notifiers=[SlackNotifier(fake_slack.settings()), ConsoleNotifier(console)], clock=clock
    )
    yield dispatcher
    await dispatcher.aclose()


def message(kind: str, key: str, title: str, *, clock: ManualClock, thread: str = THREAD) -> Notification:
    return make_notification(kind=kind, dedup_key=f"{kind}:{thread}:{key}", thread_key=thread, title=title,
                             created_at=clock.now())  # fmt: skip


async def wait(outbox: OutboxDispatcher, clock: ManualClock, seconds: float) -> None:
    """Let time pass with the daemon's passes running (every 2 s)."""
    for _ in range(int(seconds / 2)):
        clock.advance(2.0)
        await outbox.deliver_due()


def slack_texts(fake: FakeSlack) -> list[str]:
    return [m["text"] for m in fake.messages]


async def test_a_late_message_says_when_it_was_queued_and_why(
    fake_slack: FakeSlack, outbox: OutboxDispatcher, clock: ManualClock, console: io.StringIO
) -> None:
    fake_slack.set_outage(status=500)
    outbox.publish(message("alert", "t2", "exp-42 at 80% of run-cap", clock=clock))
    await outbox.deliver_due()
    await wait(outbox, clock, 14 * 60)
    fake_slack.end_outage()
    await wait(outbox, clock, 6)
    outbox.publish(message("alert", "t3", "exp-42 breached run-cap", clock=clock))
    await outbox.deliver_due()

    late, on_time = fake_slack.messages
    note = "Delayed: queued at 08:00:00 UTC, 14m6s ago, while Slack was unreachable."
    assert note in late["text"] and note in late["blocks"][1]["text"]["text"]
    assert "Delayed" not in on_time["text"]
    # The console was healthy: it printed the alert at once, with no note.
    assert "80% of run-cap" in console.getvalue() and "Delayed" not in console.getvalue()


async def test_tiers_superseded_during_an_outage_are_folded_into_the_newest(
    fake_slack: FakeSlack, outbox: OutboxDispatcher, store: StateStore, clock: ManualClock, console: io.StringIO
) -> None:
    fake_slack.set_outage(status=500)
    with structlog.testing.capture_logs() as logs:
        outbox.publish(message("alert", "t1", "exp-42 at 50% of run-cap", clock=clock))
        await wait(outbox, clock, 180)
        outbox.publish(message("alert", "t2", "exp-42 at 80% of run-cap", clock=clock))
        outbox.publish(message("alert", "t1", "exp-7 at 50% of run-cap", clock=clock, thread="run-7:run-cap:e0"))
        await wait(outbox, clock, 180)
        outbox.publish(message("alert", "t3", "exp-42 breached run-cap", clock=clock))
        await wait(outbox, clock, 60)
        fake_slack.end_outage()
        await wait(outbox, clock, 6)

    other, newest = fake_slack.messages
    assert "exp-7 at 50%" in other["text"] and "Supersedes" not in other["text"]
    assert newest["text"].startswith(":rotating_light: [CRITICAL] exp-42 breached run-cap")
    assert (
        "Supersedes 2 earlier messages not sent while Slack was unreachable: “exp-42 at 50% of run-cap”"
        " (queued 08:00:00 UTC); “exp-42 at 80% of run-cap” (queued 08:03:00 UTC)."
    ) in newest["text"]
    assert newest["thread_ts"] is None and store.outbox.thread_ref("slack", THREAD) == newest["ts"]
    folded = [e for e in logs if e["event"] == "notification_superseded"]
    assert [e["dedup_key"] for e in folded] == [f"alert:{THREAD}:t1", f"alert:{THREAD}:t2"]
    assert outbox.superseded_total == {"slack": 2} and store.outbox.superseded_count(channel="slack") == 2
    assert store.outbox.pending() == []
    # Folding is per channel: the healthy console printed every tier when it happened.
    assert all(tier in console.getvalue() for tier in ("50% of run-cap", "80% of run-cap", "breached"))


async def test_an_alert_that_opened_and_resolved_during_an_outage_is_one_message(
    fake_slack: FakeSlack, outbox: OutboxDispatcher, store: StateStore, clock: ManualClock
) -> None:
    fake_slack.set_outage(status=500)
    outbox.publish(message("alert", "t3", "exp-42 breached run-cap", clock=clock))
    await wait(outbox, clock, 300)
    outbox.publish(message("resolve", "r", "exp-42 back within run-cap", clock=clock))
    await wait(outbox, clock, 60)
    fake_slack.end_outage()
    await wait(outbox, clock, 6)

    [only] = fake_slack.messages
    assert "exp-42 back within run-cap" in only["text"]
    assert (
        "This alert opened and resolved while Slack was unreachable; not sent at the time:"
        " “exp-42 breached run-cap” (queued 08:00:00 UTC)."
    ) in only["text"]
    assert store.outbox.pending() == [] and outbox.superseded_total == {"slack": 1}


async def test_a_resolve_folds_the_unsent_tier_and_replies_in_the_delivered_thread(
    fake_slack: FakeSlack, outbox: OutboxDispatcher, clock: ManualClock
) -> None:
    outbox.publish(message("alert", "t1", "exp-42 at 50% of run-cap", clock=clock))
    await outbox.deliver_due()
    fake_slack.set_outage(status=500)
    outbox.publish(message("alert", "t2", "exp-42 at 80% of run-cap", clock=clock))
    await wait(outbox, clock, 120)
    outbox.publish(message("resolve", "r", "exp-42 back within run-cap", clock=clock))
    await wait(outbox, clock, 60)
    fake_slack.end_outage()
    await wait(outbox, clock, 6)

    root, resolve = fake_slack.messages
    assert resolve["thread_ts"] == root["ts"] and "back within run-cap" in resolve["text"]
    assert "Supersedes 1 earlier message not sent while Slack was unreachable: “exp-42 at 80%" in resolve["text"]


async def test_reminders_fold_into_the_newest_and_enforcement_messages_never_fold(
    fake_slack: FakeSlack, outbox: OutboxDispatcher, clock: ManualClock
) -> None:
    outbox.publish(message("alert", "t3", "exp-42 breached run-cap", clock=clock))
    await outbox.deliver_due()
    fake_slack.set_outage(status=500)
    outbox.publish(message("renotify", "n1", "exp-42 still over run-cap (1h)", clock=clock))
    await wait(outbox, clock, 120)
    outbox.publish(message("renotify", "n2", "exp-42 still over run-cap (2h)", clock=clock))
    outbox.publish(message("delete_pending", "d", "exp-42 will be deleted", clock=clock))
    await wait(outbox, clock, 120)
    fake_slack.end_outage()
    await wait(outbox, clock, 6)

    root, reminder, enforcement = fake_slack.messages
    assert reminder["thread_ts"] == enforcement["thread_ts"] == root["ts"]
    assert "(2h)" in reminder["text"] and "Supersedes 1 earlier message" in reminder["text"]
    assert "will be deleted" in enforcement["text"] and "Supersedes" not in enforcement["text"]
    assert outbox.superseded_total == {"slack": 1}


async def test_tiers_a_healthy_channel_gets_back_to_back_are_each_sent(
    fake_slack: FakeSlack, outbox: OutboxDispatcher, clock: ManualClock
) -> None:
    outbox.publish(message("alert", "t1", "exp-42 at 50% of run-cap", clock=clock))
    outbox.publish(message("alert", "t2", "exp-42 at 80% of run-cap", clock=clock))

    report = await outbox.deliver_due()

    first, second = fake_slack.messages
    assert report.superseded == 0 and second["thread_ts"] == first["ts"]
    assert "50%" in first["text"] and "80%" in second["text"] and "Supersedes" not in second["text"]
