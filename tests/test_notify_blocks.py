"""Rendering: Block Kit blocks, the plain-text fallback, the console lines, the webhook document."""

from __future__ import annotations

import io
import json

import pytest
from pydantic import SecretStr

from monitor.config.settings import NotifySettings, SlackSettings, WebhookSettings
from monitor.notify import (
    ConsoleNotifier,
    SlackNotifier,
    SlackWebhookNotifier,
    WebhookNotifier,
    build_notifiers,
    fallback_text,
    slack_blocks,
    webhook_document,
)
from monitor.notify.blocks import clip, escape, slack_length
from monitor.records import Notification
from tests.support.fake_slack import block_errors

HOSTILE = [
    "quote \" and ' inside",
    "back\\slash \\n not a newline",
    "new\nline\r\nand\ttab",
    "emoji 🔥💸👩‍👩‍👧 and ünïcødé",
    "<!channel> wake up",
    "<@U123> and <#C999|general> and <!here>",
    "<https://evil.example|click me>",
    "fish & chips &amp; already-escaped &lt;",
    "*bold* _italic_ ~strike~ `code` ```block```",
    "x" * 1024,
    "🔥" * 600,
    "&" * 400,
]


def make_notification(**overrides: object) -> Notification:
    values: dict[str, object] = {
        "kind": "alert",
        "dedup_key": "run-1/run-cap/1/2",
        "thread_key": "run-1/run-cap/1",
        "severity": "critical",
        "title": "Run exp-42 passed its budget",
        "text": "Total cost $51.20 is over the $50.00 cap.",
        "created_at": 1_800_000_000.0,
        "subject": "run-1",
        "rule": "run-cap",
        "fields": (("Run", "exp-42"), ("Cost", "$51.20"), ("Limit", "$50.00")),
        "link": "https://app.primeintellect.ai/dashboard/training/run-1",
    }
    values.update(overrides)
    return Notification(**values)  # type: ignore[arg-type]


def all_texts(blocks: list[dict[str, object]]) -> list[str]:
    """Every string a Slack client would render from these blocks."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(blocks)
    return found


def test_blocks_show_title_text_fields_and_a_link_to_the_run() -> None:
    blocks = slack_blocks(make_notification())

    assert blocks[0]["type"] == "header"
    assert "Run exp-42 passed its budget" in blocks[0]["text"]["text"]
    texts = "\n".join(all_texts(blocks))
    assert "Total cost $51.20 is over the $50.00 cap." in texts
    assert "*Run*\nexp-42" in texts and "*Limit*\n$50.00" in texts
    assert "CRITICAL" in texts and "run-cap" in texts
    buttons = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert buttons[0]["url"] == "https://app.primeintellect.ai/dashboard/training/run-1"
    assert block_errors(blocks) == []


def test_fallback_text_carries_the_same_facts_in_plain_text() -> None:
    text = fallback_text(make_notification())

    assert "[CRITICAL] Run exp-42 passed its budget" in text
    assert "Total cost $51.20 is over the $50.00 cap." in text
    assert "Run: exp-42" in text and "Limit: $50.00" in text
    assert "https://app.primeintellect.ai/dashboard/training/run-1" in text


def test_no_link_means_no_button_and_a_non_web_link_is_not_linked() -> None:
    assert not [b for b in slack_blocks(make_notification(link=None)) if b["type"] == "actions"]
    blocks = slack_blocks(make_notification(link="javascript:alert(1)"))
    assert not [b for b in blocks if b["type"] == "actions"]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_strings_are_escaped_and_fit_slack_limits(hostile: str) -> None:
    notification = make_notification(
        title=f"Run {hostile} passed its budget",
        text=f"The run {hostile} is over.",
        subject=hostile,
        rule=hostile,
        fields=((hostile, hostile), ("Run", hostile)),
    )
    blocks = slack_blocks(notification)
    fallback = fallback_text(notification)

    assert block_errors(blocks) == []
    for text in [*all_texts(blocks), fallback]:
        # No raw control sequence survives: no mention, no forged link.
        assert "<!" not in text and "<@" not in text and "<#" not in text and "<http" not in text
        assert ">" not in text.replace("&gt;", "")
        # Every '&' starts one of the three entities (nothing half-cut by truncation).
        stripped = text.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "")
        assert "&" not in stripped
    header = blocks[0]["text"]["text"]
    assert slack_length(header) <= 150
    if "<!channel>" in hostile:
        assert "&lt;!channel&gt;" in fallback


def test_many_long_fields_are_split_and_cut_within_limits() -> None:
    fields = tuple((f"Field {i} " + "L" * 300, "V" * 5000) for i in range(45))
    blocks = slack_blocks(make_notification(fields=fields, text="T" * 10_000, title="H" * 400))

    assert block_errors(blocks) == []
    assert len(blocks) <= 50
    field_sections = [b for b in blocks if b["type"] == "section" and "fields" in b]
    assert field_sections and all(len(b["fields"]) <= 10 for b in field_sections)
    for section in field_sections:
        for field in section["fields"]:
            assert slack_length(field["text"]) <= 2000
            assert field["text"].endswith("…")
    # Fields past the shown sections are summarised, not dropped silently.
    assert "Field 44" in "\n".join(all_texts(blocks))
    assert blocks[0]["text"]["text"].endswith("…")


def test_clip_never_splits_an_entity_or_an_emoji() -> None:
    for length in range(1, 12):
        clipped = clip(escape("&" * 20), length)
        assert slack_length(clipped) <= length
        assert clipped.replace("&amp;", "").strip("…") == ""
    emoji = clip("🔥" * 10, 6)
    assert slack_length(emoji) <= 6 and emoji == "🔥🔥…"
    assert clip("short", 10) == "short"


def test_empty_text_and_no_fields_still_make_valid_blocks() -> None:
    blocks = slack_blocks(make_notification(text="  ", fields=(), subject="", rule=""))
    assert block_errors(blocks) == []
    assert [b["type"] for b in blocks] == ["header", "context", "actions"]


def test_resolve_and_delete_kinds_get_their_own_badge() -> None:
    resolved = slack_blocks(make_notification(kind="resolve", severity="info", title="Back under budget"))
    deleted = slack_blocks(make_notification(kind="delete_done", title="Deleted exp-42"))
    assert resolved[0]["text"]["text"].startswith(":white_check_mark:")
    assert deleted[0]["text"]["text"].startswith(":wastebasket:")


def test_webhook_document_has_every_field() -> None:
    notification = make_notification(fields=(("Run", "exp-42"), ("Run", "again")))
    document = webhook_document(notification)

    assert document == {
        "kind": "alert",
        "severity": "critical",
        "title": "Run exp-42 passed its budget",
        "text": "Total cost $51.20 is over the $50.00 cap.",
        "subject": "run-1",
        "rule": "run-cap",
        "fields": {"Run": "exp-42", "Run (2)": "again"},
        "link": "https://app.primeintellect.ai/dashboard/training/run-1",
        "dedup_key": "run-1/run-cap/1/2",
        "created_at": 1_800_000_000.0,
    }
    assert json.loads(json.dumps(document)) == document


async def test_console_writes_readable_lines_without_control_characters() -> None:
    stream = io.StringIO()
    console = ConsoleNotifier(stream)
    hostile = make_notification(title="Run \x1b[31mred\x1b[0m\nsecond line", fields=(("Run", "a\rb"),))

    first = await console.send(hostile, thread_ref=None)
    await console.send(make_notification(kind="resolve", severity="info", title="Back to normal"), thread_ref=first)

    lines = stream.getvalue().splitlines()
    assert "CRITICAL" in lines[0] and "Run ?[31mred?[0m second line" in lines[0]
    assert "\x1b" not in stream.getvalue()
    assert any("Run: a b" in line for line in lines)
    assert any("↳" in line and "INFO" in line and "Back to normal" in line for line in lines)
    assert first == hostile.dedup_key


def test_build_notifiers_follows_the_config() -> None:
    token = SecretStr("xoxb-build-notifiers-token")
    both = NotifySettings(
        slack=SlackSettings(token=token, channel="#b", webhook_url=SecretStr("https://hooks.slack.test/x")),
        webhook=WebhookSettings(url=SecretStr("https://hooks.example/notify?key=abc")),
        console=True,
    )
    kinds = [type(n) for n in build_notifiers(both)]
    assert kinds == [SlackNotifier, WebhookNotifier, ConsoleNotifier]
    assert [n.channel for n in build_notifiers(both)] == ["slack", "webhook", "console"]

    webhook_only = NotifySettings(slack=SlackSettings(webhook_url=SecretStr("https://hooks.slack.test/x")))
    assert [type(n) for n in build_notifiers(webhook_only)] == [SlackWebhookNotifier]
    assert build_notifiers(NotifySettings()) == []
    # The secrets never show in a repr.
    assert "xoxb" not in repr(build_notifiers(both)) and "key=abc" not in repr(build_notifiers(both))
