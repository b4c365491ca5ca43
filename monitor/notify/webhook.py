"""A generic JSON webhook: one POST per notification, for PagerDuty bridges, chat bots, scripts.

The document: {kind, severity, title, text, subject, rule, fields: {label: value}, link, dedup_key,
created_at}. A 2xx answer is delivered; 429 and 5xx are retried (honouring Retry-After); 401, 403,
404 and 410 mean the URL is wrong (retried slowly, logged loudly); a 3xx is never followed and is
treated like a wrong URL; other 4xx refuse this message.

For receivers: delivery is at least once. Every attempt at one notification, including retries
after a timeout, a 5xx or a restart of the monitor, carries the same `Idempotency-Key` header,
equal to the document's `dedup_key` (stable, unique per notification, at most a few hundred
ASCII characters). A receiver that wants exactly once keeps the keys it has acted on (a day is
plenty: retries stop once a 2xx is seen) and answers 2xx to a key it already has, without acting
again. A message delivered long after it was queued says so in its text ("Delayed: queued at ...").

The URL often embeds a token (in its path or query): it never appears in logs, stored errors or
exceptions, even when the receiver echoes it in its body or a redirect's Location.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from monitor.api.retry_after import parse_retry_after
from monitor.config.settings import WebhookSettings
from monitor.notify.base import NotifyError, Redactor, http_status_error
from monitor.records import Notification


def webhook_document(notification: Notification) -> dict[str, Any]:
    fields: dict[str, str] = {}
    for label, value in notification.fields:
        # Keep every field even when two share a label.
        key, n = label, 2
        while key in fields:
            key, n = f"{label} ({n})", n + 1
        fields[key] = value
    return {
        "kind": notification.kind,
        "severity": notification.severity,
        "title": notification.title,
        "text": notification.text,
        "subject": notification.subject,
        "rule": notification.rule,
        "fields": fields,
        "link": notification.link,
        "dedup_key": notification.dedup_key,
        "created_at": notification.created_at,
    }


class WebhookNotifier:
    channel = "webhook"

    def __init__(self, settings: WebhookSettings) -> None:
        if settings.url is None:
            raise ValueError("WebhookNotifier needs notify.webhook.url")
        # Webhook URLs often embed a token: never logged, never in an error.
        self._url = settings.url.get_secret_value()
        self._redactor = Redactor(urls=[self._url])
        self._timeout = settings.timeout
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return "WebhookNotifier(url=***)"

    def redact(self, text: str) -> str:
        return self._redactor(text)

    async def send(self, notification: Notification, *, thread_ref: str | None) -> str | None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        try:
            response = await self._client.post(
                self._url,
                json=webhook_document(notification),
                headers={"Idempotency-Key": notification.dedup_key},
            )
        except Exception as error:  # httpx raises more than HTTPError (a bad port is a ValueError group)
            # Only a failed connect proves the receiver never saw the document.
            never_sent = isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
            message = self._redactor(f"webhook unreachable: {type(error).__name__}: {error}")
            raise NotifyError(message, outcome_unknown=not never_sent) from None
        if response.is_success:
            return None
        headers = response.headers
        retry_after = parse_retry_after(headers.get("Retry-After"), now=time.time(), date_header=headers.get("Date"))
        body = response.text
        if response.is_redirect:
            body = f"redirect to {headers.get('Location', '?')} (not followed: fix notify.webhook.url)"
        raise http_status_error(
            response.status_code, retry_after=retry_after, body=self._redactor(body), receiver="webhook"
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        self._client = None
