"""A generic JSON webhook: one POST per notification, for PagerDuty bridges, chat bots, scripts.

The document: {kind, severity, title, text, subject, rule, fields: {label: value}, link, dedup_key,
created_at}. A 2xx answer is delivered; 429 and 5xx are retried (honouring Retry-After); 401, 403,
404 and 410 mean the URL is wrong (retried slowly, logged loudly); other 4xx refuse this message.
Receivers can use `dedup_key` to drop the rare repeat after a crash between send and bookkeeping.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from monitor.config import WebhookSettings
from monitor.events import Notification
from monitor.notify.base import NotifyError, http_status_error, redact
from monitor.retry_after import parse_retry_after


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
        self._timeout = settings.timeout
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return "WebhookNotifier(url=***)"

    async def send(self, notification: Notification, *, thread_ref: str | None) -> str | None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        try:
            response = await self._client.post(
                self._url,
                json=webhook_document(notification),
                headers={"Idempotency-Key": notification.dedup_key},
            )
        except httpx.HTTPError as error:
            message = redact(f"webhook unreachable: {type(error).__name__}: {error}", [self._url])
            raise NotifyError(message) from None
        if response.is_success:
            return None
        headers = response.headers
        retry_after = parse_retry_after(headers.get("Retry-After"), now=time.time(), date_header=headers.get("Date"))
        raise http_status_error(
            response.status_code,
            retry_after=retry_after,
            body=redact(response.text, [self._url]),
            receiver="webhook",
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        self._client = None
