"""What every notification channel agrees on: the Notifier protocol and the one error type.

A notifier only sends; it never sleeps or retries. The outbox decides when to try again, so a
message is retried in one place with one backoff policy, whatever channel it is bound for.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, Protocol, runtime_checkable

from monitor.events import Notification

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
    ) -> None:
        super().__init__(message)
        # Seconds the receiver asked us to wait (HTTP Retry-After); the outbox waits exactly that.
        self.retry_after = retry_after
        # Config or auth problems (invalid_auth, channel_not_found, 404 webhook): logged loudly and
        # retried slowly, never dropped, because a fixed config makes them deliverable again.
        self.permanent = permanent
        self.scope: ErrorScope = scope


@runtime_checkable
class Notifier(Protocol):
    channel: str  # "slack" | "webhook" | "console"

    async def send(self, notification: Notification, *, thread_ref: str | None) -> str | None:
        """Deliver one message; return a reference later messages can reply to (Slack ts), or None."""
        ...

    async def aclose(self) -> None: ...


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Remove every secret (token, secret webhook URL) from an error text before it is logged or stored."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def http_status_error(status: int, *, retry_after: float | None, body: str, receiver: str) -> NotifyError:
    """The NotifyError for a non-2xx HTTP answer from a webhook-style receiver."""
    detail = f"{receiver} answered HTTP {status}: {body[:200].strip()}"
    if status == 429:
        return NotifyError(detail, retry_after=retry_after)
    if status >= 500:
        return NotifyError(detail, retry_after=retry_after)
    if status in (401, 403, 404, 410) or 300 <= status < 400:
        # The URL is wrong, revoked or the target is gone: a config problem, not this message.
        return NotifyError(detail, permanent=True)
    return NotifyError(detail, scope="message")
