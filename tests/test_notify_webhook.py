"""The generic JSON webhook against a small aiohttp receiver, and channels failing independently."""

from __future__ import annotations

import random
import socket
from collections import deque
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from monitor.clock import ManualClock
from monitor.config.settings import SlackSettings, WebhookSettings
from monitor.exporter.live import RuntimeState
from monitor.notify import NotifyError, OutboxDispatcher, SlackNotifier, WebhookNotifier
from monitor.store.state_store import StateStore
from tests.support.fake_slack import FakeSlack
from tests.test_notify_blocks import make_notification

SECRET_PATH = "/hooks/notify-7f3a9c-secret"


class Receiver:
    """A webhook receiver on a loopback port: records documents, answers scripted statuses."""

    def __init__(self) -> None:
        self.documents: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        # The Idempotency-Key of every request, answered or refused.
        self.keys: list[str | None] = []
        self.script: deque[tuple[int, dict[str, str]]] = deque()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.keys.append(request.headers.get("Idempotency-Key"))
        if self.script:
            status, headers = self.script.popleft()
            return web.Response(status=status, text="nope", headers=headers)
        self.documents.append(await request.json())
        self.headers.append(dict(request.headers))
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post(SECRET_PATH, hook.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook.url = f"http://127.0.0.1:{runner.addresses[0][1]}{SECRET_PATH}"
    yield hook
    await runner.cleanup()


@pytest.fixture
async def webhook(receiver: Receiver) -> AsyncIterator[WebhookNotifier]:
    notifier = WebhookNotifier(WebhookSettings(url=SecretStr(receiver.url), timeout=5))
    yield notifier
    await notifier.aclose()


@pytest.fixture
def store() -> Iterator[StateStore]:
    with StateStore(":memory:") as state:
        yield state


async def test_the_document_arrives_as_json(receiver: Receiver, webhook: WebhookNotifier) -> None:
    ref = await webhook.send(make_notification(), thread_ref=None)

    assert ref is None
    [document] = receiver.documents
    assert document["kind"] == "alert" and document["severity"] == "critical"
    assert document["title"] == "Run exp-42 passed its budget"
    assert document["fields"] == {"Run": "exp-42", "Cost": "$51.20", "Limit": "$50.00"}
    assert document["dedup_key"] == "run-1/run-cap/1/2" and document["created_at"] == 1_800_000_000.0
    assert receiver.headers[0]["Idempotency-Key"] == "run-1/run-cap/1/2"


@pytest.mark.parametrize(
    ("status", "headers", "retry_after", "permanent", "scope"),
    [
        (429, {"Retry-After": "12"}, 12.0, False, "channel"),
        (503, {}, None, False, "channel"),
        (500, {"Retry-After": "3"}, 3.0, False, "channel"),
        (404, {}, None, True, "channel"),
        (401, {}, None, True, "channel"),
        (400, {}, None, False, "message"),
        (413, {}, None, False, "message"),
    ],
)
async def test_http_answers_map_to_retry_decisions(
    receiver: Receiver,
    webhook: WebhookNotifier,
    status: int,
    headers: dict[str, str],
    retry_after: float | None,
    permanent: bool,
    scope: str,
) -> None:
    receiver.script.append((status, headers))

    with pytest.raises(NotifyError) as caught:
        await webhook.send(make_notification(), thread_ref=None)

    error = caught.value
    assert (error.retry_after, error.permanent, error.scope) == (retry_after, permanent, scope)
    assert str(status) in str(error) and SECRET_PATH not in str(error)


async def test_retry_after_as_an_http_date_is_measured_against_the_servers_date(
    receiver: Receiver, webhook: WebhookNotifier
) -> None:
    receiver.script.append(
        (503, {"Retry-After": "Wed, 21 Oct 2026 07:28:30 GMT", "Date": "Wed, 21 Oct 2026 07:28:00 GMT"})
    )
    with pytest.raises(NotifyError) as caught:
        await webhook.send(make_notification(), thread_ref=None)
    assert caught.value.retry_after == 30.0


async def test_an_unreachable_receiver_never_shows_its_url() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}{SECRET_PATH}"
    notifier = WebhookNotifier(WebhookSettings(url=SecretStr(url), timeout=5))
    try:
        with pytest.raises(NotifyError) as caught:
            await notifier.send(make_notification(), thread_ref=None)
    finally:
        await notifier.aclose()
    assert not caught.value.permanent and SECRET_PATH not in str(caught.value) and url not in repr(notifier)


async def test_webhook_retries_through_the_outbox_and_delivers_once(
    receiver: Receiver, webhook: WebhookNotifier, store: StateStore
) -> None:
    clock = ManualClock()
    outbox = OutboxDispatcher(store=store, notifiers=[webhook], clock=clock, rng=random.Random(1))
    outbox.publish(make_notification())
    receiver.script.extend([(429, {"Retry-After": "12"}), (502, {})])
    start = clock.now()

    await outbox.deliver_due()
    assert store.outbox.pending()[0].next_attempt_at == start + 12
    clock.advance(12)
    await outbox.deliver_due()
    clock.advance(store.outbox.pending()[0].next_attempt_at - clock.now())
    await outbox.deliver_due()
    await outbox.deliver_due()

    assert len(receiver.documents) == 1 and store.outbox.pending() == []


async def test_every_attempt_carries_the_same_idempotency_key_even_after_a_restart(
    receiver: Receiver, webhook: WebhookNotifier, tmp_path: Path
) -> None:
    clock = ManualClock()
    receiver.script.extend([(503, {}), (504, {})])
    with StateStore(tmp_path / "state.db") as store:
        first = OutboxDispatcher(store=store, notifiers=[webhook], clock=clock)
        first.publish(make_notification(dedup_key="alert:run-1:cap:e0:t2"))
        await first.deliver_due()
        clock.advance(store.outbox.pending()[0].next_attempt_at - clock.now())
        await first.deliver_due()
    with StateStore(tmp_path / "state.db") as store:  # a restart: the same key, from the store
        second = OutboxDispatcher(store=store, notifiers=[webhook], clock=clock)
        clock.advance(store.outbox.pending()[0].next_attempt_at - clock.now())
        await second.deliver_due()

    assert receiver.keys == ["alert:run-1:cap:e0:t2"] * 3
    assert [d["dedup_key"] for d in receiver.documents] == ["alert:run-1:cap:e0:t2"]


async def test_a_refused_message_does_not_hold_back_the_next_one(
    receiver: Receiver, webhook: WebhookNotifier, store: StateStore
) -> None:
    clock = ManualClock()
    outbox = OutboxDispatcher(store=store, notifiers=[webhook], clock=clock)
    outbox.publish(make_notification(dedup_key="a", thread_key="a", title="refused"))
    outbox.publish(make_notification(dedup_key="b", thread_key="b", title="fine"))
    receiver.script.append((422, {}))

    report = await outbox.deliver_due()

    assert (report.delivered, report.failed) == (1, 1)
    assert [d["title"] for d in receiver.documents] == ["fine"]
    assert [item.notification.dedup_key for item in store.outbox.pending()] == ["a"]


async def test_one_channel_failing_does_not_block_another(
    fake_slack: FakeSlack, receiver: Receiver, webhook: WebhookNotifier, store: StateStore
) -> None:
    clock = ManualClock()
    runtime = RuntimeState()
    slack = SlackNotifier(SlackSettings(token=SecretStr(fake_slack.token), channel="#b", base_url=fake_slack.base_url))
    outbox = OutboxDispatcher(store=store, notifiers=[slack, webhook], clock=clock, runtime=runtime)
    try:
        fake_slack.fail_next(100)
        for n in range(3):
            outbox.publish(make_notification(dedup_key=f"k{n}", thread_key=f"t{n}", title=f"alert {n}"))

        report = await outbox.deliver_due()

        assert [d["title"] for d in receiver.documents] == ["alert 0", "alert 1", "alert 2"]
        assert (report.delivered, report.failed, report.deferred) == (3, 1, 2)
        assert len(store.outbox.pending(channel="slack")) == 3 and store.outbox.pending(channel="webhook") == []
        assert runtime.alerts_sent[("run-cap", "critical")] == 3

        fake_slack.reset()
        clock.advance(store.outbox.pending(channel="slack")[0].next_attempt_at - clock.now())
        await outbox.deliver_due()
    finally:
        await outbox.aclose()

    assert [m["text"].count("alert") for m in fake_slack.messages] == [1, 1, 1]
    assert len(receiver.documents) == 3
    assert runtime.alerts_sent[("run-cap", "critical")] == 3 and runtime.notifications_failed == {"slack": 1}
