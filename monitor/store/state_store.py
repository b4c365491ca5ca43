"""The daemon's memory across restarts: one SQLite file (on a volume in the container).

Synchronous sqlite3 on purpose: the daemon is one asyncio loop and every write is a few small rows,
well under a millisecond in WAL mode. WAL lets the CLI (`status`, `protect`) read and write the same
file while the daemon runs; every write is one short `BEGIN IMMEDIATE` transaction, and the busy
timeout makes a writer wait for the other process instead of failing.

Floats are stored as REAL columns or in JSON written with `repr` precision, and ints as JSON ints,
so a snapshot read back equals the one saved, bit for bit.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import structlog

from monitor.records import ActionRecord, AlertState, Protection
from monitor.snapshots import RunSnapshot, WalletSnapshot
from monitor.store.file import (
    MEMORY,
    FileIdentity,
    StateFileRefusedError,
    describe_sqlite_error,
    open_state_file,
    verify_still_at_path,
)
from monitor.store.lock import LockHolder, StateFileLock, StateLockedError
from monitor.store.outbox import OutboxTable
from monitor.store.schema import (
    ACTION_COLUMNS,
    ALERT_COLUMNS,
    SCHEMA_VERSION,
    SchemaTooNewError,
    StoreError,
    decode_action,
    decode_alert,
    decode_run_snapshot,
    decode_wallet_snapshot,
    dumps,
    encode_action,
    encode_alert,
    encode_run_snapshot,
)

__all__ = [
    "SCHEMA_VERSION",
    "KnownRun",
    "LockHolder",
    "SchemaTooNewError",
    "StateFileRefusedError",
    "StateLockedError",
    "StateStore",
    "StoreError",
]

log = structlog.get_logger(__name__)

RunSource = Literal["config", "discovered"]


@dataclass(frozen=True, slots=True)
class KnownRun:
    """A run the daemon watches: named in config, or discovered from wallet billing rows."""

    run_id: str
    source: RunSource
    first_seen: float
    finished_at: float | None = None


class StateStore:
    """Runs, wallet, alerts, the notification outbox, the action log and protections, in one file."""

    def __init__(
        self,
        path: str | Path,
        *,
        history_per_run: int = 2000,
        wallet_history_limit: int = 10_000,
        busy_timeout_ms: int = 5000,
        exclusive: bool = False,
    ) -> None:
        """Open (or, only if nothing is at `path`, create) the state file.

        `exclusive`: hold the one-writer lock on `<path>.lock` until close(), taken before anything is
        read or written; raises StateLockedError naming the holder if another process has it. The
        daemon opens exclusive; `status`, `protect` and `unprotect` do not (they work beside it).
        An existing file that is empty, damaged, not SQLite, not ours or from a newer schema raises
        a StoreError subclass naming the file and the reason, and is left untouched.
        """
        if history_per_run < 1 or wallet_history_limit < 1:
            raise ValueError("history_per_run and wallet_history_limit must be at least 1")
        self._history_per_run = history_per_run
        self._wallet_history_limit = wallet_history_limit
        self._path = str(path) if str(path) == MEMORY else str(Path(path).expanduser())
        # One connection shared by whoever holds the lock: safe if a caller hands work to a thread.
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._file_lock: StateFileLock | None = None
        self._identity: FileIdentity | None = None
        #: Set when an existing file is readable by group or others (logged once at open).
        self.mode_warning: str | None = None
        if self._path != MEMORY:
            try:
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot open state store {self._path}: {exc}") from exc
            if exclusive:
                self._file_lock = StateFileLock.acquire(self._path)
        try:
            opened = open_state_file(self._path, busy_timeout_ms=busy_timeout_ms)
        except BaseException:
            self._release_file_lock()
            raise
        self._conn = opened.conn
        self._schema_version = opened.schema_version
        self._identity = opened.identity
        self.mode_warning = opened.mode_warning
        if exclusive:
            # The daemon must be able to write: a read-only file or volume, or a full disk, is found
            # now and refuses the start, instead of at the first alert. (`status` only reads, and
            # works on a read-only copy.)
            try:
                self.probe()
            except BaseException:
                self.close()
                raise
        if self.mode_warning is not None:
            log.warning("state_store_mode_too_open", path=self._path, warning=self.mode_warning)
        # The outbox's rows (monitor.store.outbox): one short transaction of this store per call.
        self.outbox = OutboxTable(read=self._read, write=self._write)
        log.debug("state_store_opened", path=self._path, schema_version=self._schema_version, exclusive=exclusive)

    # -- lifecycle -------------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        return self._path

    @property
    def schema_version(self) -> int:
        return self._schema_version

    @property
    def lock_holder(self) -> LockHolder | None:
        """This process, while it holds the one-writer lock (opened with exclusive=True)."""
        return self._file_lock.holder if self._file_lock is not None and self._file_lock.held else None

    def close(self) -> None:
        """Idempotent; releases the one-writer lock after the connection is closed, so nothing this
        store does can overlap the next holder."""
        with self._lock:
            try:
                if self._conn is not None:
                    conn, self._conn = self._conn, None
                    conn.close()
            except sqlite3.Error as exc:
                raise StoreError(f"state store {self._path}: closing failed: {describe_sqlite_error(exc)}") from exc
            finally:
                self._release_file_lock()

    def _release_file_lock(self) -> None:
        if self._file_lock is not None:
            self._file_lock.release()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def probe(self) -> None:
        """Prove the store still reads and writes, cheaply, for health checks every few seconds: one
        small committed write to `meta` and its read-back, after checking that the file (and the
        lock, if held) is still the one at its path. Raises StoreError naming the file."""
        if self._file_lock is not None:
            self._file_lock.verify()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('store_probe', '1')"
                " ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
            )
            conn.execute("SELECT value FROM meta WHERE key = 'store_probe'").fetchone()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                raise StoreError(f"state store {self._path} is closed")
            if self._identity is not None:
                # A deleted or replaced file keeps working through the open connection, silently:
                # the daemon would read old state while `protect` writes to the new file.
                verify_still_at_path(self._path, self._identity)
            try:
                yield self._conn
            except sqlite3.Error as exc:
                # e.g. "database is locked" after the busy timeout, or the disk is full: say which file.
                raise StoreError(f"state store {self._path}: {describe_sqlite_error(exc)}") from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front: a deferred transaction that later needs it can fail
        # at once with SQLITE_BUSY in WAL mode instead of waiting out the busy timeout.
        with self._read() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    # A failed rollback must not hide the error that caused it (e.g. disk full).
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise

    # -- runs ------------------------------------------------------------------------------------------

    def save_run_snapshot(self, snapshot: RunSnapshot) -> None:
        """Append to the run's history (dropping the oldest beyond the bound) and make it the latest."""
        data = encode_run_snapshot(snapshot.to_dict())
        with self._write() as conn:
            row = conn.execute("SELECT seq, taken_at FROM run_latest WHERE run_id = ?", (snapshot.run_id,)).fetchone()
            seq = (row[0] if row else 0) + 1
            conn.execute(
                "INSERT INTO run_history (run_id, seq, taken_at, data) VALUES (?, ?, ?, ?)",
                (snapshot.run_id, seq, snapshot.taken_at, data),
            )
            conn.execute(
                "DELETE FROM run_history WHERE run_id = ? AND seq <= ?",
                (snapshot.run_id, seq - self._history_per_run),
            )
            # A reading that arrives late (older than the latest) joins the history but stays out of "latest".
            if row is None or snapshot.taken_at >= row[1]:
                conn.execute(
                    "INSERT INTO run_latest (run_id, taken_at, seq, data) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (run_id) DO UPDATE SET taken_at = excluded.taken_at, seq = excluded.seq,"
                    " data = excluded.data",
                    (snapshot.run_id, snapshot.taken_at, seq, data),
                )
            else:
                conn.execute("UPDATE run_latest SET seq = ? WHERE run_id = ?", (seq, snapshot.run_id))

    def latest_run_snapshots(self) -> dict[str, RunSnapshot]:
        with self._read() as conn:
            rows = conn.execute("SELECT run_id, taken_at, data FROM run_latest ORDER BY run_id").fetchall()
        return {run_id: decode_run_snapshot(run_id, taken_at, data) for run_id, taken_at, data in rows}

    def run_history(self, run_id: str, *, since: float | None = None, limit: int | None = None) -> list[RunSnapshot]:
        """Oldest first; `since` keeps readings taken at or after it; `limit` keeps the newest `limit`."""
        query = "SELECT taken_at, data FROM run_history WHERE run_id = ?"
        params: list[Any] = [run_id]
        if since is not None:
            query += " AND taken_at >= ?"
            params.append(since)
        # id is insertion order, like seq, and sits in the (run_id, taken_at) index: no sort step.
        query += " ORDER BY taken_at DESC, id DESC"
        if limit is not None:
            query += " LIMIT ?"
            params.append(max(limit, 0))
        with self._read() as conn:
            rows = conn.execute(query, params).fetchall()
        return [decode_run_snapshot(run_id, taken_at, data) for taken_at, data in reversed(rows)]

    def remember_run(self, run_id: str, *, source: RunSource, seen_at: float) -> None:
        """Idempotent. A run named in config stays "config" even if the wallet also shows it."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO known_runs (run_id, source, first_seen) VALUES (?, ?, ?)"
                " ON CONFLICT (run_id) DO UPDATE SET"
                " source = CASE WHEN excluded.source = 'config' THEN 'config' ELSE known_runs.source END,"
                " first_seen = MIN(known_runs.first_seen, excluded.first_seen)",
                (run_id, source, seen_at),
            )

    def known_runs(self) -> dict[str, KnownRun]:
        with self._read() as conn:
            rows = conn.execute("SELECT run_id, source, first_seen, finished_at FROM known_runs ORDER BY run_id")
            return {r[0]: KnownRun(run_id=r[0], source=r[1], first_seen=r[2], finished_at=r[3]) for r in rows}

    def mark_run_finished(self, run_id: str, *, finished_at: float) -> None:
        """Records when the run's final totals were read; a run not yet known is remembered as discovered."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO known_runs (run_id, source, first_seen, finished_at) VALUES (?, 'discovered', ?, ?)"
                " ON CONFLICT (run_id) DO UPDATE SET finished_at = excluded.finished_at",
                (run_id, finished_at, finished_at),
            )

    def forget_run(self, run_id: str) -> None:
        """Retention expired: drop the run's snapshots, known entry and alert state. The action log,
        the outbox and protections stay."""
        with self._write() as conn:
            for table, column in (
                ("run_latest", "run_id"),
                ("run_history", "run_id"),
                ("known_runs", "run_id"),
                ("alerts", "subject"),
            ):
                conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (run_id,))
        log.info("run_forgotten", run_id=run_id)

    # -- wallet ----------------------------------------------------------------------------------------

    def save_wallet_snapshot(self, snapshot: WalletSnapshot) -> None:
        full = snapshot.to_dict()
        del full["taken_at"]
        balance_only = {**full, "billings": []}
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO wallet_history (wallet_id, taken_at, data) VALUES (?, ?, ?)",
                (snapshot.wallet_id, snapshot.taken_at, dumps(balance_only)),
            )
            if cursor.lastrowid is not None:
                # AUTOINCREMENT ids grow by one per insert here, so this keeps exactly the newest N.
                conn.execute(
                    "DELETE FROM wallet_history WHERE id <= ?", (cursor.lastrowid - self._wallet_history_limit,)
                )
            conn.execute(
                "INSERT INTO wallet_latest (slot, wallet_id, taken_at, data) VALUES (1, ?, ?, ?)"
                " ON CONFLICT (slot) DO UPDATE SET wallet_id = excluded.wallet_id, taken_at = excluded.taken_at,"
                " data = excluded.data WHERE excluded.taken_at >= wallet_latest.taken_at",
                (snapshot.wallet_id, snapshot.taken_at, dumps(full)),
            )

    def latest_wallet(self) -> WalletSnapshot | None:
        with self._read() as conn:
            row = conn.execute("SELECT taken_at, data FROM wallet_latest WHERE slot = 1").fetchone()
        return decode_wallet_snapshot(row[0], row[1]) if row else None

    def wallet_history(self, *, since: float | None = None, limit: int | None = None) -> list[WalletSnapshot]:
        """Oldest first; billing rows are empty (only `latest_wallet` keeps them)."""
        query = "SELECT taken_at, data FROM wallet_history"
        params: list[Any] = []
        if since is not None:
            query += " WHERE taken_at >= ?"
            params.append(since)
        query += " ORDER BY taken_at DESC, id DESC"
        if limit is not None:
            query += " LIMIT ?"
            params.append(max(limit, 0))
        with self._read() as conn:
            rows = conn.execute(query, params).fetchall()
        return [decode_wallet_snapshot(taken_at, data) for taken_at, data in reversed(rows)]

    # -- alerts ----------------------------------------------------------------------------------------

    def get_alert(self, subject: str, rule: str) -> AlertState | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {ALERT_COLUMNS} FROM alerts WHERE subject = ? AND rule = ?", (subject, rule)
            ).fetchone()
        return decode_alert(row) if row else None

    def save_alert(self, state: AlertState) -> None:
        with self._write() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO alerts ({ALERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                encode_alert(state),
            )

    def alerts(self, *, firing_only: bool = False) -> list[AlertState]:
        where = " WHERE tier > 0" if firing_only else ""
        with self._read() as conn:
            rows = conn.execute(f"SELECT {ALERT_COLUMNS} FROM alerts{where} ORDER BY subject, rule").fetchall()
        return [decode_alert(row) for row in rows]

    # -- action log ------------------------------------------------------------------------------------

    def append_action(self, record: ActionRecord) -> int:
        """Append one record (its `id` field is ignored) and return the id it was given."""
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO actions (run_id, rule, decision, reason, created_at, config_hash, dry_run, evidence,"
                " intent_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                encode_action(record),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def actions(self, *, run_id: str | None = None, since: float | None = None, limit: int = 100) -> list[ActionRecord]:
        """Newest first."""
        clauses: list[str] = []
        params: list[Any] = []
        if run_id is not None:
            clauses.append("run_id = ?")
            params.append(run_id)
        if since is not None:
            clauses.append("created_at >= ?")
            params.append(since)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(max(limit, 0))
        with self._read() as conn:
            rows = conn.execute(f"SELECT {ACTION_COLUMNS} FROM actions{where} ORDER BY id DESC LIMIT ?", params)
            return [decode_action(row) for row in rows.fetchall()]

    def open_actions(self, decision: str) -> list[ActionRecord]:
        """Records with this decision that no later record points at through `intent_id`, oldest first:
        after a restart, the delete intents whose outcome was never logged."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {ACTION_COLUMNS} FROM actions a WHERE decision = ?"
                " AND NOT EXISTS (SELECT 1 FROM actions r WHERE r.intent_id = a.id) ORDER BY id",
                (decision,),
            )
            return [decode_action(row) for row in rows.fetchall()]

    def count_actions(self, *, decisions: Sequence[str], since: float) -> int:
        """Records with any of these decisions created at or after `since`."""
        if not decisions:
            return 0
        marks = ", ".join("?" for _ in decisions)
        with self._read() as conn:
            row = conn.execute(
                f"SELECT COUNT(*) FROM actions WHERE decision IN ({marks}) AND created_at >= ?", (*decisions, since)
            ).fetchone()
        return int(row[0])

    # -- runtime protections ---------------------------------------------------------------------------

    def protect(self, run_id: str, *, until: float | None, reason: str, now: float) -> None:
        """Exempt a run from deletion until `until` (None: until unprotected); replaces an existing one."""
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO protections (run_id, created_at, until, reason) VALUES (?, ?, ?, ?)",
                (run_id, now, until, reason),
            )
        log.info("run_protected", run_id=run_id, until=until)

    def unprotect(self, run_id: str) -> bool:
        with self._write() as conn:
            removed = conn.execute("DELETE FROM protections WHERE run_id = ?", (run_id,)).rowcount > 0
        if removed:
            log.info("run_unprotected", run_id=run_id)
        return removed

    def protections(self, *, now: float) -> list[Protection]:
        """Active protections only: no expiry, or expiring after `now`."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT run_id, created_at, until, reason FROM protections"
                " WHERE until IS NULL OR until > ? ORDER BY run_id",
                (now,),
            ).fetchall()
        return [Protection(run_id=r[0], created_at=r[1], until=r[2], reason=r[3]) for r in rows]

    # -- meta ------------------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
