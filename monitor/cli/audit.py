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
from monitor.config.durations import format_duration
from monitor.records import ActionRecord

_REASON_WIDTH = 90
_READING_SOURCES = ("poll", "reread")


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _short_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _last_reading(record: ActionRecord) -> dict[str, Any] | None:
    readings = [entry for entry in record.evidence if entry.get("source") in _READING_SOURCES]
    return readings[-1] if readings else None


def _schedule(record: ActionRecord) -> dict[str, Any] | None:
    return next((entry for entry in record.evidence if entry.get("source") == "schedule"), None)


def value_and_limit(record: ActionRecord) -> str:
    """'$52.10 / $50.00' from the newest reading in the evidence, '' when there is none."""
    reading = _last_reading(record)
    if reading is None:
        return ""
    metric = str(reading.get("metric", "total_cost_usd"))
    value, limit = reading.get("value"), reading.get("limit")
    shown = format_metric_value(metric, None if value is None else float(value))
    cap = format_metric_value(metric, None if limit is None else float(limit))
    return f"{shown} / {cap}".replace(" tokens", "")


def action_as_json(record: ActionRecord) -> dict[str, Any]:
    schedule = _schedule(record)
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
        "deadline": _iso(schedule["deadline"]) if schedule and schedule.get("deadline") is not None else None,
        "evidence": record.evidence,
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


def describe_evidence(entry: dict[str, Any]) -> str:
    """One evidence entry as a line: a reading, the countdown, or a failed DELETE attempt."""
    source = entry.get("source")
    if source in _READING_SOURCES:
        metric = str(entry.get("metric", "total_cost_usd"))
        value, limit = entry.get("value"), entry.get("limit")
        label = "re-read" if source == "reread" else "reading"
        return (
            f"{label} {_short_time(float(entry['taken_at']))} UTC: {metric} "
            f"{format_metric_value(metric, None if value is None else float(value))} "
            f"(limit {format_metric_value(metric, None if limit is None else float(limit))}), "
            f"total ${float(entry.get('total_cost_usd', 0.0)):,.2f}, "
            f"{entry.get('record_count', '?')} usage records, status {safe_text(entry.get('status') or '?', limit=20)}"
        )
    if source == "schedule":
        grace = format_duration(float(entry.get("grace_period", 0.0)))
        return f"countdown: deadline {_short_time(float(entry['deadline']))} UTC (grace {grace})"
    if source == "attempt":
        return (
            f"DELETE attempt {entry.get('attempt')} of {entry.get('of')} for intent #{entry.get('intent_id')} failed: "
            f"{safe_text(entry.get('error', ''), limit=200)}; retry at {_short_time(float(entry['retry_at']))} UTC"
        )
    return safe_text(entry, limit=200)
