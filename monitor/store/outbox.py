"""The notification outbox's rows: the SQL, the row types, and `OutboxTable` (StateStore.outbox).

An outbox item is one notification bound for one channel. It is *open* until it is either
delivered (`delivered_at`) or superseded (`superseded_at`: folded into a newer message of its
thread and never sent itself). `attempt_started_at` is written just before a send whose outcome
can be unknown (a crash, a timeout); while it is set on an open item, the outbox looks for the
message before sending it again.

Every function takes a connection inside the caller's transaction (StateStore holds the lock).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any, Literal

import structlog

from monitor.records import Notification, OutboxItem
from monitor.store.codec import decode_outbox_item, dumps

log = structlog.get_logger("monitor.store.state_store")

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


class OutboxTable:
    """The outbox's rows, reached as `StateStore.outbox`: each call one short transaction of the store."""

    def __init__(
        self,
        *,
        read: Callable[[], AbstractContextManager[sqlite3.Connection]],
        write: Callable[[], AbstractContextManager[sqlite3.Connection]],
    ) -> None:
        self._read = read
        self._write = write

    def enqueue(self, notification: Notification, *, channels: Sequence[str], now: float) -> bool:
        """Queue one notification for each channel; False (and nothing added) if its dedup key was ever
        enqueued before, delivered or not."""
        with self._write() as conn:
            return enqueue(conn, notification, channels=channels, now=now)

    def due(self, *, now: float, channel: str | None = None, limit: int = 50, after_id: int = 0) -> list[OutboxEntry]:
        """Open items whose next attempt is due, oldest first; `after_id` pages through them."""
        with self._read() as conn:
            return due(conn, now=now, channel=channel, limit=limit, after_id=after_id)

    def pending(self, *, channel: str | None = None) -> list[OutboxEntry]:
        """Every open item (neither delivered nor superseded), due or not, oldest first."""
        with self._read() as conn:
            return pending(conn, channel=channel)

    def mark_delivered(
        self, item_id: int, *, now: float, thread_key: str | None = None, ref: str | None = None
    ) -> None:
        """Delivered; with `thread_key` and `ref`, also the thread's ref on the item's channel (atomically)."""
        with self._write() as conn:
            changed = mark_delivered(conn, item_id, now=now, thread_key=thread_key, ref=ref)
        if not changed:
            log.warning("outbox_mark_delivered_noop", item_id=item_id)

    def mark_failed(
        self, item_id: int, *, error: str, next_attempt_at: float, attempt_started_at: float | None = None
    ) -> None:
        """One more failed attempt. `attempt_started_at` stays set only when the send may have arrived
        all the same (a timeout, a 5xx): the next attempt looks for the message first."""
        with self._write() as conn:
            changed = mark_failed(
                conn, item_id, error=error, next_attempt_at=next_attempt_at, attempt_started_at=attempt_started_at
            )
        if not changed:
            log.warning("outbox_mark_failed_noop", item_id=item_id)

    def mark_attempt_started(self, item_id: int, *, at: float) -> None:
        """Written (and committed) just before a send: after a crash the item says "maybe sent"."""
        with self._write() as conn:
            mark_attempt_started(conn, item_id, at=at)

    def mark_superseded(self, item_id: int, *, by: int, now: float) -> bool:
        """Fold an open item into the newer item `by` of its thread; False if it was no longer open."""
        with self._write() as conn:
            return mark_superseded(conn, item_id, by=by, now=now)

    def superseded_into(self, item_id: int) -> list[OutboxEntry]:
        """The items folded into this one, oldest first."""
        with self._read() as conn:
            return superseded_into(conn, item_id)

    def thread_entries(self, *, channel: str, thread_key: str) -> list[ThreadEntry]:
        """Every item of one thread on one channel (open, delivered or superseded), oldest first."""
        with self._read() as conn:
            return thread_entries(conn, channel=channel, thread_key=thread_key)

    def release_channel(self, channel: str, *, now: float) -> int:
        """Make every open item of the channel due now (it recovered, or its notifier was replaced)."""
        with self._write() as conn:
            return release_channel(conn, channel=channel, now=now)

    def outbox_backlog(self, channel: str) -> tuple[int, float | None]:
        """(open items, when the oldest was queued) for one channel, from an index."""
        with self._read() as conn:
            return backlog(conn, channel=channel)

    def open_outbox_channels(self) -> dict[str, int]:
        """Open items per channel, including channels no notifier serves any more."""
        with self._read() as conn:
            return open_channels(conn)

    def delivered_count(self, *, channel: str | None = None) -> int:
        with self._read() as conn:
            return delivered_count(conn, channel=channel)

    def superseded_count(self, *, channel: str | None = None) -> int:
        with self._read() as conn:
            return superseded_count(conn, channel=channel)

    def thread_ref(self, channel: str, thread_key: str) -> str | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT ref FROM thread_refs WHERE channel = ? AND thread_key = ?", (channel, thread_key)
            ).fetchone()
        return str(row[0]) if row else None

    def set_thread_ref(self, channel: str, thread_key: str, ref: str) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO thread_refs (channel, thread_key, ref) VALUES (?, ?, ?)",
                (channel, thread_key, ref),
            )
