"""Rendering a Notification for Slack: Block Kit blocks plus the plain-text fallback.

Every user-controlled string (run names, rule names, field values) is escaped (&, <, >) so a run
named `<!channel>` cannot ping a channel or forge a link, and every text is cut to Slack's limits
without splitting an escape sequence.
"""

from __future__ import annotations

from typing import Any

from monitor.records import Notification

# Slack Block Kit limits (docs.slack.dev, block reference).
HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
FIELD_MAX = 2000
FIELDS_PER_SECTION = 10
CONTEXT_TEXT_MAX = 3000
BUTTON_TEXT_MAX = 75
BUTTON_URL_MAX = 3000
BLOCKS_MAX = 50
# The top-level `text` may be 40k, but Slack truncates notifications long before; keep it readable.
FALLBACK_MAX = 3000
# A message carries at most this many field sections; more fields are summarised in one line.
FIELD_SECTIONS_MAX = 4
ELLIPSIS = "…"

SEVERITY_EMOJI = {
    "critical": ":rotating_light:",
    "warning": ":warning:",
    "info": ":information_source:",
}
KIND_EMOJI = {
    "resolve": ":white_check_mark:",
    "delete_pending": ":hourglass_flowing_sand:",
    "delete_done": ":wastebasket:",
    "delete_refused": ":no_entry:",
    "delete_failed": ":x:",
    "delete_cap_reached": ":octagonal_sign:",
    "enforcement_stopped": ":octagonal_sign:",
}


def escape(text: str) -> str:
    """Slack's three control characters as HTML entities (the only escaping Slack wants)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_length(text: str) -> int:
    """Length as Slack counts it, conservatively: UTF-16 code units (an emoji counts twice)."""
    return len(text.encode("utf-16-le")) // 2


def clip(text: str, limit: int) -> str:
    """Cut already-escaped text to `limit` Slack characters, ending in '…', never mid-entity."""
    if slack_length(text) <= limit:
        return text
    budget = limit - slack_length(ELLIPSIS)
    cut: list[str] = []
    used = 0
    for char in text:
        width = slack_length(char)
        if used + width > budget:
            break
        cut.append(char)
        used += width
    clipped = "".join(cut)
    # An entity is at most 5 characters ("&amp;"): drop a partial one at the end.
    amp = clipped.rfind("&", max(0, len(clipped) - 5))
    if amp != -1 and ";" not in clipped[amp:]:
        clipped = clipped[:amp]
    return clipped + ELLIPSIS


def safe(text: str, limit: int) -> str:
    """Escape user text, then fit it to a limit. Empty text becomes a visible dash (Slack rejects '')."""
    return clip(escape(text), limit) if text.strip() else "-"


def badge(notification: Notification) -> str:
    return KIND_EMOJI.get(notification.kind) or SEVERITY_EMOJI.get(notification.severity, ":bell:")


def _is_web_link(link: str | None) -> bool:
    return bool(link) and str(link).startswith(("https://", "http://")) and len(str(link)) <= BUTTON_URL_MAX


def fallback_text(notification: Notification) -> str:
    """The plain-text version: shown in push notifications and by clients that cannot draw blocks."""
    lines = [f"{badge(notification)} [{notification.severity.upper()}] {escape(notification.title)}"]
    if notification.text.strip():
        lines.append(escape(notification.text))
    lines.extend(f"{escape(label)}: {escape(value)}" for label, value in notification.fields)
    if _is_web_link(notification.link):
        lines.append(escape(str(notification.link)))
    return clip("\n".join(lines), FALLBACK_MAX)


def _field(label: str, value: str) -> dict[str, str]:
    heading = f"*{safe(label, 200)}*\n"
    return {"type": "mrkdwn", "text": heading + safe(value, FIELD_MAX - slack_length(heading))}


def _field_sections(fields: tuple[tuple[str, str], ...]) -> list[dict[str, Any]]:
    sections: list[dict[str, Any]] = []
    shown = fields[: FIELDS_PER_SECTION * FIELD_SECTIONS_MAX]
    for start in range(0, len(shown), FIELDS_PER_SECTION):
        chunk = shown[start : start + FIELDS_PER_SECTION]
        sections.append({"type": "section", "fields": [_field(label, value) for label, value in chunk]})
    hidden = fields[len(shown) :]
    if hidden:
        # Short per field so every hidden field at least shows its name.
        summary = "; ".join(clip(escape(f"{label}: {value}"), 200) for label, value in hidden)
        text = clip(f"*{len(hidden)} more:* {summary}", SECTION_TEXT_MAX)
        sections.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    return sections


def slack_blocks(notification: Notification) -> list[dict[str, Any]]:
    """Block Kit for one notification: header, text, fields, context line and a link to the run."""
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": clip(f"{badge(notification)} {escape(notification.title)}", HEADER_MAX),
                "emoji": True,
            },
        }
    ]
    if notification.text.strip():
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": safe(notification.text, SECTION_TEXT_MAX)}}
        )
    blocks.extend(_field_sections(notification.fields))
    context = [f"*{escape(notification.severity.upper())}*", escape(notification.kind.replace("_", " "))]
    if notification.rule:
        context.append(f"rule `{escape(notification.rule)}`")
    if notification.subject:
        context.append(f"subject `{escape(notification.subject)}`")
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(" · ".join(context), CONTEXT_TEXT_MAX)}]}
    )
    if _is_web_link(notification.link):
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open run", "emoji": True},
                        "url": str(notification.link),
                        "action_id": "open_run",
                    }
                ],
            }
        )
    return blocks[:BLOCKS_MAX]
