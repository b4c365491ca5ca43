"""How the state store's rows map to the shared types and back: one codec per table, each decode
checked so a damaged row is a StoreError naming what failed.

A reading is stored as a JSON array in a frozen layout (READING_LAYOUTS): the field names were most of
every row. Add a layout with the next number; never edit a released one, rows keep theirs.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from monitor.enforce.evidence import Evidence
from monitor.records import ActionRecord, AlertState, Notification, OutboxItem
from monitor.snapshots import RunSnapshot, WalletSnapshot
from monitor.store.schema import StoreError

_Decoded = TypeVar("_Decoded")
_Args = ParamSpec("_Args")


def row_codec(decode: Callable[_Args, _Decoded]) -> Callable[_Args, _Decoded]:
    """A row that cannot be decoded (a page damaged inside a row passes SQLite's own checks) is a
    StoreError naming what failed, never a stray ValueError or KeyError from deep in a job."""

    @functools.wraps(decode)
    def checked(*args: _Args.args, **kwargs: _Args.kwargs) -> _Decoded:
        try:
            return decode(*args, **kwargs)
        except (ValueError, TypeError, LookupError, AttributeError) as exc:
            raise StoreError(f"a damaged row in the state store ({decode.__name__}): {type(exc).__name__}") from exc

    return checked


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def encode_run_snapshot(data: dict[str, Any]) -> str:
    """A reading as stored before schema version 3 (still read; see encode_run_reading)."""
    # run_id and taken_at live in their own columns; leaving them out of the JSON keeps one source of truth.
    return dumps({k: v for k, v in data.items() if k not in ("run_id", "taken_at")})


# Since schema version 3 a reading is stored as a JSON array, `[layout, value, ...]`, in the order its
# layout names: the field names were 60 % of every row. The layouts are frozen here (not read from
# RunSnapshot), so a field added to RunSnapshot gets a new layout and old rows still read. Rows written
# before (a JSON object) read as they always did.
READING_LAYOUTS: dict[int, tuple[str, ...]] = {
    1: (
        "run_name",
        "base_model",
        "status",
        "team_id",
        "training_tokens",
        "inference_input_tokens",
        "inference_output_tokens",
        "training_cost_usd",
        "inference_cost_usd",
        "total_tokens",
        "total_cost_usd",
        "training_price_per_mtok",
        "inference_input_price_per_mtok",
        "inference_output_price_per_mtok",
        "record_count",
        "inference_input_cost_estimate_usd",
    ),
}
READING_LAYOUT = 1


def encode_run_reading(snapshot: RunSnapshot) -> str:
    """A reading as stored (run_id and taken_at live in their own columns)."""
    return dumps([READING_LAYOUT, *(getattr(snapshot, name) for name in READING_LAYOUTS[READING_LAYOUT])])


@row_codec
def decode_run_snapshot(run_id: str, taken_at: float, data: str) -> RunSnapshot:
    raw = json.loads(data)
    if isinstance(raw, list):
        layout = READING_LAYOUTS[raw[0]]
        if len(raw) != len(layout) + 1:
            raise ValueError(f"a reading of layout {raw[0]} has {len(raw) - 1} values, not {len(layout)}")
        raw = dict(zip(layout, raw[1:], strict=True))
    return RunSnapshot.from_dict({**raw, "run_id": run_id, "taken_at": taken_at})


@row_codec
def decode_wallet_snapshot(taken_at: float, data: str) -> WalletSnapshot:
    return WalletSnapshot.from_dict({**json.loads(data), "taken_at": taken_at})


@row_codec
def decode_notification(data: str) -> Notification:
    raw = json.loads(data)
    known = {k: v for k, v in raw.items() if k in Notification.__dataclass_fields__}
    known["fields"] = tuple((str(name), str(value)) for name, value in known.get("fields", ()))
    return Notification(**known)


ALERT_COLUMNS = "subject, rule, tier, episode, opened_at, last_notified_at, last_value, severity"
ACTION_COLUMNS = "id, run_id, rule, decision, reason, created_at, config_hash, dry_run, evidence, intent_id"


def encode_alert(state: AlertState) -> tuple[Any, ...]:
    """In ALERT_COLUMNS order."""
    return (
        state.subject,
        state.rule,
        state.tier,
        state.episode,
        state.opened_at,
        state.last_notified_at,
        state.last_value,
        state.severity,
    )


@row_codec
def decode_alert(row: tuple[Any, ...]) -> AlertState:
    subject, rule, tier, episode, opened_at, last_notified_at, last_value, severity = row
    return AlertState(
        subject=subject,
        rule=rule,
        tier=tier,
        episode=episode,
        opened_at=opened_at,
        last_notified_at=last_notified_at,
        last_value=last_value,
        severity=severity,
    )


def encode_action(record: ActionRecord) -> tuple[Any, ...]:
    """In ACTION_COLUMNS order, without the id (the database assigns it)."""
    return (
        record.run_id,
        record.rule,
        record.decision,
        record.reason,
        record.created_at,
        record.config_hash,
        int(record.dry_run),
        dumps(record.evidence.to_json()),
        record.intent_id,
    )


@row_codec
def decode_action(row: tuple[Any, ...]) -> ActionRecord:
    id_, run_id, rule, decision, reason, created_at, config_hash, dry_run, evidence, intent_id = row
    return ActionRecord(
        run_id=run_id,
        rule=rule,
        decision=decision,
        reason=reason,
        created_at=created_at,
        config_hash=config_hash,
        dry_run=bool(dry_run),
        evidence=Evidence.from_json(json.loads(evidence)),
        intent_id=intent_id,
        id=id_,
    )


OUTBOX_SELECT = (
    "SELECT o.id, o.channel, o.attempts, o.next_attempt_at, o.last_error, n.data"
    " FROM outbox o JOIN notifications n ON n.id = o.notification_id WHERE o.delivered_at IS NULL"
)


@row_codec
def decode_outbox_item(row: tuple[Any, ...]) -> OutboxItem:
    id_, channel, attempts, next_attempt_at, last_error, data = row
    return OutboxItem(
        id=id_,
        channel=channel,
        notification=decode_notification(data),
        attempts=attempts,
        next_attempt_at=next_attempt_at,
        last_error=last_error,
    )
