"""A webhook URL is a credential: its token must never reach logs, stored errors, channel health or
exceptions, even when the receiver echoes the URL back (body, redirect Location) or the HTTP client
puts the URL in its own exception message (httpx, aiohttp)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest
import structlog
from aiohttp import web
from pydantic import SecretStr

from monitor.clock import ManualClock
from monitor.config.settings import SlackSettings, WebhookSettings
from monitor.notify import NotifyError, OutboxDispatcher, Redactor, SlackWebhookNotifier, WebhookNotifier
from monitor.notify.base import Notifier
from monitor.store.state_store import StateStore
from tests.test_notify_blocks import make_notification

PATH_TOKEN = "T0KEN7f3a9c2b55"
QUERY_TOKEN = "q-s3cr3t-value-1234"
SECRETS = (PATH_TOKEN, QUERY_TOKEN)
HOOK_PATH = f"/hooks/{PATH_TOKEN}"


class EchoingReceiver:
    """Answers every POST with the next scripted answer, echoing the URL it was called on."""

    def __init__(self) -> None:
        self.answers: list[str] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        kind = self.answers.pop(0) if self.answers else "ok"
        url = str(request.url)
        if kind == "echo-500":
            return web.Response(status=500, text=f"upstream failed for {url}")
        if kind == "echo-decoded-400":
            return web.Response(status=400, text=f"bad request to {unquote(url)} path={request.path_qs}")
        if kind == "echo-json-404":
            return web.json_response({"error": "no such hook", "url": url.replace("/", "\\/")}, status=404)
        if kind == "redirect":
            location = f"https://hooks.elsewhere.example{HOOK_PATH}?token={QUERY_TOKEN}"
            raise web.HTTPFound(location=location, text=f"moved: {quote(location, safe='')}")
        if kind == "redirect-loop":
            raise web.HTTPFound(location=url)
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[EchoingReceiver]:
    hook = EchoingReceiver()
    app = web.Application()
    app.router.add_route("*", HOOK_PATH, hook.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook.url = f"http://127.0.0.1:{runner.addresses[0][1]}{HOOK_PATH}?token={QUERY_TOKEN}&v=2"
    yield hook
    await runner.cleanup()


@pytest.fixture
def store() -> Iterator[StateStore]:
    with StateStore(":memory:") as state:
        yield state


def leaks(*texts: Any) -> list[str]:
    blob = " ".join(repr(text) for text in texts)
    return [secret for secret in SECRETS if secret in blob or quote(secret) in blob]


async def deliver_and_collect(notifier: Notifier, store: StateStore) -> list[Any]:
    """One notification through the outbox; everything a person or a log could see of the failure."""
    outbox = OutboxDispatcher(store=store, notifiers=[notifier], clock=ManualClock(), rng=random.Random(3))
    outbox.publish(make_notification())
    with structlog.testing.capture_logs() as logs:
        report = await outbox.deliver_due()
    health = outbox.channel_health()
    await outbox.aclose()
    assert report.failed == 1
    return [logs, [item.last_error for item in store.outbox.pending()], health]


@pytest.mark.parametrize("answer", ["echo-500", "echo-decoded-400", "echo-json-404", "redirect"])
async def test_a_receiver_echoing_the_url_never_gets_its_token_shown(
    receiver: EchoingReceiver, store: StateStore, answer: str
) -> None:
    webhook = WebhookNotifier(WebhookSettings(url=SecretStr(receiver.url), timeout=5))
    receiver.answers = [answer, answer]
    try:
        with pytest.raises(NotifyError) as caught:
            await webhook.send(make_notification(), thread_ref=None)
    finally:
        await webhook.aclose()

    seen = await deliver_and_collect(WebhookNotifier(WebhookSettings(url=SecretStr(receiver.url), timeout=5)), store)

    assert leaks(str(caught.value), repr(caught.value), seen) == []
    assert "***" in str(caught.value)  # the echo is there, masked: the operator still sees what happened


async def test_a_redirect_is_not_followed_and_says_where_without_the_token(receiver: EchoingReceiver) -> None:
    webhook = WebhookNotifier(WebhookSettings(url=SecretStr(receiver.url), timeout=5))
    receiver.answers = ["redirect"]
    try:
        with pytest.raises(NotifyError) as caught:
            await webhook.send(make_notification(), thread_ref=None)
    finally:
        await webhook.aclose()

    assert caught.value.permanent and "HTTP 302" in str(caught.value)
    # The new host stays readable; the path and query (the credential) do not.
    assert "redirect to https://hooks.elsewhere.example***?token=***" in str(caught.value)
    assert leaks(str(caught.value)) == []


async def test_httpx_errors_that_embed_the_url_are_redacted(receiver: EchoingReceiver, store: StateStore) -> None:
    # httpx names the URL in a status error; a bad port fails inside httpx with an ExceptionGroup.
    receiver.answers = ["echo-500"]
    async with httpx.AsyncClient() as client:
        response = await client.post(receiver.url, json={})
    with pytest.raises(httpx.HTTPStatusError) as status_error:
        response.raise_for_status()
    webhook = WebhookNotifier(WebhookSettings(url=SecretStr(receiver.url), timeout=5))
    bad_port = f"http://127.0.0.1:99999{HOOK_PATH}?token={QUERY_TOKEN}"
    broken = WebhookNotifier(WebhookSettings(url=SecretStr(bad_port), timeout=5))
    try:
        with pytest.raises(NotifyError) as caught:
            await broken.send(make_notification(), thread_ref=None)
    finally:
        await broken.aclose()
    seen = await deliver_and_collect(WebhookNotifier(WebhookSettings(url=SecretStr(bad_port), timeout=5)), store)

    assert leaks(str(status_error.value)) != []  # the raw message does carry the token...
    assert leaks(webhook.redact(str(status_error.value)), str(caught.value), seen) == []  # ...ours never


async def test_aiohttp_errors_that_embed_the_url_are_redacted(receiver: EchoingReceiver, store: StateStore) -> None:
    # aiohttp puts the URL in the message of an invalid-URL error and of a redirect loop.
    bad_port = SlackWebhookNotifier(
        SlackSettings(webhook_url=SecretStr(f"http://127.0.0.1:99999{HOOK_PATH}?token={QUERY_TOKEN}"))
    )
    looping = SlackWebhookNotifier(SlackSettings(webhook_url=SecretStr(receiver.url)))
    receiver.answers = ["redirect-loop"] * 20
    errors: list[str] = []
    for notifier in (bad_port, looping):
        try:
            with pytest.raises(NotifyError) as caught:
                await notifier.send(make_notification(), thread_ref=None)
            errors.append(str(caught.value))
        finally:
            await notifier.aclose()
    receiver.answers = ["redirect-loop"] * 20
    seen = await deliver_and_collect(SlackWebhookNotifier(SlackSettings(webhook_url=SecretStr(receiver.url))), store)

    assert "InvalidUrl" in errors[0] and "TooManyRedirects" in errors[1]
    assert leaks(errors, seen) == []


def test_the_redactor_masks_secret_looking_parts_and_keeps_the_rest_readable() -> None:
    url = (
        "https://user:pa55word-xyz@hooks.example.com/services/T01ABCDEF/B02GHIJKL/abcdefghijklmnopqrstuvwx?sig=abc1&v=1"
    )
    redact = Redactor(urls=[url], secrets=["xoxb-1-2-secret"])

    text = redact(
        "POST /services/T01ABCDEF/B02GHIJKL/abcdefghijklmnopqrstuvwx failed; sig=abc1; token xoxb-1-2-secret;"
        " retried by pa55word-xyz; HTTP 401 on v=1 of services"
    )

    for secret in ("T01ABCDEF", "B02GHIJKL", "abcdefghijklmnopqrstuvwx", "abc1", "xoxb-1-2-secret", "pa55word-xyz"):
        assert secret not in text
    # Words that are not secret-looking survive, and a short query value only goes where it stands alone.
    assert "HTTP 401" in text and "services" in text and "failed" in text
