"""Notifications: Slack (Web API or incoming webhook), a generic JSON webhook, the console, and the
outbox dispatcher that delivers them through the state store with retries.

Typical wiring::

    notifiers = build_notifiers(settings.notify)
    outbox = OutboxDispatcher(store=store, notifiers=notifiers, clock=clock,
                              retry_base=settings.notify.retry_base, retry_max=settings.notify.retry_max,
                              runtime=runtime)
    outbox.publish(notification)      # durable at once, on every channel (or channels=[...])
    await outbox.deliver_due()        # after publishing, and every few seconds
    outbox.channel_health()           # per channel: outage, last error, backlog
    await outbox.send_direct(note)    # when the state store itself fails
    await outbox.replace_notifiers(build_notifiers(new_settings.notify))   # a config reload
    await outbox.aclose()
"""

from __future__ import annotations

from typing import TextIO

from monitor.config.settings import NotifySettings
from monitor.notify.base import LookupResult, Notifier, NotifyError, Redactor, SentMessageLookup
from monitor.notify.blocks import fallback_text, slack_blocks
from monitor.notify.console import ConsoleNotifier
from monitor.notify.outbox import DeliveryReport, OutboxDispatcher
from monitor.notify.outbox_health import ChannelHealth
from monitor.notify.slack import SlackNotifier, SlackWebhookNotifier
from monitor.notify.webhook import WebhookNotifier, webhook_document


def build_notifiers(settings: NotifySettings, *, console_stream: TextIO | None = None) -> list[Notifier]:
    """One notifier per configured channel. A Slack token wins over a Slack webhook URL (threads)."""
    notifiers: list[Notifier] = []
    if settings.slack.token is not None:
        notifiers.append(SlackNotifier(settings.slack))
    elif settings.slack.webhook_url is not None:
        notifiers.append(SlackWebhookNotifier(settings.slack))
    if settings.webhook.url is not None:
        notifiers.append(WebhookNotifier(settings.webhook))
    if settings.console:
        notifiers.append(ConsoleNotifier(console_stream))
    return notifiers


__all__ = [
    "ChannelHealth",
    "ConsoleNotifier",
    "DeliveryReport",
    "LookupResult",
    "Notifier",
    "NotifyError",
    "OutboxDispatcher",
    "Redactor",
    "SentMessageLookup",
    "SlackNotifier",
    "SlackWebhookNotifier",
    "WebhookNotifier",
    "build_notifiers",
    "fallback_text",
    "slack_blocks",
    "webhook_document",
]
