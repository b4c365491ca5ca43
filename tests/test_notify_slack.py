"""The Slack notifiers (real slack-sdk) against the shared fake Slack, and the fake itself."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from urllib.error import URLError

import aiohttp
import pytest
from pydantic import SecretStr
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from monitor.config.settings import SlackSettings
from monitor.notify import NotifyError, SlackNotifier, SlackWebhookNotifier
from tests.support.fake_slack import FakeSlack
from tests.test_notify_blocks import make_notification


def slack_settings(fake: FakeSlack, *, token: str | None = None) -> SlackSettings:
    return SlackSettings(token=SecretStr(token or fake.token), channel="#budgets", base_url=fake.base_url)


@pytest.fixture
async def notifier(fake_slack: FakeSlack) -> AsyncIterator[SlackNotifier]:
    slack = SlackNotifier(slack_settings(fake_slack))
    yield slack
    await slack.aclose()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_one_send_posts_one_message_with_blocks_and_fallback(
    fake_slack: FakeSlack, notifier: SlackNotifier
) -> None:
    ts = await notifier.send(make_notification(), thread_ref=None)

    [message] = fake_slack.messages
    assert message["ts"] == ts and message["channel"] == "#budgets" and message["thread_ts"] is None
    assert "Run exp-42 passed its budget" in message["text"]
    assert message["blocks"][0]["type"] == "header"
    assert "Run exp-42 passed its budget" in message["blocks"][0]["text"]["text"]
    assert all(r["auth_ok"] for r in fake_slack.requests)


async def test_a_thread_ref_posts_a_reply(fake_slack: FakeSlack, notifier: SlackNotifier) -> None:
    root = await notifier.send(make_notification(), thread_ref=None)
    assert root is not None
    await notifier.send(make_notification(kind="resolve", title="Back under budget"), thread_ref=root)

    assert [m["text"] for m in fake_slack.replies(root)] == [fake_slack.messages[1]["text"]]
    assert "Back under budget" in fake_slack.messages[1]["text"]


async def test_rate_limit_becomes_a_retry_after_and_sdk_does_not_retry(
    fake_slack: FakeSlack, notifier: SlackNotifier
) -> None:
    fake_slack.rate_limit_next(1, retry_after=17)

    with pytest.raises(NotifyError) as caught:
        await notifier.send(make_notification(), thread_ref=None)

    assert caught.value.retry_after == 17 and not caught.value.permanent
    # slack-sdk's own retry handlers are off: one request, no message.
    assert len(fake_slack.requests) == 1 and fake_slack.messages == []


async def test_server_errors_are_transient(fake_slack: FakeSlack, notifier: SlackNotifier) -> None:
    fake_slack.fail_next(1, status=503)

    with pytest.raises(NotifyError) as caught:
        await notifier.send(make_notification(), thread_ref=None)

    assert not caught.value.permanent and caught.value.scope == "channel" and caught.value.retry_after is None
    assert "503" in str(caught.value)
    assert len(fake_slack.requests) == 1


@pytest.mark.parametrize("error", ["invalid_auth", "channel_not_found", "not_in_channel"])
async def test_config_errors_are_permanent(fake_slack: FakeSlack, notifier: SlackNotifier, error: str) -> None:
    fake_slack.error_next(1, error)

    with pytest.raises(NotifyError) as caught:
        await notifier.send(make_notification(), thread_ref=None)

    assert caught.value.permanent and error in str(caught.value)


async def test_a_wrong_token_is_permanent_and_never_shown(fake_slack: FakeSlack) -> None:
    wrong = "xoxb-wrong-1234-secret-value"
    slack = SlackNotifier(slack_settings(fake_slack, token=wrong))
    try:
        with pytest.raises(NotifyError) as caught:
            await slack.send(make_notification(), thread_ref=None)
    finally:
        await slack.aclose()

    assert caught.value.permanent and "invalid_auth" in str(caught.value)
    assert wrong not in str(caught.value) and wrong not in repr(slack)
    assert fake_slack.requests[0]["auth_ok"] is False and fake_slack.messages == []


async def test_a_message_specific_refusal_only_blocks_that_message(
    fake_slack: FakeSlack, notifier: SlackNotifier
) -> None:
    fake_slack.error_next(1, "msg_too_long")

    with pytest.raises(NotifyError) as caught:
        await notifier.send(make_notification(), thread_ref=None)

    assert caught.value.scope == "message" and not caught.value.permanent


async def test_rejected_blocks_fall_back_to_plain_text(fake_slack: FakeSlack, notifier: SlackNotifier) -> None:
    fake_slack.error_next(1, "invalid_blocks")

    ts = await notifier.send(make_notification(), thread_ref=None)

    [message] = fake_slack.messages
    assert message["ts"] == ts and message["blocks"] is None
    assert "Run exp-42 passed its budget" in message["text"]


async def test_unreachable_slack_is_transient() -> None:
    token = "xoxb-unreachable-secret-token"
    settings = SlackSettings(token=SecretStr(token), channel="#b", base_url=f"http://127.0.0.1:{closed_port()}/api/")
    slack = SlackNotifier(settings, timeout=5)
    try:
        with pytest.raises(NotifyError) as caught:
            await slack.send(make_notification(), thread_ref=None)
    finally:
        await slack.aclose()

    assert not caught.value.permanent and "unreachable" in str(caught.value)
    assert token not in str(caught.value)


async def test_incoming_webhook_posts_without_threads(fake_slack: FakeSlack) -> None:
    hook = SlackWebhookNotifier(SlackSettings(webhook_url=SecretStr(fake_slack.webhook_url)))
    try:
        first = await hook.send(make_notification(), thread_ref=None)
        second = await hook.send(make_notification(kind="resolve", title="Back under budget"), thread_ref=None)
    finally:
        await hook.aclose()

    assert first is None and second is None
    assert [m["source"] for m in fake_slack.messages] == ["webhook", "webhook"]
    assert "Run exp-42 passed its budget" in fake_slack.messages[0]["text"]
    assert fake_slack.messages[0]["blocks"][0]["type"] == "header"
    assert "Back under budget" in fake_slack.messages[1]["text"]


async def test_incoming_webhook_errors_map_like_http(fake_slack: FakeSlack) -> None:
    hook = SlackWebhookNotifier(SlackSettings(webhook_url=SecretStr(fake_slack.webhook_url)))
    fake_slack.rate_limit_next(1, retry_after=9)
    fake_slack.fail_next(1)
    fake_slack.invalid_auth_next(1)  # a revoked webhook answers 403
    try:
        errors = []
        for _ in range(3):
            with pytest.raises(NotifyError) as caught:
                await hook.send(make_notification(), thread_ref=None)
            errors.append(caught.value)
    finally:
        await hook.aclose()

    assert errors[0].retry_after == 9
    assert not errors[1].permanent and "500" in str(errors[1])
    assert errors[2].permanent
    assert all(fake_slack.webhook_url not in str(e) and "/services/" not in str(e) for e in errors)
    assert fake_slack.messages == []


# -- the fake itself ---------------------------------------------------------------------------------


async def test_fake_accepts_form_encoded_posts_and_auth_test(fake_slack: FakeSlack) -> None:
    client = AsyncWebClient(token=fake_slack.token, base_url=fake_slack.base_url, retry_handlers=[])
    form = await client.api_call(
        "chat.postMessage",
        data={"channel": "#x", "text": "hello", "blocks": '[{"type": "divider"}]', "thread_ts": "1.000001"},
    )
    auth = await client.auth_test()

    assert form["ok"] and auth["ok"] and auth["user_id"] == "U000"
    [message] = fake_slack.messages
    assert message == {
        "source": "api",
        "channel": "#x",
        "channel_id": form["channel"],
        "text": "hello",
        "blocks": [{"type": "divider"}],
        "thread_ts": "1.000001",
        "ts": form["ts"],
        "metadata": None,
        "received_at": message["received_at"],
        "auth_ok": True,
    }
    # Like Slack: a channel named for the first time gets an id, and the answer carries the id.
    assert form["channel"] == fake_slack.channel_id("#x") and form["channel"].startswith("C")


async def test_fake_rejects_missing_token_and_oversized_blocks(fake_slack: FakeSlack) -> None:
    anonymous = AsyncWebClient(token=None, base_url=fake_slack.base_url, retry_handlers=[])
    client = AsyncWebClient(token=fake_slack.token, base_url=fake_slack.base_url, retry_handlers=[])
    header = [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]

    with pytest.raises(SlackApiError) as no_token:
        await anonymous.api_call("chat.postMessage", json={"channel": "#x", "text": "hi"})
    with pytest.raises(SlackApiError) as too_long:
        await client.api_call("chat.postMessage", json={"channel": "#x", "text": "hi", "blocks": header})

    assert no_token.value.response["error"] == "not_authed"
    assert too_long.value.response["error"] == "invalid_blocks"
    assert "text length 151" in too_long.value.response["errors"][0]
    assert fake_slack.messages == []


async def test_fake_unique_ts_reset_and_the_in_loop_variant(fake_slack_async: FakeSlack) -> None:
    slack = SlackNotifier(slack_settings(fake_slack_async))
    try:
        refs = [await slack.send(make_notification(), thread_ref=None) for _ in range(5)]
        await fake_slack_async.wait_for_messages_async(5, seconds=5)
        fake_slack_async.fail_next(3)
        fake_slack_async.reset()
        await slack.send(make_notification(), thread_ref=None)
    finally:
        await slack.aclose()

    assert len(set(refs)) == 5
    # reset() dropped the records and the queued faults.
    assert len(fake_slack_async.messages) == 1 and len(fake_slack_async.requests) == 1


def test_a_separate_process_can_post_to_the_threaded_fake(fake_slack: FakeSlack) -> None:
    script = (
        "import sys\n"
        "from slack_sdk import WebClient\n"
        "client = WebClient(token=sys.argv[1], base_url=sys.argv[2])\n"
        "client.chat_postMessage(channel='#from-a-subprocess', text='hello from outside')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, fake_slack.token, fake_slack.base_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    [message] = fake_slack.wait_for_messages(1, timeout=10)
    assert message["channel"] == "#from-a-subprocess" and message["text"] == "hello from outside"


async def test_fake_history_and_replies_page_and_filter_like_slack(fake_slack: FakeSlack) -> None:
    client = AsyncWebClient(token=fake_slack.token, base_url=fake_slack.base_url, retry_handlers=[])
    fake_slack.set_clock(iter(float(t) for t in range(1_000, 2_000)).__next__)  # ts 1000, 1001, ...
    posted = []
    for n in range(4):
        meta = {"event_type": "test", "event_payload": {"n": n}}
        posted.append(await client.chat_postMessage(channel="#budgets", text=f"top {n}", metadata=meta))
    channel = posted[0]["channel"]
    root = posted[0]["ts"]
    for n in range(2):
        await client.chat_postMessage(channel=channel, text=f"reply {n}", thread_ts=root)

    first = await client.conversations_history(channel=channel, limit=3)
    rest = await client.conversations_history(
        channel=channel, limit=3, cursor=first["response_metadata"]["next_cursor"]
    )
    with_meta = await client.conversations_history(
        channel=channel, include_all_metadata=True, oldest="1001", latest="1003"
    )
    inclusive = await client.conversations_history(channel=channel, oldest="1001", latest="1003", inclusive=True)
    thread = await client.conversations_replies(channel=channel, ts=root, include_all_metadata=True)

    # Top-level only, newest first, paged with a cursor; metadata only when asked for.
    assert [m["text"] for m in first["messages"]] == ["top 3", "top 2", "top 1"] and first["has_more"]
    assert [m["text"] for m in rest["messages"]] == ["top 0"] and not rest["has_more"]
    assert all("metadata" not in m for m in first["messages"] + rest["messages"])
    assert [m["metadata"]["event_payload"]["n"] for m in with_meta["messages"]] == [2]  # oldest/latest exclusive
    assert [m["text"] for m in inclusive["messages"]] == ["top 3", "top 2", "top 1"]
    # The thread: the parent first, then its replies oldest first.
    assert [m["text"] for m in thread["messages"]] == ["top 0", "reply 0", "reply 1"]
    assert thread["messages"][0]["metadata"]["event_payload"] == {"n": 0}
    for call, error in (
        (client.conversations_history(channel="#budgets"), "channel_not_found"),  # reading needs the id
        (client.conversations_history(channel=channel, cursor="bm9wZQ=="), "invalid_cursor"),
        (client.conversations_replies(channel=channel, ts="999.000000"), "thread_not_found"),
    ):
        with pytest.raises(SlackApiError) as caught:
            await call
        assert caught.value.response["error"] == error
    fake_slack.scopes.discard("channels:history")
    with pytest.raises(SlackApiError) as scope:
        await client.conversations_history(channel=channel)
    assert scope.value.response["error"] == "missing_scope" and scope.value.response["needed"] == "channels:history"


async def test_fake_lasting_outages_and_a_listener_that_refuses_connections(fake_slack_async: FakeSlack) -> None:
    client = AsyncWebClient(token=fake_slack_async.token, base_url=fake_slack_async.base_url, retry_handlers=[])
    port = fake_slack_async.port
    fake_slack_async.set_outage(status=429, retry_after=7)
    for _ in range(3):
        with pytest.raises(SlackApiError) as limited:
            await client.auth_test()
        assert limited.value.response.status_code == 429 and limited.value.response.headers["Retry-After"] == "7"
    fake_slack_async.end_outage()
    await fake_slack_async.close_listener()
    with pytest.raises(aiohttp.ClientConnectorError):
        await client.auth_test()
    await fake_slack_async.reopen_listener()

    assert fake_slack_async.port == port and (await client.auth_test())["ok"]


def test_fake_in_thread_mode_goes_offline_and_back_on_the_same_port(fake_slack: FakeSlack) -> None:
    client = WebClient(token=fake_slack.token, base_url=fake_slack.base_url, retry_handlers=[])
    fake_slack.go_offline()
    with pytest.raises(URLError):
        client.auth_test()
    fake_slack.go_online()

    assert client.auth_test()["ok"]
