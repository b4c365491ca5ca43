"""The outbox's channels: the configured notifiers, what it remembers about each, and sending
without the store.

- Per channel, an outage state (monitor.notify.outbox_health.ChannelState), in memory.
- A notifier that can look up a possibly-sent message (Slack) learns things only a delivery
  teaches (the channel's id); that is kept in the store's meta table so a restart can look too.
- Items queued for a channel no longer configured stay queued; that is logged once per channel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from monitor.notify.base import Notifier, Redacting, SentMessageLookup
from monitor.notify.outbox_health import ChannelState
from monitor.records import Notification
from monitor.store.state_store import StateStore, StoreError

log = structlog.get_logger(__name__)

_LOOKUP_STATE_KEY = "notify.{channel}.lookup_state"


def check_unique(notifiers: Sequence[Notifier]) -> None:
    channels = [notifier.channel for notifier in notifiers]
    if len(set(channels)) != len(channels):
        raise ValueError(f"two notifiers share a channel name: {channels}")


async def close_all(notifiers: Sequence[Notifier]) -> None:
    for notifier in notifiers:
        try:
            await notifier.aclose()
        except Exception as error:  # closing one must not keep the others open
            log.warning("notifier_close_failed", channel=notifier.channel, error=str(error))


class ChannelSet:
    """The notifiers by channel name, with the outbox's memory of each channel."""

    def __init__(self, store: StateStore, notifiers: Sequence[Notifier]) -> None:
        self._store = store
        self.notifiers: dict[str, Notifier] = {}
        self.states: dict[str, ChannelState] = {}
        self._saved_lookup_state: dict[str, str | None] = {}
        self._orphans_logged: set[str] = set()
        self._orphans_checked = False
        self.install(notifiers)

    def install(self, notifiers: Sequence[Notifier]) -> dict[str, Notifier]:
        """Take this set of notifiers; returns the previous one. A channel that stays keeps its state."""
        check_unique(notifiers)
        old = self.notifiers
        self.notifiers = {notifier.channel: notifier for notifier in notifiers}
        for channel, notifier in self.notifiers.items():
            self.states.setdefault(channel, ChannelState())
            self._orphans_logged.discard(channel)
            if isinstance(notifier, SentMessageLookup) and old.get(channel) is not notifier:
                self._restore_lookup_state(channel, notifier)
        for channel in self.states.keys() - self.notifiers.keys():
            del self.states[channel]
        self._orphans_checked = False
        return old

    def redact(self, channel: str, text: str) -> str:
        notifier = self.notifiers.get(channel)
        return notifier.redact(text) if isinstance(notifier, Redacting) else text

    def _restore_lookup_state(self, channel: str, notifier: SentMessageLookup) -> None:
        try:
            saved = self._store.get_meta(_LOOKUP_STATE_KEY.format(channel=channel))
        except StoreError as error:
            log.warning("notification_lookup_state_unreadable", channel=channel, error=str(error))
            return
        if saved is not None:
            notifier.restore_lookup_state(saved)
        self._saved_lookup_state[channel] = saved

    def save_lookup_state(self, channel: str) -> None:
        """After a delivery: keep what the notifier learned, if it changed."""
        notifier = self.notifiers.get(channel)
        if not isinstance(notifier, SentMessageLookup):
            return
        current = notifier.lookup_state()
        if current is not None and current != self._saved_lookup_state.get(channel):
            self._store.set_meta(_LOOKUP_STATE_KEY.format(channel=channel), current)
            self._saved_lookup_state[channel] = current

    def note_orphans(self) -> None:
        """Once per configuration: say which channels hold queued items that no notifier serves."""
        if self._orphans_checked:
            return
        self._orphans_checked = True
        for channel, backlog in self._store.outbox.open_outbox_channels().items():
            if channel not in self.notifiers and channel not in self._orphans_logged:
                self._orphans_logged.add(channel)
                log.warning("notifications_queued_for_missing_channel", channel=channel, backlog=backlog,
                            hint="kept: they go out if this channel is configured again")  # fmt: skip

    async def send_direct(
        self,
        notification: Notification,
        *,
        channels: Sequence[str] | None,
        timeout: float,  # noqa: ASYNC109 - a bound per channel, not a cancel scope for the caller
    ) -> dict[str, bool]:
        targets = {c: n for c, n in self.notifiers.items() if channels is None or c in channels}

        async def one(channel: str, notifier: Notifier) -> bool:
            try:
                await asyncio.wait_for(notifier.send(notification, thread_ref=None), timeout=timeout)
            except TimeoutError:
                error = f"no answer within {timeout:g}s"
            except Exception as exc:  # never raises: this path reports failures, it does not have them
                error = self.redact(channel, f"{type(exc).__name__}: {exc}")
            else:
                log.info("notification_sent_direct", channel=channel, dedup_key=notification.dedup_key)
                return True
            log.error("notification_direct_send_failed", channel=channel, dedup_key=notification.dedup_key, error=error)
            return False

        outcomes = await asyncio.gather(*(one(c, n) for c, n in targets.items()))
        return dict(zip(targets, outcomes, strict=True))
