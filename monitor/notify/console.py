"""Notifications printed to a terminal: the demo's channel, and handy without Slack."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from monitor.records import Notification

_LABELS = {"critical": "CRITICAL", "warning": "WARNING", "info": "INFO"}


def printable(text: str) -> str:
    """One line, no control characters: a run name must not move the cursor or recolour the terminal."""
    return "".join(ch if ch.isprintable() else " " if ch in "\t\r\n" else "?" for ch in text)


def console_lines(notification: Notification, *, reply: bool = False) -> list[str]:
    stamp = time.strftime("%H:%M:%S", time.localtime(notification.created_at))
    severity = _LABELS.get(notification.severity, notification.severity.upper())
    marker = "  ↳ " if reply else ""
    lines = [f"{stamp} {marker}{severity:<8} {printable(notification.title)}"]
    indent = " " * (len(stamp) + 1 + len(marker) + 9)
    if notification.text.strip():
        lines.append(indent + printable(notification.text))
    if notification.fields:
        lines.append(indent + " · ".join(f"{printable(k)}: {printable(v)}" for k, v in notification.fields))
    if notification.link:
        lines.append(indent + printable(notification.link))
    return lines


class ConsoleNotifier:
    channel = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    async def send(self, notification: Notification, *, thread_ref: str | None) -> str | None:
        stream = self._stream if self._stream is not None else sys.stdout
        stream.write("\n".join(console_lines(notification, reply=thread_ref is not None)) + "\n")
        stream.flush()
        # The dedup key serves as a thread ref, so later messages of the same thread print as replies.
        return notification.dedup_key

    async def aclose(self) -> None:
        return None
