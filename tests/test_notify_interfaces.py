"""What the daemon builds on: publish to chosen channels, channel health, sending without the store,
and swapping notifiers on a config reload. Real slack-sdk against the fake Slack; the console."""

from __future__ import annotations

import asyncio
import io
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr

from monitor.clock import ManualClock
from monitor.config.settings import WebhookSettings
from monitor.notify import ChannelHealth, ConsoleNotifier, Notifier, OutboxDispatcher, SlackNotifier, WebhookNotifier
from monitor.records import Notification
from monitor.store import outbox as outbox_rows
from monitor.store.state_store import StateStore
from tests.support.fake_slack import FakeSlack
from tests.test_notify_blocks import make_notification


class ClosableConsole(ConsoleNotifier):
    """The console notifier, remembering whether it was closed."""

    def __init__(self, stream: io.StringIO) -> None:
        super().__init__(stream)
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


class BrokenNotifier:
    """A notifier with a bug: its send raises something that is not a NotifyError."""

    channel = "broken"

    async def send(self, notification: Notification, *, thread_ref: str | None) -> str | None:
        raise RuntimeError("bug in a notifier")

    async def aclose(self) -> None:
        return None


@pytest.fixture
def store() -> Iterator[StateStore]:
    with StateStore(":memory:") as state:
        yield state


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/hook"


def note(n: int, **overrides: object) -> Notification:
    return make_notification(**{"dedup_key": f"key-{n}", "thread_key": f"thread-{n}", "title": f"message {n}",
                                **overrides})  # fmt: skip


# -- publish -------------------------------------------------------------------------------------------


async def test_publish_queues_on_every_channel_or_only_the_configured_ones_asked_for(
    fake_slack: FakeSlack, store: StateStore, clock: ManualClock
) -> None:
    outbox = OutboxDispatcher(
        store=store, notifiers=[SlackNotifier(fake_slack.settings()), ConsoleNotifier(io.StringIO())], clock=clock
    )
    try:
        assert outbox.publish(note(1))
        assert outbox.publish(note(2), channels=["console", "pager"])  # "pager" is not configured
        assert not outbox.publish(note(3), channels=["pager"])
        assert not outbox.publish(note(1), channels=["console"])  # a key is queued once, ever
    finally:
        await outbox.aclose()

    queued = [(item.notification.dedup_key, item.channel) for item in store.outbox.pending()]
    assert queued == [("key-1", "slack"), ("key-1", "console"), ("key-2", "console")]


# -- channel health ------------------------------------------------------------------------------------


async def test_channel_health_follows_an_outage_and_its_recovery(
    fake_slack: FakeSlack, store: StateStore, clock: ManualClock
) -> None:
    outbox = OutboxDispatcher(
        store=store, notifiers=[SlackNotifier(fake_slack.settings()), ConsoleNotifier(io.StringIO())], clock=clock
    )
    healthy = ChannelHealth(
        failing_since=None, last_error=None, consecutive_failures=0, backlog=0, oldest_undelivered_at=None
    )
    try:
        assert outbox.channel_health() == {"slack": healthy, "console": healthy}
        fake_slack.set_outage(status=503)
        first_queued = clock.now()
        outbox.publish(note(1))
        clock.advance(1)
        outbox.publish(note(2))
        outbox.publish(note(3), channels=["slack"])
        failed_at = clock.now()
        await outbox.deliver_due()
        clock.advance(30)
        await outbox.deliver_due()
        during = outbox.channel_health()
        fake_slack.end_outage()
        clock.advance(30)
        await outbox.deliver_due()
        after = outbox.channel_health()
    finally:
        await outbox.aclose()

    slack = during["slack"]
    assert slack.failing_since == failed_at and slack.consecutive_failures == 2 and not slack.healthy
    assert slack.backlog == 3 and slack.oldest_undelivered_at == first_queued
    assert "503" in (slack.last_error or "") and fake_slack.token not in (slack.last_error or "")
    assert during["console"] == healthy
    assert after == {"slack": healthy, "console": healthy}


def test_the_backlog_is_counted_from_an_index_not_a_table_scan(tmp_path: Path, clock: ManualClock) -> None:
    path = tmp_path / "state.db"
    with StateStore(path) as store:
        for n in range(2000):
            store.outbox.enqueue(note(n), channels=["slack", "webhook"], now=clock.now())
        assert store.outbox.outbox_backlog("slack") == (2000, clock.now())
    statements: list[str] = []
    with sqlite3.connect(path) as conn:
        conn.set_trace_callback(statements.append)
        outbox_rows.backlog(conn, channel="slack")
        [query] = [s for s in statements if s.startswith("SELECT")]
        plan = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {query}"))
    assert "INDEX outbox_open_age" in plan and "SCAN" not in plan


# -- send_direct ---------------------------------------------------------------------------------------


async def test_send_direct_reports_each_channel_and_never_touches_the_store(
    fake_slack: FakeSlack, store: StateStore, clock: ManualClock
) -> None:
    console = io.StringIO()
    notifiers: list[Notifier] = [
        SlackNotifier(fake_slack.settings()),
        ConsoleNotifier(console),
        WebhookNotifier(WebhookSettings(url=SecretStr(closed_port_url()), timeout=5)),
        BrokenNotifier(),
    ]
    outbox = OutboxDispatcher(store=store, notifiers=notifiers, clock=clock)
    blind = note(1, kind="monitor_blind", title="The monitor cannot see: state store failing")
    try:
        with structlog.testing.capture_logs() as logs:
            sent = await outbox.send_direct(blind)
            only_console = await outbox.send_direct(note(2), channels=["console"])
    finally:
        await outbox.aclose()

    assert sent == {"slack": True, "console": True, "webhook": False, "broken": False}
    assert only_console == {"console": True}
    assert "state store failing" in fake_slack.messages[0]["text"] and "state store failing" in console.getvalue()
    assert store.outbox.pending() == [] and store.outbox.enqueue(blind, channels=["slack"], now=clock.now())
    failures = {e["channel"] for e in logs if e["event"] == "notification_direct_send_failed"}
    assert failures == {"webhook", "broken"}


async def test_send_direct_gives_up_on_a_channel_that_does_not_answer_in_time(
    fake_slack: FakeSlack, store: StateStore, clock: ManualClock
) -> None:
    outbox = OutboxDispatcher(
        store=store, notifiers=[SlackNotifier(fake_slack.settings()), ConsoleNotifier(io.StringIO())], clock=clock
    )
    fake_slack.stall_next(1, 3.0)
    try:
        sent = await outbox.send_direct(note(1), timeout=0.5)
    finally:
        await outbox.aclose()

    assert sent == {"slack": False, "console": True}


# -- replace_notifiers ---------------------------------------------------------------------------------


async def test_a_reload_with_a_fixed_token_delivers_at_once_and_closes_the_old_notifier(
    fake_slack: FakeSlack, store: StateStore, clock: ManualClock
) -> None:
    wrong = SlackNotifier(fake_slack.settings(token="xoxb-revoked-0000-secret"))
    old_console = ClosableConsole(io.StringIO())
    outbox = OutboxDispatcher(store=store, notifiers=[wrong, old_console], clock=clock)
    outbox.publish(note(1))
    await outbox.deliver_due()
    [waiting] = store.outbox.pending()
    assert waiting.next_attempt_at == clock.now() + 300.0  # invalid_auth: retried slowly, until fixed

    new_console = ClosableConsole(io.StringIO())
    await outbox.replace_notifiers([SlackNotifier(fake_slack.settings()), new_console])
    report = await outbox.deliver_due()  # no waiting out the 300 s
    await outbox.aclose()

    assert report.delivered == 1 and fake_slack.dedup_keys() == ["key-1"] and store.outbox.pending() == []
    assert old_console.closed and new_console.closed
    assert outbox.channel_health()["slack"].healthy


async def test_a_reload_waits_for_the_delivery_in_flight(
    fake_slack: FakeSlack, store: StateStore, clock: ManualClock
) -> None:
    outbox = OutboxDispatcher(store=store, notifiers=[SlackNotifier(fake_slack.settings())], clock=clock)
    outbox.publish(note(1))
    fake_slack.stall_next(1, 1.0)
    delivering = asyncio.create_task(outbox.deliver_due())
    await asyncio.to_thread(fake_slack.wait_for_messages, 1)  # the post is in flight

    await outbox.replace_notifiers([SlackNotifier(fake_slack.settings())])

    assert delivering.done() and (await delivering).delivered == 1
    assert store.outbox.pending() == [] and len(fake_slack.messages) == 1
    await outbox.aclose()


async def test_items_of_a_removed_channel_wait_and_go_when_it_returns(
    fake_slack: FakeSlack, store: StateStore, clock: ManualClock
) -> None:
    console = io.StringIO()
    # Queued for Slack by an earlier configuration (a restart or a reload dropped Slack since).
    store.outbox.enqueue(note(2), channels=["slack"], now=clock.now())
    outbox = OutboxDispatcher(store=store, notifiers=[ConsoleNotifier(console)], clock=clock)
    outbox.publish(note(1))

    with structlog.testing.capture_logs() as logs:
        await outbox.deliver_due()
        await outbox.deliver_due()
    assert [e["channel"] for e in logs if e["event"] == "notifications_queued_for_missing_channel"] == ["slack"]
    assert [item.channel for item in store.outbox.pending()] == ["slack"]

    await outbox.replace_notifiers([ConsoleNotifier(console), SlackNotifier(fake_slack.settings())])
    await outbox.deliver_due()
    await outbox.aclose()

    assert fake_slack.dedup_keys() == ["key-2"] and store.outbox.pending() == []


async def test_a_reload_to_another_slack_channel_does_not_read_the_old_one(fake_slack: FakeSlack) -> None:
    budgets = SlackNotifier(fake_slack.settings())
    other = SlackNotifier(fake_slack.settings(channel="#other"))
    try:
        await budgets.send(note(1), thread_ref=None)
        learned = budgets.lookup_state()
        assert learned is not None
        other.restore_lookup_state(learned)
        lookup = await other.find_sent(note(1), thread_ref=None, attempt_started_at=0.0)
    finally:
        await budgets.aclose()
        await other.aclose()

    assert lookup.unavailable is not None and "#other" in lookup.unavailable
