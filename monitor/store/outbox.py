"""The notification outbox's rows: the SQL behind StateStore's outbox methods, and the row types.

An outbox item is one notification bound for one channel. It is *open* until it is either
delivered (`delivered_at`) or superseded (`superseded_at`: folded into a newer message of its
thread and never sent itself). `attempt_started_at` is written just before a send whose outcome
can be unknown (a crash, a timeout); while it is set on an open item, the outbox looks for the
message before sending it again.

Every function takes a connection inside the caller's transaction (StateStore holds the lock).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from monitor.records import Notification, OutboxItem
from monitor.store.schema import decode_outbox_item, dumps

_MAX_ERROR_CHARS = 2000
# Open: neither delivered nor superseded (with and without the outbox table's alias).
_OPEN = "o.delivered_at IS NULL AND o.superseded_at IS NULL"
_OPEN_ROW = "delivered_at IS NULL AND superseded_at IS NULL"
# The first six columns are what decode_outbox_item reads; the rest are OutboxEntry's own.
_SELECT = (
    "SELECT o.id, o.channel, o.attempts, o.next_attempt_at, o.last_error, n.data, o.queued_at,"
    " o.attempt_started_at FROM outbox o JOIN notifications n ON n.id = o.notification_id"
)

ThreadState = Literal["open", "delivered", "superseded"]


@dataclass(frozen=True, slots=True)
class OutboxEntry(OutboxItem):
    """An outbox item with its delivery bookkeeping."""

    # When it was queued (wall time); None only for rows written before schema version 2.
    queued_at: float | None = None
    # Set while an earlier send may have arrived (crash or timeout mid-send): look before resending.
    attempt_started_at: float | None = None


@dataclass(frozen=True, slots=True)
class ThreadEntry:
    """One item of a thread on one channel, as far as folding and thread order need it."""

    id: int
    kind: str
    state: ThreadState


def _entry(row: tuple[Any, ...]) -> OutboxEntry:
    item = decode_outbox_item(row[:6])
    return OutboxEntry(
        id=item.id,
        channel=item.channel,
        notification=item.notification,
        attempts=item.attempts,
        next_attempt_at=item.next_attempt_at,
        last_error=item.last_error,
        queued_at=row[6],
        attempt_started_at=row[7],
    )


def enqueue(conn: sqlite3.Connection, notification: Notification, *, channels: Sequence[str], now: float) -> bool:
    unique_channels = list(dict.fromkeys(channels))
    if not unique_channels:
        raise ValueError("enqueue needs at least one channel")
    cursor = conn.execute(
        "INSERT INTO notifications (dedup_key, created_at, data, kind, thread_key) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (dedup_key) DO NOTHING",
        (
            notification.dedup_key,
            notification.created_at,
            dumps(asdict(notification)),
            notification.kind,
            notification.thread_key,
        ),
    )
    if cursor.rowcount == 0:
        return False
    conn.executemany(
        "INSERT INTO outbox (notification_id, channel, next_attempt_at, queued_at) VALUES (?, ?, ?, ?)",
        [(cursor.lastrowid, channel, now, now) for channel in unique_channels],
    )
    return True


def due(
    conn: sqlite3.Connection, *, now: float, channel: str | None, limit: int, after_id: int = 0
) -> list[OutboxEntry]:
    query = f"{_SELECT} WHERE {_OPEN} AND o.next_attempt_at <= ? AND o.id > ?"
    params: list[Any] = [now, after_id]
    if channel is not None:
        query += " AND o.channel = ?"
        params.append(channel)
    query += " ORDER BY o.id LIMIT ?"
    params.append(max(limit, 0))
    return [_entry(row) for row in conn.execute(query, params).fetchall()]


def pending(conn: sqlite3.Connection, *, channel: str | None) -> list[OutboxEntry]:
    query = f"{_SELECT} WHERE {_OPEN}"
    params: list[Any] = []
    if channel is not None:
        query += " AND o.channel = ?"
        params.append(channel)
    return [_entry(row) for row in conn.execute(query + " ORDER BY o.id", params).fetchall()]


def mark_delivered(
    conn: sqlite3.Connection, item_id: int, *, now: float, thread_key: str | None = None, ref: str | None = None
) -> bool:
    cursor = conn.execute("UPDATE outbox SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL", (now, item_id))
    if cursor.rowcount > 0 and thread_key and ref:
        # In the same transaction: a crash cannot leave a delivered thread root without its ref.
        conn.execute(
            "INSERT OR REPLACE INTO thread_refs (channel, thread_key, ref)"
            " SELECT channel, ?, ? FROM outbox WHERE id = ?",
            (thread_key, ref, item_id),
        )
    return cursor.rowcount > 0


def mark_failed(
    conn: sqlite3.Connection,
    item_id: int,
    *,
    error: str,
    next_attempt_at: float,
    attempt_started_at: float | None,
) -> bool:
    cursor = conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, attempt_started_at = ?"
        " WHERE id = ? AND delivered_at IS NULL",
        (error[:_MAX_ERROR_CHARS], next_attempt_at, attempt_started_at, item_id),
    )
    return cursor.rowcount > 0


def mark_attempt_started(conn: sqlite3.Connection, item_id: int, *, at: float) -> None:
    conn.execute("UPDATE outbox SET attempt_started_at = ? WHERE id = ? AND delivered_at IS NULL", (at, item_id))


def mark_superseded(conn: sqlite3.Connection, item_id: int, *, by: int, now: float) -> bool:
    cursor = conn.execute(
        f"UPDATE outbox SET superseded_at = ?, superseded_by = ? WHERE id = ? AND {_OPEN_ROW}",
        (now, by, item_id),
    )
    if cursor.rowcount == 0:
        return False
    # Whatever this item had folded in now travels with the newer one, so one message names them all.
    conn.execute("UPDATE outbox SET superseded_by = ? WHERE superseded_by = ?", (by, item_id))
    return True


def superseded_into(conn: sqlite3.Connection, item_id: int) -> list[OutboxEntry]:
    rows = conn.execute(f"{_SELECT} WHERE o.superseded_by = ? ORDER BY o.id", (item_id,)).fetchall()
    return [_entry(row) for row in rows]


def thread_entries(conn: sqlite3.Connection, *, channel: str, thread_key: str) -> list[ThreadEntry]:
    rows = conn.execute(
        "SELECT o.id, n.kind, CASE WHEN o.delivered_at IS NOT NULL THEN 'delivered'"
        " WHEN o.superseded_at IS NOT NULL THEN 'superseded' ELSE 'open' END"
        " FROM notifications n JOIN outbox o ON o.notification_id = n.id"
        " WHERE n.thread_key = ? AND n.thread_key != '' AND o.channel = ? ORDER BY o.id",
        (thread_key, channel),
    ).fetchall()
    return [ThreadEntry(id=row[0], kind=str(row[1]), state=row[2]) for row in rows]


def release_channel(conn: sqlite3.Connection, *, channel: str, now: float) -> int:
    cursor = conn.execute(
        f"UPDATE outbox SET next_attempt_at = ? WHERE channel = ? AND next_attempt_at > ? AND {_OPEN_ROW}",
        (now, channel, now),
    )
    return cursor.rowcount


def backlog(conn: sqlite3.Connection, *, channel: str) -> tuple[int, float | None]:
    # Both read the (channel, queued_at) partial index: no table scan, no JSON.
    row = conn.execute(
        f"SELECT COUNT(*), MIN(o.queued_at) FROM outbox o WHERE o.channel = ? AND {_OPEN}", (channel,)
    ).fetchone()
    return int(row[0]), row[1]


def open_channels(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute(f"SELECT o.channel, COUNT(*) FROM outbox o WHERE {_OPEN} GROUP BY o.channel").fetchall()
    return {str(channel): int(count) for channel, count in rows}


def delivered_count(conn: sqlite3.Connection, *, channel: str | None) -> int:
    query = "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NOT NULL"
    params: tuple[str, ...] = ()
    if channel is not None:
        query += " AND channel = ?"
        params = (channel,)
    return int(conn.execute(query, params).fetchone()[0])


def superseded_count(conn: sqlite3.Connection, *, channel: str | None) -> int:
    query = "SELECT COUNT(*) FROM outbox WHERE superseded_at IS NOT NULL"
    params: tuple[str, ...] = ()
    if channel is not None:
        query += " AND channel = ?"
        params = (channel,)
    return int(conn.execute(query, params).fetchone()[0])
