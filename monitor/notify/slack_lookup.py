"""Finding a message the monitor may already have posted to Slack, by the dedup key in its metadata.

Every message is posted with message metadata ``{"event_type": "prime_cost_monitor_notification",
"event_payload": {"dedup_key": ...}}``. When a send's outcome is unknown (the daemon was killed
mid-post, the request timed out, Slack answered 5xx), the outbox asks before sending again:

- a top-level message: ``conversations.history`` of the channel; a thread reply:
  ``conversations.replies`` of the thread root; both with ``include_all_metadata=true`` and a
  window around the attempt (``oldest``/``latest``, ``LOOKUP_MARGIN`` either side for clock skew and
  the request's own time), at most ``LOOKUP_MAX_PAGES`` pages.
- Reading needs the channel's *id* (C...), which ``chat.postMessage`` answers with: it is learned
  from the first delivery and kept in the state store, or taken from ``notify.slack.channel`` when
  that already is an id.
- Scopes: ``channels:history`` (public channels) or ``groups:history`` (private ones), and the bot
  must be a member of the channel. Without them the lookup is "unavailable" and the message is sent
  again (at least once instead of exactly once), logged once per channel.

Slack limits these methods for apps outside the Marketplace (about one call a minute, 15 messages a
page); a 429 is honoured like any other, so a lookup only delays the channel, never loses a message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from monitor.notify.base import LookupResult, NotifyError

EVENT_TYPE = "prime_cost_monitor_notification"
LOOKUP_MARGIN = 120.0
LOOKUP_PAGE = 100
LOOKUP_MAX_PAGES = 10
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")

# Answers that mean "cannot look here" (scope, membership, channel, token type): send instead.
UNAVAILABLE_ERRORS = frozenset(
    {
        "missing_scope",
        "not_in_channel",
        "channel_not_found",
        "thread_not_found",
        "no_permission",
        "access_denied",
        "not_allowed_token_type",
        "ekm_access_denied",
        "restricted_action",
        "team_access_not_granted",
        "method_deprecated",
        "unknown_method",
    }
)


def looks_like_channel_id(channel: str) -> bool:
    return bool(_CHANNEL_ID.match(channel))


def message_metadata(dedup_key: str) -> dict[str, Any]:
    return {"event_type": EVENT_TYPE, "event_payload": {"dedup_key": dedup_key}}


def _carries(message: Any, dedup_key: str) -> bool:
    metadata = message.get("metadata") if isinstance(message, dict) else None
    if not isinstance(metadata, dict) or metadata.get("event_type") != EVENT_TYPE:
        return False
    payload = metadata.get("event_payload")
    return isinstance(payload, dict) and payload.get("dedup_key") == dedup_key


async def find_message(
    client: AsyncWebClient,
    *,
    channel_id: str,
    dedup_key: str,
    thread_ref: str | None,
    attempt_started_at: float,
    send_timeout: float,
    map_error: Callable[[SlackApiError, str], NotifyError],
    unreachable: Callable[[BaseException, str], NotifyError],
) -> LookupResult:
    """Search the window around one attempt for the message carrying `dedup_key`."""
    method = "conversations.replies" if thread_ref else "conversations.history"
    oldest = f"{max(0.0, attempt_started_at - LOOKUP_MARGIN):.6f}"
    latest = f"{attempt_started_at + send_timeout + LOOKUP_MARGIN:.6f}"
    cursor: str | None = None
    for _page in range(LOOKUP_MAX_PAGES):
        try:
            if thread_ref:
                response = await client.conversations_replies(
                    channel=channel_id, ts=thread_ref, cursor=cursor, oldest=oldest, latest=latest,
                    inclusive=True, include_all_metadata=True, limit=LOOKUP_PAGE,
                )  # fmt: skip
            else:
                response = await client.conversations_history(
                    channel=channel_id, cursor=cursor, oldest=oldest, latest=latest,
                    inclusive=True, include_all_metadata=True, limit=LOOKUP_PAGE,
                )  # fmt: skip
        except SlackApiError as error:
            data: Any = getattr(error.response, "data", None)
            code = data.get("error") if isinstance(data, dict) else None
            if code in UNAVAILABLE_ERRORS:
                needed = data.get("needed") if isinstance(data, dict) else None
                return LookupResult(unavailable=f"{method} answered {code}" + (f" (needs {needed})" if needed else ""))
            raise map_error(error, method) from None
        except (aiohttp.ClientError, TimeoutError, OSError, SlackClientError) as error:
            raise unreachable(error, method) from None
        for message in response.get("messages") or []:
            if _carries(message, dedup_key):
                return LookupResult(found_ref=str(message.get("ts")))
        metadata = response.get("response_metadata") or {}
        cursor = metadata.get("next_cursor") if isinstance(metadata, dict) else None
        if not response.get("has_more") or not cursor:
            return LookupResult()
    return LookupResult(unavailable=f"{method}: more than {LOOKUP_MAX_PAGES} pages in the search window")
