"""The outbox dispatcher with the real slack-sdk against the fake Slack: counts, threads, retries."""

from __future__ import annotations

import asyncio
import io
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr

from monitor.clock import ManualClock
from monitor.config.settings import SlackSettings
from monitor.exporter.live import RuntimeState
from monitor.notify import ConsoleNotifier, NotifyError, OutboxDispatcher, SlackNotifier, SlackWebhookNotifier
from monitor.notify.base import Notifier
from monitor.records import Notification
from monitor.store.state_store import StateStore
from tests.support.fake_slack import FakeSlack
from tests.test_notify_blocks import make_notification


@pytest.fixture
def store() -> Iterator[StateStore]:
    with StateStore(":memory:") as state:
        yield state


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def slack(fake_slack: FakeSlack) -> AsyncIterator[SlackNotifier]:
    notifier = SlackNotifier(
        SlackSettings(token=SecretStr(fake_slack.token), channel="#budgets", base_url=fake_slack.base_url)
    )
    yield notifier
    await notifier.aclose()


def dispatcher(
    store: StateStore, clock: ManualClock, *notifiers: Notifier, runtime: RuntimeState | None = None
) -> OutboxDispatcher:
    return OutboxDispatcher(
        store=store,
        notifiers=notifiers,
        clock=clock,
        retry_base=5.0,
        retry_max=300.0,
        runtime=runtime,
        rng=random.Random(7),
    )


def alert(n: int = 1, *, thread: str = "run-1/run-cap/1", kind: str = "alert", **overrides: object) -> Notification:
    values: dict[str, object] = {"dedup_key": f"{thread}/{kind}/{n}", "thread_key": thread, "kind": kind}
    values.update(overrides)
    return make_notification(**values)


async def deliver_until_empty(
    outbox: OutboxDispatcher, store: StateStore, clock: ManualClock, *, rounds: int = 20
) -> int:
    """Advance the clock to each next attempt and deliver, until the outbox is empty; returns passes run."""
    for passes in range(1, rounds + 1):
        await outbox.deliver_due()
        left = store.outbox.pending()
        if not left:
            return passes
        waits = [item.next_attempt_at - clock.now() for item in left if item.next_attempt_at > clock.now()]
        clock.advance(min(waits, default=0.0))
    raise AssertionError(f"outbox still holds {len(store.outbox.pending())} items after {rounds} passes")


async def test_one_notification_is_one_message(
    fake_slack: FakeSlack, slack: SlackNotifier, store: StateStore, clock: ManualClock
) -> None:
    outbox = dispatcher(store, clock, slack)

    assert outbox.publish(alert())
    report = await outbox.deliver_due()
    again = await outbox.deliver_due()

    assert (report.delivered, report.failed, report.deferred) == (1, 0, 0)
    assert (again.delivered, again.failed, again.deferred) == (0, 0, 0)
    [message] = fake_slack.messages
    assert message["channel"] == "#budgets" and message["thread_ts"] is None
    assert "Run exp-42 passed its budget" in message["text"]
    assert "Run exp-42 passed its budget" in message["blocks"][0]["text"]["text"]
    assert store.outbox.delivered_count(channel="slack") == 1 and store.outbox.pending() == []


async def test_a_duplicate_publish_sends_nothing(
    fake_slack: FakeSlack, slack: SlackNotifier, store: StateStore, clock: ManualClock
) -> None:
    outbox = dispatcher(store, clock, slack)

    assert outbox.publish(alert())
    await outbox.deliver_due()
    assert not outbox.publish(alert())
    assert not outbox.publish(alert(title="same key, other words"))
    await outbox.deliver_due()

    assert len(fake_slack.messages) == 1


async def test_follow_ups_and_resolve_reply_in_the_first_messages_thread(
    fake_slack: FakeSlack, slack: SlackNotifier, store: StateStore, clock: ManualClock
) -> None:
    outbox = dispatcher(store, clock, slack)
    outbox.publish(alert(1, title="50% of budget"))
    outbox.publish(alert(1, thread="run-2/run-cap/1", title="other run"))
    outbox.publish(alert(2, title="80% of budget"))
    await outbox.deliver_due()
    clock.advance(3600)
    outbox.publish(alert(3, kind="renotify", title="still over"))
    outbox.publish(alert(4, kind="resolve", title="back under budget"))
    await outbox.deliver_due()

    texts = [m["text"] for m in fake_slack.messages]
    root, other = fake_slack.messages[0], fake_slack.messages[1]
    assert root["thread_ts"] is None and other["thread_ts"] is None and "other run" in other["text"]
    replies = fake_slack.replies(root["ts"])
    assert [next(t for t in ("80%", "still over", "back under") if t in m["text"]) for m in replies] == [
        "80%",
        "still over",
        "back under",
    ]
    assert len(texts) == 5


async def test_a_follow_up_waits_for_its_undelivered_root(
    fake_slack: FakeSlack, slack: SlackNotifier, store: StateStore, clock: ManualClock
) -> None:
    outbox = dispatcher(store, clock, slack)
    outbox.publish(alert(1, title="root"))
    outbox.publish(alert(2, title="follow-up"))
    outbox.publish(alert(1, thread="run-2/run-cap/1", title="unrelated"))
    fake_slack.error_next(1, "msg_too_long")  # Slack refuses the root, once

    first = await outbox.deliver_due()

    assert (first.delivered, first.failed, first.deferred) == (1, 1, 1)
    assert [m["text"] for m in fake_slack.messages if "unrelated" in m["text"]]
    assert not [m for m in fake_slack.messages if "follow-up" in m["text"]]

    await deliver_until_empty(outbox, store, clock)

    root = next(m for m in fake_slack.messages if "root" in m["text"])
    follow_up = next(m for m in fake_slack.messages if "follow-up" in m["text"])
    assert root["thread_ts"] is None and follow_up["thread_ts"] == root["ts"]
    assert len(fake_slack.messages) == 3


async def test_slack_down_for_a_while_then_delivered_exactly_once(
    fake_slack: FakeSlack, slack: SlackNotifier, store: StateStore, clock: ManualClock
) -> None:
    runtime = RuntimeState()
    outbox = dispatcher(store, clock, slack, runtime=runtime)
    outbox.publish(alert(1))
    outbox.publish(alert(2))
    fake_slack.fail_next(4, status=500)
    delays: list[float] = []

    for _ in range(4):
        before = clock.now()
        report = await outbox.deliver_due()
        assert (report.delivered, report.failed) == (0, 1)
        [head, _second] = store.outbox.pending()
        assert head.attempts == len(delays) + 1 and "500" in (head.last_error or "")
        delays.append(head.next_attempt_at - before)
        # Nothing is sent before the backoff ends: the channel rests, in order.
        clock.advance(delays[-1] - 0.5)
        rested = await outbox.deliver_due()
        assert rested.delivered == rested.failed == 0
        clock.advance(0.5)

    final = await outbox.deliver_due()

    assert final.delivered == 2 and store.outbox.pending() == []
    assert len(fake_slack.messages) == 2 and len(fake_slack.requests) == 6
    assert runtime.notifications_failed["slack"] == 4
    # A channel that is down is probed every probe_interval (min(retry_max, 5 s)), never backed off
    # towards retry_max: its backlog must go out seconds after it recovers.
    assert delays[0] == pytest.approx(5.0)
    assert all(2.5 <= d <= 5.0 for d in delays)


async def test_backoff_is_capped_at_retry_max_and_a_down_channel_at_the_probe_interval(
    store: StateStore, clock: ManualClock
) -> None:
    outbox = OutboxDispatcher(
        store=store, notifiers=[ConsoleNotifier(io.StringIO())], clock=clock, retry_base=1.0, retry_max=300.0
    )

    refused = [outbox.retry_delay(attempts=n, error=NotifyError("refused", scope="message")) for n in range(40)]
    down = [outbox.retry_delay(attempts=n, error=NotifyError("down")) for n in range(40)]

    # A message the receiver refuses backs off exponentially, with jitter, up to retry_max.
    assert refused[0] == pytest.approx(1.0) and max(refused) <= 300.0 and refused[-1] >= 150.0
    # A channel that is down is probed: the same growth, capped at min(retry_max, 5 s).
    assert down[0] == pytest.approx(1.0) and max(down) <= 5.0 and down[-1] >= 2.5
    assert outbox.retry_delay(attempts=3, error=NotifyError("slow down", retry_after=42.5)) == 42.5
    assert outbox.retry_delay(attempts=0, error=NotifyError("bad auth", permanent=True)) == 300.0


async def test_rate_limited_waits_exactly_retry_after_then_delivers_once(
    fake_slack: FakeSlack, slack: SlackNotifier, store: StateStore, clock: ManualClock
) -> None:
    outbox = dispatcher(store, clock, slack)
    outbox.publish(alert())
    fake_slack.rate_limit_next(1, retry_after=7)
    start = clock.now()

    await outbox.deliver_due()

    [item] = store.outbox.pending()
    assert item.next_attempt_at == start + 7 and item.attempts == 1
    clock.advance(6.9)
    await outbox.deliver_due()
    assert len(fake_slack.requests) == 1 and fake_slack.messages == []
    clock.advance(0.1)
    await outbox.deliver_due()
    await outbox.deliver_due()
    assert len(fake_slack.messages) == 1 and len(fake_slack.requests) == 2


async def test_invalid_auth_is_logged_loudly_kept_and_retried_slowly(
    fake_slack: FakeSlack, slack: SlackNotifier, store: StateStore, clock: ManualClock
) -> None:
    runtime = RuntimeState()
    outbox = dispatcher(store, clock, slack, runtime=runtime)
    outbox.publish(alert())
    fake_slack.invalid_auth_next(2)
    start = clock.now()

    with structlog.testing.capture_logs() as logs:
        await outbox.deliver_due()

    [item] = store.outbox.pending()
    assert item.next_attempt_at == start + 300.0 and "invalid_auth" in (item.last_error or "")
    [event] = [e for e in logs if e["event"] == "notification_failed_permanently"]
    assert event["log_level"] == "error" and "invalid_auth" in event["error"]
    assert fake_slack.token not in repr(logs) and fake_slack.token not in (item.last_error or "")
    await deliver_until_empty(outbox, store, clock)
    assert len(fake_slack.messages) == 1 and len(fake_slack.requests) == 3
    assert runtime.notifications_failed["slack"] == 2


async def test_alerts_sent_counts_once_on_success_never_on_failure(
    fake_slack: FakeSlack, slack: SlackNotifier, store: StateStore, clock: ManualClock
) -> None:
    runtime = RuntimeState()
    console = ConsoleNotifier(io.StringIO())
    outbox = dispatcher(store, clock, slack, console, runtime=runtime)
    outbox.publish(alert(1, severity="warning"))
    outbox.publish(alert(2, kind="resolve", severity="info"))
    fake_slack.fail_next(3)

    await outbox.deliver_due()
    # Console delivered the alert: counted once even though Slack has not delivered it yet.
    assert runtime.alerts_sent == {("run-cap", "warning"): 1}
    await deliver_until_empty(outbox, store, clock)
    outbox.publish(alert(3, kind="renotify", severity="critical"))
    await outbox.deliver_due()

    assert runtime.alerts_sent == {("run-cap", "warning"): 1, ("run-cap", "critical"): 1}
    assert runtime.notifications_failed == {"slack": 3}


async def test_a_failure_counts_nothing_in_alerts_sent(
    fake_slack: FakeSlack, slack: SlackNotifier, store: StateStore, clock: ManualClock
) -> None:
    runtime = RuntimeState()
    outbox = dispatcher(store, clock, slack, runtime=runtime)
    outbox.publish(alert())
    fake_slack.fail_next(1)

    await outbox.deliver_due()

    assert sum(runtime.alerts_sent.values()) == 0 and runtime.notifications_failed["slack"] == 1


async def test_concurrent_passes_never_send_an_item_twice(
    fake_slack: FakeSlack, slack: SlackNotifier, store: StateStore, clock: ManualClock
) -> None:
    outbox = dispatcher(store, clock, slack)
    for n in range(5):
        outbox.publish(alert(n, thread=f"run-{n}"))

    reports = await asyncio.gather(*(outbox.deliver_due() for _ in range(4)))

    assert sum(r.delivered for r in reports) == 5 and len(fake_slack.messages) == 5


async def test_a_restart_resumes_the_outbox_and_the_threads(
    fake_slack: FakeSlack, clock: ManualClock, tmp_path: Path
) -> None:
    settings = SlackSettings(token=SecretStr(fake_slack.token), channel="#budgets", base_url=fake_slack.base_url)
    path = tmp_path / "state.db"
    with StateStore(path) as first_store:
        first = dispatcher(first_store, clock, SlackNotifier(settings))
        first.publish(alert(1, title="root"))
        await first.deliver_due()
        first.publish(alert(1, thread="run-2", title="queued before the restart"))
        fake_slack.fail_next(1)
        await first.deliver_due()
        await first.aclose()
    assert len(fake_slack.messages) == 1

    with StateStore(path) as second_store:
        second = dispatcher(second_store, clock, SlackNotifier(settings))
        assert not second.publish(alert(1, title="root"))  # dedup survives the restart
        second.publish(alert(2, title="follow-up after the restart"))
        await deliver_until_empty(second, second_store, clock)
        await second.aclose()

    texts = [m["text"] for m in fake_slack.messages]
    assert len(texts) == 3 and sum("queued before the restart" in t for t in texts) == 1
    root = next(m for m in fake_slack.messages if "root" in m["text"])
    follow_up = next(m for m in fake_slack.messages if "follow-up after the restart" in m["text"])
    assert follow_up["thread_ts"] == root["ts"]


async def test_hostile_names_are_delivered_escaped(
    fake_slack: FakeSlack, slack: SlackNotifier, store: StateStore, clock: ManualClock
) -> None:
    outbox = dispatcher(store, clock, slack)
    hostile = 'exp "q" \\ <!channel> <@U123> 🔥\nnext ' + "x" * 1024
    outbox.publish(alert(title=f"Run {hostile} over budget", fields=(("Run", hostile),), subject=hostile))

    await outbox.deliver_due()

    # The fake validates the blocks as Slack does; the message got in.
    [message] = fake_slack.messages
    raw = repr(message["blocks"]) + message["text"]
    assert "<!channel>" not in raw and "<@U123>" not in raw
    assert "&lt;!channel&gt;" in message["text"] and "&lt;@U123&gt;" in message["text"]
    assert "🔥" in message["blocks"][0]["text"]["text"]


async def test_a_webhook_channel_without_threads_posts_follow_ups_top_level(
    fake_slack: FakeSlack, store: StateStore, clock: ManualClock
) -> None:
    hook = SlackWebhookNotifier(SlackSettings(webhook_url=SecretStr(fake_slack.webhook_url)))
    outbox = dispatcher(store, clock, hook)
    outbox.publish(alert(1, title="root"))
    outbox.publish(alert(2, title="follow-up"))

    report = await outbox.deliver_due()
    await outbox.aclose()

    assert (report.delivered, report.deferred) == (2, 0)
    assert [m["source"] for m in fake_slack.messages] == ["webhook", "webhook"]
    assert "root" in fake_slack.messages[0]["text"] and "follow-up" in fake_slack.messages[1]["text"]
