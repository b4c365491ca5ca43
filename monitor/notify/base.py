"""What every notification channel agrees on: the Notifier protocol, the one error type, the
optional lookup capability (exactly once after a crash) and the redaction of secrets in errors.

A notifier only sends; it never sleeps or retries. The outbox decides when to try again, so a
message is retried in one place with one backoff policy, whatever channel it is bound for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from monitor.records import Notification

# How far a failure reaches. "channel": the channel is down, rate limited or misconfigured, so the
# outbox stops that channel for the pass (keeping the order of its messages). "message": only this
# message was refused (a 400, a payload Slack rejects), so later messages may still go.
ErrorScope = Literal["channel", "message"]


class NotifyError(Exception):
    """A failed send. The message never contains a token or a secret URL."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        permanent: bool = False,
        scope: ErrorScope = "channel",
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(message)
        # Seconds the receiver asked us to wait (HTTP Retry-After); the outbox waits exactly that.
        self.retry_after = retry_after
        # Config or auth problems (invalid_auth, channel_not_found, 404 webhook): logged loudly and
        # retried slowly, never dropped, because a fixed config makes them deliverable again.
        self.permanent = permanent
        self.scope: ErrorScope = scope
        # The request may have reached the receiver and been acted on (a timeout after sending, a
        # dropped connection, a 5xx): a channel that can look (Slack) looks before sending again.
        self.outcome_unknown = outcome_unknown


@runtime_checkable
class Notifier(Protocol):
    channel: str  # "slack" | "webhook" | "console"

    async def send(self, notification: Notification, *, thread_ref: str | None) -> str | None:
        """Deliver one message; return a reference later messages can reply to (Slack ts), or None."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class LookupResult:
    """Whether a message whose send outcome is unknown is on the channel."""

    # The message's ref (Slack ts) when it was found.
    found_ref: str | None = None
    # Why the channel could not tell (missing scope, channel id not known yet, too many messages to
    # search): the outbox then sends again, at least once rather than never.
    unavailable: str | None = None

    @property
    def found(self) -> bool:
        return self.found_ref is not None


@runtime_checkable
class SentMessageLookup(Protocol):
    """A notifier that can find a message it may already have sent (Slack: message metadata)."""

    async def find_sent(
        self, notification: Notification, *, thread_ref: str | None, attempt_started_at: float
    ) -> LookupResult:
        """Look for the message; raises NotifyError when the channel is down (try again later)."""
        ...

    def lookup_state(self) -> str | None:
        """What lookups need that only a delivery teaches (Slack: the channel's id), to keep across restarts."""
        ...

    def restore_lookup_state(self, state: str) -> None: ...


@runtime_checkable
class Redacting(Protocol):
    def redact(self, text: str) -> str:
        """The text with every secret this notifier holds (token, URL and its parts) replaced by ***."""
        ...


# -- redaction -------------------------------------------------------------------------------------

MASK = "***"
# Shorter secrets are only replaced where they stand alone, so "HTTP 401" survives a query value "1".
_LONG = 8
_WORD = r"A-Za-z0-9_\-.~%"


def _looks_secret(segment: str) -> bool:
    """A path segment that is probably a credential: long, or letters and digits mixed."""
    has_digit = any(ch.isdigit() for ch in segment)
    has_alpha = any(ch.isalpha() for ch in segment)
    return len(segment) >= 20 or (len(segment) >= 6 and has_digit and has_alpha)


def url_secret_parts(url: str) -> set[str]:
    """Every part of a URL that may be a credential: the URL, its path and query, each secret-looking
    path segment, each query value, the userinfo."""
    parts = {url}
    try:
        split = urlsplit(url)
    except ValueError:
        return parts
    if split.path not in ("", "/"):
        parts.add(split.path)
        parts.update(segment for segment in split.path.split("/") if _looks_secret(unquote(segment)))
    if split.query:
        parts.add(split.query)
        parts.update(value for _name, value in parse_qsl(split.query, keep_blank_values=False))
        parts.update(value for raw in split.query.split("&") for value in raw.split("=", 1)[1:] if value)
    if split.password:
        parts.add(split.password)
    if split.username and split.password:
        parts.add(split.username)
    return {part for part in parts if part}


def _variants(secret: str) -> set[str]:
    # Receivers echo what they saw: decoded, re-encoded, or JSON-escaped ("\/").
    forms = {secret, unquote(secret), quote(secret, safe=""), quote(secret, safe="/:@"), secret.replace("/", "\\/")}
    return {form for form in forms if form}


class Redactor:
    """Replaces secrets (tokens, secret URLs and their parts) in any error text before it is logged,
    stored or raised."""

    def __init__(self, *, secrets: Iterable[str | None] = (), urls: Iterable[str | None] = ()) -> None:
        parts: set[str] = set()
        for secret in secrets:
            if secret:
                parts |= _variants(secret)
        for url in urls:
            if url:
                for part in url_secret_parts(url):
                    parts |= _variants(part)
        self._long = sorted((p for p in parts if len(p) >= _LONG), key=len, reverse=True)
        short = sorted((p for p in parts if len(p) < _LONG), key=len, reverse=True)
        self._short = (
            re.compile("|".join(f"(?<![{_WORD}]){re.escape(p)}(?![{_WORD}])" for p in short)) if short else None
        )

    def __call__(self, text: str) -> str:
        for secret in self._long:
            text = text.replace(secret, MASK)
        if self._short is not None:
            text = self._short.sub(MASK, text)
        return text


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Remove every secret (token, secret webhook URL) from an error text before it is logged or stored."""
    return Redactor(secrets=secrets)(text)


def http_status_error(status: int, *, retry_after: float | None, body: str, receiver: str) -> NotifyError:
    """The NotifyError for a non-2xx HTTP answer from a webhook-style receiver (body already redacted)."""
    detail = f"{receiver} answered HTTP {status}: {body[:200].strip()}"
    if status == 429:
        return NotifyError(detail, retry_after=retry_after)
    if status >= 500:
        # A 5xx may come after the receiver acted (a proxy timing out on a slow receiver).
        return NotifyError(detail, retry_after=retry_after, outcome_unknown=True)
    if status in (401, 403, 404, 410) or 300 <= status < 400:
        # The URL is wrong, revoked, moved or the target is gone: a config problem, not this message.
        # A redirect is never followed (it would resend the document, and its Location may echo the URL).
        return NotifyError(detail, permanent=True)
    return NotifyError(detail, scope="message")
