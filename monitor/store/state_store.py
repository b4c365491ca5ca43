"""The daemon's memory across restarts: one SQLite file (on a volume in the container).

Synchronous sqlite3 on purpose: the daemon is one asyncio loop and every write is a few small rows,
well under a millisecond in WAL mode. WAL lets the CLI (`status`, `protect`) read and write the same
file while the daemon runs; every write is one short `BEGIN IMMEDIATE` transaction, and the busy
timeout makes a writer wait for the other process instead of failing.

Floats are stored as REAL columns or in JSON written with `repr` precision, and ints as JSON ints,
so a snapshot read back equals the one saved, bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from monitor.records import ActionRecord, AlertState, Protection
from monitor.snapshots import RunSnapshot, WalletSnapshot
from monitor.store.codec import (
    ACTION_COLUMNS,
    ALERT_COLUMNS,
    decode_action,
    decode_alert,
    decode_run_snapshot,
    decode_wallet_snapshot,
    dumps,
    encode_action,
    encode_alert,
    encode_run_reading,
)
from monitor.store.connection import StoreConnection, StoreFileStats
from monitor.store.file import MEMORY, StateFileRefusedError
from monitor.store.lock import LockHolder, StateLockedError
from monitor.store.maintenance import STEP_BUDGET_SECONDS, Maintainer, MaintenanceReport
from monitor.store.outbox import OutboxTable
from monitor.store.prune import prune_run_readings, prune_wallet_history, retire_run
from monitor.store.retention import KEEP_NEWEST_BALANCES, KEEP_NEWEST_READINGS, PRUNE_PER_SAVE, RetentionPolicy
from monitor.store.schema import SCHEMA_VERSION, SchemaTooNewError, StoreError

__all__ = [
    "SCHEMA_VERSION",
    "KnownRun",
    "LockHolder",
    "MaintenanceReport",
    "RetentionPolicy",
    "SchemaTooNewError",
    "StateFileRefusedError",
    "StateLockedError",
    "StateStore",
    "StoreError",
    "StoreFileStats",
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
    # Set when the run was retired (its readings and alerts dropped): a tombstone, so a restart neither
    # polls it (it is finished) nor discovers it again.
    retired_at: float | None = None


class StateStore(StoreConnection):
    """Runs, wallet, alerts, the notification outbox, the action log and protections, in one file."""

    def __init__(
        self,
        path: str | Path,
        *,
        history_per_run: int = 2000,
        wallet_history_limit: int = 10_000,
        busy_timeout_ms: int = 5000,
        exclusive: bool = False,
        retention: RetentionPolicy | None = None,
    ) -> None:
        """Open the state file (StoreConnection says how, and what is refused).

        `retention`: how long readings are kept on save (monitor.store.retention); without it only
        the row caps apply until the first `maintain` call brings the daemon's policy.
        """
        if history_per_run < 1 or wallet_history_limit < 1:
            raise ValueError("history_per_run and wallet_history_limit must be at least 1")
        self._history_per_run = history_per_run
        self._wallet_history_limit = wallet_history_limit
        self._retention = retention
        super().__init__(path, busy_timeout_ms=busy_timeout_ms, exclusive=exclusive)
        # The outbox's rows (monitor.store.outbox): one short transaction of this store per call.
        self.outbox = OutboxTable(read=self._read, write=self._write)
        self._maintainer = Maintainer(
            read=self._read,
            write=self._write,
            busy_timeout_ms=busy_timeout_ms,
            wal_path=None if self._path == MEMORY else f"{self._path}-wal",
        )
        log.debug("state_store_opened", path=self._path, schema_version=self._schema_version, exclusive=exclusive)

    # -- runs ------------------------------------------------------------------------------------------

    def save_run_snapshot(self, snapshot: RunSnapshot) -> None:
        """Append to the run's history and make it the latest. The history drops what is older than the
        retention's time bound (the newest few always stay) and anything beyond history_per_run."""
        data = encode_run_reading(snapshot)
        with self._write() as conn:
            row = conn.execute("SELECT seq, taken_at FROM run_latest WHERE run_id = ?", (snapshot.run_id,)).fetchone()
            seq = (row[0] if row else 0) + 1
            conn.execute(
                "INSERT INTO run_history (run_id, seq, taken_at, data) VALUES (?, ?, ?, ?)",
                (snapshot.run_id, seq, snapshot.taken_at, data),
            )
            if seq > self._history_per_run:
                conn.execute(
                    "DELETE FROM run_history WHERE run_id = ? AND seq <= ?",
                    (snapshot.run_id, seq - self._history_per_run),
                )
            if self._retention is not None:
                # Amortised: about one old reading goes per new one, through the (run_id, taken_at) index.
                newest = snapshot.taken_at if row is None else max(snapshot.taken_at, row[1])
                prune_run_readings(
                    conn,
                    snapshot.run_id,
                    before=newest - self._retention.history_seconds,
                    newest_seq=seq,
                    keep_newest=KEEP_NEWEST_READINGS,
                    limit=PRUNE_PER_SAVE,
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
        rows = self._history("run_history", ("run_id = ?", run_id), since=since, limit=limit)
        return [decode_run_snapshot(run_id, taken_at, data) for taken_at, data in rows]

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
        """Every run the store knows, retired ones (tombstones) included."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT run_id, source, first_seen, finished_at, retired_at FROM known_runs ORDER BY run_id"
            )
            return {
                r[0]: KnownRun(run_id=r[0], source=r[1], first_seen=r[2], finished_at=r[3], retired_at=r[4])
                for r in rows
            }

    def mark_run_finished(self, run_id: str, *, finished_at: float) -> None:
        """Records when the run's final totals were read; a run not yet known is remembered as discovered."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO known_runs (run_id, source, first_seen, finished_at) VALUES (?, 'discovered', ?, ?)"
                " ON CONFLICT (run_id) DO UPDATE SET finished_at = excluded.finished_at",
                (run_id, finished_at, finished_at),
            )

    def forget_run(self, run_id: str, *, now: float | None = None) -> None:
        """Retention expired: drop the run's snapshots and alert state, and keep its id as a tombstone
        (`KnownRun.retired_at`, finished), so a restart neither polls nor discovers it again. The action
        log, the outbox and protections stay; maintenance prunes them by their own retention."""
        with self._write() as conn:
            retire_run(conn, run_id, at=time.time() if now is None else now)
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
            if self._retention is not None:
                prune_wallet_history(
                    conn,
                    before=snapshot.taken_at - self._retention.wallet_history_seconds,
                    keep_newest=KEEP_NEWEST_BALANCES,
                    limit=PRUNE_PER_SAVE,
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
        rows = self._history("wallet_history", None, since=since, limit=limit)
        return [decode_wallet_snapshot(taken_at, data) for taken_at, data in rows]

    def _history(
        self, table: str, match: tuple[str, Any] | None, *, since: float | None, limit: int | None
    ) -> list[tuple[float, str]]:
        """(taken_at, data) of a history table, oldest first: rows matching `match` (a condition and its
        value), taken at or after `since`, the newest `limit` of them."""
        conditions, params = ([match[0]], [match[1]]) if match is not None else ([], [])
        if since is not None:
            conditions.append("taken_at >= ?")
            params.append(since)
        query = f"SELECT taken_at, data FROM {table}"
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        # id is insertion order, like seq, and sits in the (run_id, taken_at) index: no sort step.
        query += " ORDER BY taken_at DESC, id DESC"
        if limit is not None:
            query += " LIMIT ?"
            params.append(max(limit, 0))
        with self._read() as conn:
            rows = conn.execute(query, params).fetchall()
        return [(taken_at, data) for taken_at, data in reversed(rows)]

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

    # -- keeping the file bounded (monitor.store.maintenance) ------------------------------------------

    def maintain(
        self, retention: RetentionPolicy, *, now: float, force: bool = False, budget: float = STEP_BUDGET_SECONDS
    ) -> MaintenanceReport | None:
        """The daemon's housekeeping calls this every few seconds: it applies `retention` from now on
        (saves prune by it), and runs bounded steps of a maintenance cycle when one is due (at most every
        `retention.maintenance_interval`; `force` starts one now), for about `budget` seconds at most
        (one step at least). None when nothing was due."""
        self._retention = retention
        return self._maintainer.run(retention, now=now, force=force, budget=budget)

    @property
    def last_maintenance(self) -> MaintenanceReport | None:
        """The totals of the last maintenance cycle that finished (rows pruned, pages freed, worst step)."""
        return self._maintainer.last_cycle
