"""Retry-After, read once for every HTTP peer (the Prime API, Slack, webhooks)."""

from __future__ import annotations

import contextlib
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str | None, *, now: float, date_header: str | None = None) -> float | None:
    """Seconds to wait: delta-seconds or an HTTP date; None if absent or unreadable.

    An HTTP date is measured against the response's own Date header when there is one, so the
    answer does not depend on our clock agreeing with the server's; otherwise against `now`.
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        until = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    reference = now
    if date_header:
        with contextlib.suppress(TypeError, ValueError, IndexError):
            reference = parsedate_to_datetime(date_header).timestamp()
    return max(0.0, until - reference)
