"""Slack delivery: the Web API (chat.postMessage, Block Kit, threads) and incoming webhooks.

slack-sdk's own retry handlers are switched off (`retry_handlers=[]`): a failed post surfaces at
once as a NotifyError and the outbox decides when to try again, so there is one retry policy.

Every Web API post carries the notification's dedup key in its message metadata, so a post whose
outcome is unknown (a crash or a timeout mid-send, a 5xx) can be found before it is sent again
(monitor.notify.slack_lookup). Incoming webhooks cannot be searched: at least once after a crash.
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import structlog
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from monitor.api.retry_after import parse_retry_after
from monitor.config.settings import SlackSettings
from monitor.notify.base import LookupResult, NotifyError, Redactor, http_status_error
from monitor.notify.blocks import fallback_text, slack_blocks
from monitor.notify.slack_lookup import find_message, looks_like_channel_id, message_metadata
from monitor.records import Notification

log = structlog.get_logger(__name__)

DEFAULT_SLACK_API = "https://slack.com/api/"
DEFAULT_TIMEOUT = 10.0

# Errors no retry can fix until someone changes the config or the Slack app.
PERMANENT_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "not_allowed_token_type",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "restricted_action",
        "team_access_not_granted",
        "access_denied",
        "ekm_access_denied",
    }
)
# Slack refused the blocks themselves: the same message is posted again as plain text only.
BLOCK_ERRORS = frozenset({"invalid_blocks", "invalid_blocks_format", "msg_blocks_too_long"})
# Slack's own words: "it's possible some aspect of the operation succeeded before the error".
UNKNOWN_OUTCOME_ERRORS = frozenset({"fatal_error", "internal_error", "service_unavailable"})


def _response_parts(error: SlackApiError) -> tuple[int | None, str | None, str | None, str | None]:
    """(HTTP status, Slack error code, Retry-After, Date) from a SlackApiError, whatever its response type."""
    response: Any = error.response
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    data = getattr(response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    headers = getattr(response, "headers", None) or {}
    return (
        int(status) if status is not None else None,
        str(code) if code else None,
        headers.get("Retry-After"),
        headers.get("Date"),
    )


def map_slack_error(error: SlackApiError, method: str = "chat.postMessage") -> NotifyError:
    status, code, retry_after, date = _response_parts(error)
    what = f"slack {method} failed: HTTP {status}, error {code or 'unknown'}"
    if status == 429 or code == "ratelimited":
        return NotifyError(what, retry_after=parse_retry_after(retry_after, now=time.time(), date_header=date))
    if status is not None and status >= 500:
        wait = parse_retry_after(retry_after, now=time.time(), date_header=date)
        return NotifyError(what, retry_after=wait, outcome_unknown=True)
    if code in UNKNOWN_OUTCOME_ERRORS:
        return NotifyError(what, outcome_unknown=True)
    if code in PERMANENT_ERRORS:
        return NotifyError(what, permanent=True)
    if status is not None and status != 200:
        return NotifyError(what)
    # Slack answered 200 with ok=false for this one message (e.g. msg_too_long).
    return NotifyError(what, scope="message")


def unreachable_error(error: BaseException, *, what: str, redactor: Redactor) -> NotifyError:
    """A transport failure. Only a refused or timed-out connect proves nothing was sent."""
    never_sent = isinstance(error, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
    message = redactor(f"{what} unreachable: {type(error).__name__}: {error}")
    return NotifyError(message, outcome_unknown=not never_sent)


class SlackNotifier:
    """Posts to one channel with a bot token; replies in a thread when given a thread ref (ts); finds
    a post whose outcome is unknown by the dedup key in its metadata."""

    channel = "slack"

    def __init__(self, settings: SlackSettings, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        if settings.token is None or not settings.channel:
            raise ValueError("SlackNotifier needs notify.slack.token and notify.slack.channel")
        self._token = settings.token.get_secret_value()
        self._slack_channel = settings.channel
        self._base_url = settings.base_url or DEFAULT_SLACK_API
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._client: AsyncWebClient | None = None
        self._redactor = Redactor(secrets=[self._token])
        # Reading history needs the channel's id; chat.postMessage answers with it.
        self._channel_id: str | None = settings.channel if looks_like_channel_id(settings.channel) else None

    def __repr__(self) -> str:
        return f"SlackNotifier(channel={self._slack_channel!r}, base_url={self._base_url!r})"

    def _web_client(self) -> AsyncWebClient:
        # Created on first use: an aiohttp session belongs to the running event loop.
        if self._client is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
            self._client = AsyncWebClient(
                token=self._token,
                base_url=self._base_url,
                session=self._session,
                timeout=int(self._timeout),
                retry_handlers=[],
            )
        return self._client

    def redact(self, text: str) -> str:
        return self._redactor(text)

    def _unreachable(self, error: BaseException, method: str) -> NotifyError:
        return unreachable_error(error, what=f"slack {method}", redactor=self._redactor)

    async def _post(
        self, *, text: str, blocks: list[dict[str, Any]] | None, thread_ref: str | None, dedup_key: str
    ) -> str | None:
        kwargs: dict[str, Any] = {
            "channel": self._slack_channel,
            "text": text,
            "unfurl_links": False,
            "unfurl_media": False,
            "metadata": message_metadata(dedup_key),
        }
        if blocks is not None:
            kwargs["blocks"] = blocks
        if thread_ref:
            kwargs["thread_ts"] = thread_ref
        try:
            response = await self._web_client().chat_postMessage(**kwargs)
        except SlackApiError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError, SlackClientError) as error:
            raise self._unreachable(error, "chat.postMessage") from None
        channel_id = response.get("channel")
        if isinstance(channel_id, str) and looks_like_channel_id(channel_id):
            self._channel_id = channel_id
        ts = response.get("ts")
        return str(ts) if ts else None

    async def send(self, notification: Notification, *, thread_ref: str | None) -> str | None:
        text = fallback_text(notification)
        key = notification.dedup_key
        try:
            return await self._post(text=text, blocks=slack_blocks(notification), thread_ref=thread_ref, dedup_key=key)
        except SlackApiError as error:
            _status, code, _retry_after, _date = _response_parts(error)
            if code not in BLOCK_ERRORS:
                raise map_slack_error(error) from None
            # Better a plain message than none: the alert still has to reach people.
            log.warning("slack_blocks_rejected", dedup_key=key, error=code)
        try:
            return await self._post(text=text, blocks=None, thread_ref=thread_ref, dedup_key=key)
        except SlackApiError as error:
            raise map_slack_error(error) from None

    async def find_sent(
        self, notification: Notification, *, thread_ref: str | None, attempt_started_at: float
    ) -> LookupResult:
        if self._channel_id is None:
            return LookupResult(
                unavailable=f"the id of {self._slack_channel} is not known until a message is delivered there"
                " (set notify.slack.channel to the channel id, C...)"
            )
        return await find_message(
            self._web_client(),
            channel_id=self._channel_id,
            dedup_key=notification.dedup_key,
            thread_ref=thread_ref,
            attempt_started_at=attempt_started_at,
            send_timeout=self._timeout,
            map_error=map_slack_error,
            unreachable=self._unreachable,
        )

    def lookup_state(self) -> str | None:
        if self._channel_id is None:
            return None
        return json.dumps({"channel": self._slack_channel, "id": self._channel_id})

    def restore_lookup_state(self, state: str) -> None:
        try:
            saved = json.loads(state)
        except ValueError:
            return
        # Only for the same configured channel: a reload to another channel must not read the old one.
        if isinstance(saved, dict) and saved.get("channel") == self._slack_channel and self._channel_id is None:
            channel_id = saved.get("id")
            if isinstance(channel_id, str) and looks_like_channel_id(channel_id):
                self._channel_id = channel_id

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = None
        self._client = None


class SlackWebhookNotifier:
    """Posts through a Slack incoming webhook: blocks and fallback text, no threads (returns None)."""

    channel = "slack"

    def __init__(self, settings: SlackSettings, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        if settings.webhook_url is None:
            raise ValueError("SlackWebhookNotifier needs notify.slack.webhook_url")
        # The URL itself is the credential: it never appears in logs or errors.
        self._url = settings.webhook_url.get_secret_value()
        self._redactor = Redactor(urls=[self._url])
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._client: AsyncWebhookClient | None = None

    def __repr__(self) -> str:
        return "SlackWebhookNotifier(url=***)"

    def redact(self, text: str) -> str:
        return self._redactor(text)

    def _webhook_client(self) -> AsyncWebhookClient:
        if self._client is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
            self._client = AsyncWebhookClient(
                url=self._url, session=self._session, timeout=int(self._timeout), retry_handlers=[]
            )
        return self._client

    async def send(self, notification: Notification, *, thread_ref: str | None) -> str | None:
        try:
            response = await self._webhook_client().send(
                text=fallback_text(notification),
                blocks=slack_blocks(notification),
                unfurl_links=False,
                unfurl_media=False,
            )
        except (aiohttp.ClientError, TimeoutError, OSError, SlackClientError) as error:
            raise unreachable_error(error, what="slack webhook", redactor=self._redactor) from None
        if 200 <= response.status_code < 300:
            return None
        headers = response.headers or {}
        retry_after = parse_retry_after(headers.get("Retry-After"), now=time.time(), date_header=headers.get("Date"))
        raise http_status_error(
            response.status_code,
            retry_after=retry_after,
            body=self._redactor(str(response.body or "")),
            receiver="slack webhook",
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = None
        self._client = None
