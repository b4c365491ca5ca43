"""What a late message says about itself, and which queued messages a newer one makes stale.

Delayed: a message delivered more than `stale_after` seconds after it was queued starts with
"⏱ Delayed: queued at 12:01:05 UTC, 14m ago, while Slack was unreachable."

Superseded: among the open items of one thread (subject x rule x episode) on one channel,
- an `alert` is superseded by any newer `alert` or `resolve` (a higher tier, or the end of it);
- a `renotify` (reminder) by any newer `alert`, `renotify` or `resolve`.
The older item is never sent; the newest carries one line naming what it folds in. A resolve that
folds in every alert of a thread that never reached the channel says the alert "opened and
resolved while Slack was unreachable" and names the tiers: one message instead of a stale alert
followed by its resolve. Other kinds (enforcement announcements) are never folded.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from monitor.config.durations import format_duration
from monitor.records import Notification
from monitor.store.outbox import OutboxEntry, ThreadEntry

SUPERSEDED_BY: dict[str, frozenset[str]] = {
    "alert": frozenset({"alert", "resolve"}),
    "renotify": frozenset({"alert", "renotify", "resolve"}),
}
_CHANNEL_NAMES = {"slack": "Slack", "webhook": "the webhook", "console": "the console"}
_TITLES_SHOWN = 5
_TITLE_CHARS = 120


def channel_name(channel: str) -> str:
    return _CHANNEL_NAMES.get(channel, channel)


def superseding_id(item_id: int, kind: str, thread: Sequence[ThreadEntry]) -> int | None:
    """The newest open item of the thread that makes this one stale, or None."""
    kinds = SUPERSEDED_BY.get(kind)
    if not kinds:
        return None
    newer = [entry.id for entry in thread if entry.id > item_id and entry.state == "open" and entry.kind in kinds]
    return max(newer) if newer else None


def clock_time(at: float, *, now: float) -> str:
    """12:01:05 UTC, with the date when it is not today's."""
    moment, today = time.gmtime(at), time.gmtime(now)
    same_day = moment[:3] == today[:3]
    return time.strftime("%H:%M:%S UTC" if same_day else "%Y-%m-%d %H:%M:%S UTC", moment)


def hold_up(channel: str, *, failing: bool) -> str:
    """Why a message is late: the channel failed, or delivery was simply not running."""
    return f"while {channel_name(channel)} was unreachable" if failing else "while delivery was held up"


def delayed_note(*, queued_at: float, now: float, cause: str) -> str:
    return f"⏱ Delayed: queued at {clock_time(queued_at, now=now)}, {format_duration(now - queued_at)} ago, {cause}."


def _title(entry: OutboxEntry, *, now: float) -> str:
    title = " ".join(entry.notification.title.split())
    if len(title) > _TITLE_CHARS:
        title = title[: _TITLE_CHARS - 1].rstrip() + "…"
    queued = entry.queued_at if entry.queued_at is not None else entry.notification.created_at
    return f"“{title}” (queued {clock_time(queued, now=now)})"


def folded_note(
    notification: Notification, folded: Sequence[OutboxEntry], *, thread_reached_channel: bool, cause: str, now: float
) -> str:
    shown = "; ".join(_title(entry, now=now) for entry in folded[:_TITLES_SHOWN])
    if len(folded) > _TITLES_SHOWN:
        shown += f"; and {len(folded) - _TITLES_SHOWN} more"
    if notification.kind == "resolve" and not thread_reached_channel:
        return f"↪ This alert opened and resolved {cause}; not sent at the time: {shown}."
    plural = "message" if len(folded) == 1 else "messages"
    return f"↪ Supersedes {len(folded)} earlier {plural} not sent {cause}: {shown}."


def with_notes(notification: Notification, notes: Sequence[str]) -> Notification:
    """The notification with notes before its text (what people read first, after the title)."""
    if not notes:
        return notification
    return replace(notification, text="\n".join([*notes, notification.text]).strip())
