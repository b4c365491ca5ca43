"""The audit views for `prime-cost-monitor status`: the action log and the protections, as plain
text (one line per record, widths fitted to the content) and as JSON-able data.

The text is plain: print it with `print()` or `Console.print(text, markup=False, highlight=False)`
so a run name containing `[red]` is shown as written, not read as markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from monitor.alerts.words import format_metric_value, safe_text
from monitor.records import ActionRecord

_REASON_WIDTH = 90


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _short_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def value_and_limit(record: ActionRecord) -> str:
    """'$52.10 / $50.00' from the newest reading in the evidence, '' when there is none."""
    reading = record.evidence.last_reading
    if reading is None:
        return ""
    shown = format_metric_value(reading.metric, reading.value)
    cap = format_metric_value(reading.metric, reading.limit)
    return f"{shown} / {cap}".replace(" tokens", "")


def action_as_json(record: ActionRecord) -> dict[str, Any]:
    schedule = record.evidence.schedule
    return {
        "id": record.id,
        "created_at": record.created_at,
        "time": _iso(record.created_at),
        "run_id": record.run_id,
        "rule": record.rule,
        "decision": record.decision,
        "dry_run": record.dry_run,
        "reason": record.reason,
        "intent_id": record.intent_id,
        "config_hash": record.config_hash,
        "deadline": _iso(schedule.deadline) if schedule is not None else None,
        "evidence": record.evidence.to_json(),
    }


def actions_as_json(records: Sequence[ActionRecord]) -> list[dict[str, Any]]:
    """`status --actions --json`: every field of every record, times also in ISO 8601 UTC."""
    return [action_as_json(record) for record in records]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(cells)).rstrip()

    return "\n".join([line(header), line(["-" * width for width in widths]), *(line(row) for row in rows)])


def render_actions(records: Sequence[ActionRecord], *, title: str = "Enforcement action log (newest first)") -> str:
    """`status --actions`: one line per decision; `ref` is the record it completes (intent or pending)."""
    if not records:
        return f"{title}\nNo enforcement actions recorded."
    header = ("id", "time (UTC)", "run", "rule", "decision", "mode", "value / limit", "ref", "reason")
    rows = []
    for record in records:
        reason = safe_text(record.reason, limit=_REASON_WIDTH)
        rows.append(
            (
                str(record.id if record.id is not None else ""),
                _short_time(record.created_at),
                safe_text(record.run_id, limit=40),
                safe_text(record.rule, limit=30),
                record.decision,
                "dry run" if record.dry_run else "live",
                value_and_limit(record),
                "" if record.intent_id is None else f"#{record.intent_id}",
                reason,
            )
        )
    return f"{title}\n{_table(header, rows)}"
