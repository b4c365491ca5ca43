"""What the fake Slack knows, apart from HTTP: Block Kit checks, channels, and reading messages back
(``conversations.history`` / ``conversations.replies``) with Slack's rules:

- channels are addressed by id to read (a ``#name`` answers ``channel_not_found``, as in Slack);
  posting by name creates the channel on first use and answers with its id (``C...``);
- history holds top-level messages only, newest first; replies hold the parent, then its replies
  oldest first; ``oldest``/``latest`` are exclusive unless ``inclusive``;
- ``metadata`` is returned only with ``include_all_metadata``;
- ``limit`` (default 100, capped at ``max_page_size``) pages with an opaque cursor
  (``response_metadata.next_cursor``, ``has_more``); a cursor that is not ours is ``invalid_cursor``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

SlackAnswer = dict[str, Any]


@dataclass(frozen=True)
class Fault:
    """How the fake fails one request (or every request, during an outage)."""

    kind: str  # "status" | "rate_limit" | "error" | "stall"
    status: int = 500
    retry_after: float = 1.0
    error: str = ""
    seconds: float = 0.0


def block_errors(blocks: Any) -> list[str]:
    """What the real Slack would reject in these blocks (a subset of its checks, the ones we rely on)."""
    if not isinstance(blocks, list):
        return ["blocks must be an array"]
    problems: list[str] = []
    if len(blocks) > 50:
        problems.append(f"{len(blocks)} blocks, max 50")

    def text_ok(where: str, obj: Any, limit: int, kinds: tuple[str, ...] = ("plain_text", "mrkdwn")) -> None:
        if not isinstance(obj, dict) or obj.get("type") not in kinds or not isinstance(obj.get("text"), str):
            problems.append(f"{where}: not a text object of type {kinds}")
            return
        if not 1 <= len(obj["text"]) <= limit:
            problems.append(f"{where}: text length {len(obj['text'])} not in 1..{limit}")

    for i, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        where = f"blocks[{i}]({kind})"
        if kind == "header":
            text_ok(where, block.get("text"), 150, ("plain_text",))
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(f"{where}: needs text or fields")
            if "text" in block:
                text_ok(where, block["text"], 3000)
            fields = block.get("fields", [])
            if not isinstance(fields, list) or len(fields) > 10:
                problems.append(f"{where}: at most 10 fields")
            else:
                for j, field in enumerate(fields):
                    text_ok(f"{where}.fields[{j}]", field, 2000)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                problems.append(f"{where}: 1..10 elements")
            else:
                for j, element in enumerate(elements):
                    text_ok(f"{where}.elements[{j}]", element, 3000)
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
                problems.append(f"{where}: 1..25 elements")
            else:
                for j, element in enumerate(elements):
                    text_ok(f"{where}.elements[{j}].text", element.get("text"), 75, ("plain_text",))
                    url = element.get("url")
                    if url is not None and (not isinstance(url, str) or len(url) > 3000):
                        problems.append(f"{where}.elements[{j}].url: max 3000 chars")
        elif kind not in ("divider", "image", "rich_text", "markdown"):
            problems.append(f"{where}: unknown block type")
    return problems


def metadata_problem(metadata: Any) -> str | None:
    """Slack's check of chat.postMessage `metadata`: an event_type string and an event_payload object."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        return "invalid_metadata_format"
    if not isinstance(metadata.get("event_type"), str) or not isinstance(metadata.get("event_payload"), dict):
        return "invalid_metadata_schema"
    return None


def missing_scope(scopes: set[str], scope: str) -> SlackAnswer | None:
    """Slack's answer to a token without `scope`, or None."""
    if scope in scopes:
        return None
    return {"ok": False, "error": "missing_scope", "needed": scope, "provided": ",".join(sorted(scopes))}


def post_problem(
    params: dict[str, Any], conversations: Conversations, scopes: set[str]
) -> tuple[str | None, list[str], SlackAnswer | None]:
    """(error, block problems, extra answer fields) for a chat.postMessage, or (None, [], None)."""
    if params.get("__invalid__"):
        return "invalid_json", [], None
    scope = missing_scope(scopes, "chat:write")
    if scope is not None:
        return "missing_scope", [], scope
    channel = params.get("channel")
    if not channel or conversations.channel_id(str(channel)) is None:
        return "channel_not_found", [], None
    if not params.get("text") and not params.get("blocks"):
        return "no_text", [], None
    problem = metadata_problem(params.get("metadata"))
    if problem is not None:
        return problem, [], None
    if "blocks" in params:
        problems = block_errors(params["blocks"])
        if problems:
            return "invalid_blocks", problems, None
    return None, [], None


def webhook_problem(payload: Any) -> str | None:
    """Why an incoming webhook refuses this payload (HTTP 400), or None."""
    if not isinstance(payload, dict):
        return "invalid_payload"
    if not payload.get("text") and not payload.get("blocks"):
        return "no_text"
    if "blocks" in payload and block_errors(payload["blocks"]):
        return "invalid_blocks"
    return None


def flag(value: Any) -> bool:
    """A Slack boolean parameter: JSON true, or "true"/"1" in a form or query string."""
    return value is True or str(value).lower() in ("1", "true")


def _encode_cursor(offset: int) -> str:
    return base64.b64encode(f"fake-offset:{offset}".encode()).decode()


def _decode_cursor(cursor: str) -> int | None:
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    prefix, _, number = text.partition(":")
    return int(number) if prefix == "fake-offset" and number.isdigit() else None


class Conversations:
    """Channels and their messages (shared with the server's records). Not thread-safe: the server
    calls it under its lock."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self._messages = messages
        self._ids: dict[str, str] = {}
        # Slack caps `limit` on these methods (15 for apps outside the Marketplace); tests can too.
        self.max_page_size = 999

    def channel_id(self, channel: str, *, create: bool = True) -> str | None:
        """The id for a channel name or id; a new name gets an id when `create`."""
        if channel in self._ids.values():
            return channel
        if channel.startswith(("C", "G", "D")) and channel[1:].isalnum() and channel.isupper():
            return None  # looks like an id, but not one of ours
        name = channel.lstrip("#")
        if name not in self._ids and create:
            self._ids[name] = f"C{len(self._ids) + 1:08d}"
        return self._ids.get(name)

    def _page(self, found: list[dict[str, Any]], params: dict[str, Any]) -> SlackAnswer:
        try:
            limit = int(params.get("limit") or 100)
        except ValueError:
            return {"ok": False, "error": "invalid_limit"}
        limit = max(1, min(limit, self.max_page_size))
        start = 0
        if params.get("cursor"):
            decoded = _decode_cursor(str(params["cursor"]))
            if decoded is None:
                return {"ok": False, "error": "invalid_cursor"}
            start = decoded
        page = found[start : start + limit]
        more = start + limit < len(found)
        with_metadata = flag(params.get("include_all_metadata"))
        return {
            "ok": True,
            "messages": [self._public(m, with_metadata=with_metadata) for m in page],
            "has_more": more,
            "response_metadata": {"next_cursor": _encode_cursor(start + limit) if more else ""},
        }

    @staticmethod
    def _public(message: dict[str, Any], *, with_metadata: bool) -> dict[str, Any]:
        shown: dict[str, Any] = {"type": "message", "text": message["text"], "ts": message["ts"], "bot_id": "B000"}
        if message.get("thread_ts"):
            shown["thread_ts"] = message["thread_ts"]
        if message.get("blocks"):
            shown["blocks"] = message["blocks"]
        if with_metadata and message.get("metadata") is not None:
            shown["metadata"] = message["metadata"]
        return shown

    @staticmethod
    def _in_window(ts: str, params: dict[str, Any]) -> bool:
        inclusive = flag(params.get("inclusive"))
        value = float(ts)
        oldest = float(params.get("oldest") or 0)
        latest = float(params["latest"]) if params.get("latest") else float("inf")
        if inclusive:
            return oldest <= value <= latest
        return oldest < value < latest

    def _in_channel(self, channel_id: str) -> list[dict[str, Any]]:
        return [m for m in self._messages if m.get("channel_id") == channel_id]

    def history(self, params: dict[str, Any]) -> SlackAnswer:
        channel_id = self.channel_id(str(params.get("channel") or ""), create=False)
        if channel_id is None or channel_id != params.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        top_level = [
            m
            for m in self._in_channel(channel_id)
            if m.get("thread_ts") in (None, m["ts"]) and self._in_window(m["ts"], params)
        ]
        top_level.sort(key=lambda m: float(m["ts"]), reverse=True)
        return self._page(top_level, params)

    def replies(self, params: dict[str, Any]) -> SlackAnswer:
        channel_id = self.channel_id(str(params.get("channel") or ""), create=False)
        if channel_id is None or channel_id != params.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        root_ts = str(params.get("ts") or "")
        messages = self._in_channel(channel_id)
        parent = next((m for m in messages if m["ts"] == root_ts), None)
        if parent is None:
            return {"ok": False, "error": "thread_not_found"}
        replies = [m for m in messages if m.get("thread_ts") == root_ts and m["ts"] != root_ts]
        replies = sorted((m for m in replies if self._in_window(m["ts"], params)), key=lambda m: float(m["ts"]))
        # Slack always answers the parent first.
        return self._page([parent, *replies], params)
