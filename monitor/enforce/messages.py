"""The words of enforcement: the announcement before a delete, the result after, and the loud ones.

Built only from what the action log keeps (run, rule, episode, readings, deadline), so a message
re-derived after a restart carries the same dedup key and the outbox drops it as a repeat. Keys:
  delete_pending:{run}:{rule}:p{episode}   the announcement (one per episode)
  delete_result:{run}:{rule}:p{episode}    whatever concluded the episode (one per episode)
  delete_cap_reached:{window}              the hourly cap filled (one per window)
Episode = id of the episode's first delete_pending record. Results reply in the announcement's thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from monitor.alerts.words import format_metric_value, safe_text
from monitor.config.durations import format_duration
from monitor.enforce.evidence import Projection, Reading
from monitor.records import Notification, NotificationKind


def utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True, slots=True)
class DeleteContext:
    run_id: str
    run_name: str | None
    rule: str
    episode: int
    dry_run: bool
    link: str | None = None

    @property
    def name(self) -> str:
        return safe_text(self.run_name or self.run_id)

    @property
    def thread_key(self) -> str:
        return f"delete:{self.run_id}:{self.rule}:p{self.episode}"

    @property
    def pending_key(self) -> str:
        return f"delete_pending:{self.run_id}:{self.rule}:p{self.episode}"

    @property
    def result_key(self) -> str:
        return f"delete_result:{self.run_id}:{self.rule}:p{self.episode}"

    def base_fields(self) -> list[tuple[str, str]]:
        return [
            ("Run", self.name),
            ("Run ID", safe_text(self.run_id)),
            ("Rule", safe_text(self.rule, limit=100)),
            ("Mode", "dry run (nothing is deleted)" if self.dry_run else "live"),
        ]


def reading_line(reading: Reading) -> str:
    shown = format_metric_value(reading.metric, reading.value)
    cap = format_metric_value(reading.metric, reading.limit)
    status = safe_text(reading.status or "?", limit=20)
    source = " (re-read before the delete)" if reading.source == "reread" else ""
    records = "?" if reading.record_count is None else reading.record_count
    return f"{utc(reading.taken_at)}: {shown} (limit {cap}, {records} usage records, {status}){source}"


def _readings_text(readings: Sequence[Reading]) -> str:
    return "\n".join(f"• {reading_line(reading)}" for reading in readings)


def _value_fields(readings: Sequence[Reading]) -> list[tuple[str, str]]:
    if not readings:
        return []
    last = readings[-1]
    return [
        ("Value", format_metric_value(last.metric, last.value)),
        ("Limit", format_metric_value(last.metric, last.limit)),
    ]


def pending_notice(
    ctx: DeleteContext,
    *,
    readings: Sequence[Reading],
    deadline: float,
    grace_period: float,
    now: float,
    note: str | None = None,
    projection: Projection | None = None,
) -> Notification:
    """The announcement: on readings over the limit, or (`projection`) ahead of a crossing a steady burn
    will reach within the grace period."""
    verb = "Would delete" if ctx.dry_run else "Deleting"
    when = "now" if grace_period <= 0 else f"in {format_duration(grace_period)}"
    rule = safe_text(ctx.rule, limit=100)
    where = f"about to cross {rule}" if projection is not None else f"over {rule}"
    title = f"⏳ {verb} run {ctx.name} {when}: {where}"
    confirm = " once fresh readings confirm the crossing" if projection is not None else ""
    if ctx.dry_run:
        plan = (
            f"Dry run (enforce.dry_run is on): nothing will be deleted. At {utc(deadline)}{confirm} the monitor"
            " re-reads the run and records that it would have deleted it."
        )
    else:
        plan = (
            f"At {utc(deadline)}{confirm} the monitor re-reads the run and deletes it if it is still over the"
            " limit, still running and not protected."
        )
    if projection is None:
        what = (
            f"Run {ctx.name} ({safe_text(ctx.run_id)}) is over rule {rule} on {len(readings)} consecutive"
            " fresh readings:"
        )
    else:
        what = (
            f"Run {ctx.name} ({safe_text(ctx.run_id)}) is projected to reach rule {rule} in about"
            f" {format_duration(projection.time_to_limit or 0.0)}: it burns ${projection.rate_per_hour:,.2f}/h,"
            f" steadily over {projection.landings} usage landings. The countdown starts now so that you get the"
            " whole grace period; if the run slows down or stops first, it is called off. The latest reading:"
        )
    text = "\n".join(
        [
            what,
            _readings_text(readings),
            plan,
            *([note] if note else []),
            f"To stop it: `prime-cost-monitor protect {safe_text(ctx.run_id)}`",
        ]
    )
    fields = [*ctx.base_fields(), *_value_fields(readings), ("Deadline", utc(deadline))]
    return Notification(
        kind="delete_pending",
        dedup_key=ctx.pending_key,
        thread_key=ctx.thread_key,
        severity="critical",
        title=title,
        text=text,
        created_at=now,
        subject=ctx.run_id,
        rule=ctx.rule,
        fields=tuple(fields),
        link=ctx.link,
    )


# decision -> (kind, severity, title template)
_RESULTS: dict[str, tuple[NotificationKind, str, str]] = {
    "deleted": ("delete_done", "critical", "🗑️ Deleted run {name}: over {rule}"),
    "reconciled": ("delete_done", "critical", "🗑️ Deleted run {name}: over {rule} (completed after a restart)"),
    "would_delete": ("delete_done", "warning", "🗑️ Would delete run {name} (dry run): over {rule}"),
    "already_gone": ("delete_done", "info", "Run {name} was already gone: nothing to delete"),
    "cancelled": ("resolve", "info", "✅ Delete of run {name} cancelled"),
    "refused": ("delete_refused", "critical", "⛔ Delete of run {name} refused: the hourly delete cap is reached"),
    "failed": ("delete_failed", "critical", "❌ Delete of run {name} failed: the run may still be running"),
}


def result_notice(
    ctx: DeleteContext, *, decision: str, reason: str, readings: Sequence[Reading], now: float
) -> Notification:
    kind, severity, template = _RESULTS[decision]
    title = template.format(name=ctx.name, rule=safe_text(ctx.rule, limit=100))
    lines = [reason[:1].upper() + reason[1:] + ("" if reason.endswith(".") else ".")]
    if readings:
        lines += ["Evidence:", _readings_text(readings)]
    if decision == "would_delete":
        lines.append("To delete for real, set enforce.dry_run: false and reload the config (SIGHUP) or restart.")
    if decision == "failed":
        lines.append(f"Delete it by hand if it must stop: `prime train delete {safe_text(ctx.run_id)} -f`")
    if decision == "refused":
        lines.append(f"Delete it by hand if it must stop: `prime train delete {safe_text(ctx.run_id)} -f`")
    return Notification(
        kind=kind,
        dedup_key=ctx.result_key,
        thread_key=ctx.thread_key,
        severity=severity,
        title=title,
        text="\n".join(lines),
        created_at=now,
        subject=ctx.run_id,
        rule=ctx.rule,
        fields=tuple([*ctx.base_fields(), *_value_fields(readings)]),
        link=ctx.link,
    )


def stopped_notice(ctx: DeleteContext, *, reason: str, now: float) -> Notification:
    """The API refused the key during a delete: the result of this episode, and loud (top level)."""
    return Notification(
        kind="enforcement_stopped",
        dedup_key=ctx.result_key,
        thread_key="",
        severity="critical",
        title="🛑 Enforcement stopped: the API refused the key (401)",
        text="\n".join(
            [
                f"While deleting run {ctx.name} ({safe_text(ctx.run_id)}) for rule {safe_text(ctx.rule, limit=100)}:"
                f" {reason}.",
                "No run will be deleted until the config is reloaded (SIGHUP) or the daemon restarted."
                " Check PRIME_API_KEY and the key's team access.",
                f"Run {ctx.name} may still be running.",
            ]
        ),
        created_at=now,
        subject=ctx.run_id,
        rule=ctx.rule,
        fields=tuple(ctx.base_fields()),
        link=ctx.link,
    )


def cap_notice(
    *,
    window_key: str,
    count: int,
    limit: int,
    dry_run: bool,
    refused: DeleteContext,
    reopens_at: float | None,
    now: float,
) -> Notification:
    done = "would-be deletes (dry run)" if dry_run else "deletes"
    reopen = f" The next delete is allowed after {utc(reopens_at)}." if reopens_at is not None else ""
    return Notification(
        kind="delete_cap_reached",
        dedup_key=f"delete_cap_reached:{window_key}",
        thread_key="",
        severity="critical",
        title=f"🛑 Delete cap reached: {count} {done} in the last hour (enforce.max_deletes_per_hour = {limit})",
        text=(
            f"Further deletes are refused until the hour window has room.{reopen}"
            f" First refused: run {refused.name} ({safe_text(refused.run_id)}),"
            f" rule {safe_text(refused.rule, limit=100)}."
            " Runs over their caps keep running: check `prime-cost-monitor status --actions`."
        ),
        created_at=now,
        subject=refused.run_id,
        rule=refused.rule,
        fields=(("Deletes in the last hour", str(count)), ("Cap", str(limit))),
    )


def pending_reason(*, confirmations: int, projection: Projection | None, deadline: float, dry_run: bool) -> str:
    """The action log's reason for a countdown: what started it and when the delete may land."""
    verb = "would delete (dry run)" if dry_run else "delete"
    if projection is None:
        why = f"over the limit on {confirmations} consecutive fresh readings"
    else:
        why = (
            f"projected to reach the limit in {format_duration(projection.time_to_limit or 0.0)} at"
            f" ${projection.rate_per_hour:,.2f}/h ({projection.landings} usage landings)"
        )
    return (
        f"{why}: {verb} at {utc(deadline)} at the earliest, once fresh readings confirm it,"
        " unless it is back under the limit, finished or protected"
    )


def advanced_notice(
    ctx: DeleteContext,
    *,
    readings: Sequence[Reading],
    deadline: float,
    was: float,
    rate_per_hour: float,
    overspend_cap: float,
    now: float,
) -> Notification:
    """The countdown's deadline brought forward (once per episode, in its thread): the run crossed
    burning faster than the announcement assumed."""
    verb = "would delete" if ctx.dry_run else "deletes"
    text = "\n".join(
        [
            f"Run {ctx.name} ({safe_text(ctx.run_id)}) crossed its limit burning ${rate_per_hour:,.2f}/h: waiting"
            f" until {utc(was)} would spend more than {overspend_cap:.0%} of the limit past it"
            " (enforce.grace_overspend_cap). The confirming readings:",
            _readings_text(readings),
            f"At {utc(deadline)} the monitor re-reads the run and {verb} it if it is still over the limit, still"
            " running and not protected.",
            f"To stop it: `prime-cost-monitor protect {safe_text(ctx.run_id)}`",
        ]
    )
    return Notification(
        kind="delete_pending",
        dedup_key=f"delete_advanced:{ctx.run_id}:{ctx.rule}:p{ctx.episode}",
        thread_key=ctx.thread_key,
        severity="critical",
        title=f"⏩ Deadline for run {ctx.name} brought forward to {utc(deadline)}",
        text=text,
        created_at=now,
        subject=ctx.run_id,
        rule=ctx.rule,
        fields=tuple([*ctx.base_fields(), *_value_fields(readings), ("Deadline", utc(deadline))]),
        link=ctx.link,
    )
