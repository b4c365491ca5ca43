"""The state store's versioned schema: an ordered list of migrations, applied at open. The codecs
between its rows and the shared types: monitor.store.codec.

Each migration runs in its own `BEGIN IMMEDIATE` transaction and records its version in
`schema_version`, so a crash mid-migration leaves the file at the previous version, and two
processes opening the same file at once (the daemon and `prime-cost-monitor status`) migrate it
once: the second waits for the write lock, then re-reads the version and finds nothing to do.

Add a migration by appending to MIGRATIONS with the next version; never edit a released one.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)


class StoreError(Exception):
    """The state store cannot be opened or used; the message names the file."""


class SchemaTooNewError(StoreError):
    """The file was written by a newer prime-cost-monitor than this one."""

    def __init__(self, *, path: str, found: int, supported: int) -> None:
        super().__init__(
            f"state store {path} has schema version {found}, but this prime-cost-monitor supports up to "
            f"version {supported}: upgrade prime-cost-monitor, or point state.path at another file"
        )
        self.path = path
        self.found = found
        self.supported = supported


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


_V1 = Migration(
    version=1,
    description="runs, wallet, alerts, outbox, action log, protections, meta",
    statements=(
        # The latest snapshot per run; `seq` counts the run's snapshots so history can be pruned by
        # "seq <= newest - N" with one indexed delete instead of counting rows on every insert.
        """CREATE TABLE run_latest (
            run_id TEXT PRIMARY KEY,
            taken_at REAL NOT NULL,
            seq INTEGER NOT NULL,
            data TEXT NOT NULL
        )""",
        """CREATE TABLE run_history (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            taken_at REAL NOT NULL,
            data TEXT NOT NULL
        )""",
        "CREATE UNIQUE INDEX run_history_by_seq ON run_history (run_id, seq)",
        "CREATE INDEX run_history_by_time ON run_history (run_id, taken_at)",
        """CREATE TABLE known_runs (
            run_id TEXT PRIMARY KEY,
            source TEXT NOT NULL CHECK (source IN ('config', 'discovered')),
            first_seen REAL NOT NULL,
            finished_at REAL
        )""",
        # One row: the latest wallet reading, billing rows included.
        """CREATE TABLE wallet_latest (
            slot INTEGER PRIMARY KEY CHECK (slot = 1),
            wallet_id TEXT NOT NULL,
            taken_at REAL NOT NULL,
            data TEXT NOT NULL
        )""",
        # Balance history: the billing rows are left out (only the latest reading keeps them).
        """CREATE TABLE wallet_history (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            wallet_id TEXT NOT NULL,
            taken_at REAL NOT NULL,
            data TEXT NOT NULL
        )""",
        "CREATE INDEX wallet_history_by_time ON wallet_history (taken_at)",
        """CREATE TABLE alerts (
            subject TEXT NOT NULL,
            rule TEXT NOT NULL,
            tier INTEGER NOT NULL,
            episode INTEGER NOT NULL,
            opened_at REAL,
            last_notified_at REAL,
            last_value REAL,
            severity TEXT NOT NULL,
            PRIMARY KEY (subject, rule)
        )""",
        # Kept for ever: the unique dedup key is what makes "nothing sent twice" survive restarts.
        """CREATE TABLE notifications (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            dedup_key TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            data TEXT NOT NULL
        )""",
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            notification_id INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
            channel TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            last_error TEXT,
            delivered_at REAL,
            UNIQUE (notification_id, channel)
        )""",
        "CREATE INDEX outbox_undelivered ON outbox (channel, next_attempt_at) WHERE delivered_at IS NULL",
        """CREATE TABLE thread_refs (
            channel TEXT NOT NULL,
            thread_key TEXT NOT NULL,
            ref TEXT NOT NULL,
            PRIMARY KEY (channel, thread_key)
        )""",
        # Append-only. intent_id is deliberately not a foreign key: a result must always be logged,
        # even if it points at an intent id a bug got wrong.
        """CREATE TABLE actions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL,
            rule TEXT NOT NULL,
            decision TEXT NOT NULL,
            reason TEXT NOT NULL,
            created_at REAL NOT NULL,
            config_hash TEXT NOT NULL,
            dry_run INTEGER NOT NULL,
            evidence TEXT NOT NULL,
            intent_id INTEGER
        )""",
        "CREATE INDEX actions_by_run ON actions (run_id, id)",
        "CREATE INDEX actions_by_time ON actions (created_at)",
        "CREATE INDEX actions_by_decision ON actions (decision, created_at)",
        "CREATE INDEX actions_by_intent ON actions (intent_id) WHERE intent_id IS NOT NULL",
        """CREATE TABLE protections (
            run_id TEXT PRIMARY KEY,
            created_at REAL NOT NULL,
            until REAL,
            reason TEXT NOT NULL
        )""",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
)

# Exactly-once delivery across crashes, superseded alerts and channel health (monitor.notify.outbox).
_V2 = Migration(
    version=2,
    description="outbox: queued time, attempt markers, superseded state; thread and kind columns",
    statements=(
        # When the item was queued (not the notification's own time): how late a delivery is.
        "ALTER TABLE outbox ADD COLUMN queued_at REAL",
        # Set just before a send whose outcome can be unknown (Slack); still set after a crash or a
        # timeout means "maybe posted": the outbox looks for the message before sending it again.
        "ALTER TABLE outbox ADD COLUMN attempt_started_at REAL",
        # A distinct end state: an alert folded into a newer message of its thread, never sent itself.
        "ALTER TABLE outbox ADD COLUMN superseded_at REAL",
        "ALTER TABLE outbox ADD COLUMN superseded_by INTEGER",
        "UPDATE outbox SET queued_at = (SELECT n.created_at FROM notifications n WHERE n.id = outbox.notification_id)",
        # Columns for what the outbox filters on, so it never decodes JSON to find a thread.
        "ALTER TABLE notifications ADD COLUMN kind TEXT",
        "ALTER TABLE notifications ADD COLUMN thread_key TEXT",
        "UPDATE notifications SET kind = json_extract(data, '$.kind'), thread_key = json_extract(data, '$.thread_key')",
        "CREATE INDEX notifications_by_thread ON notifications (thread_key) WHERE thread_key != ''",
        # "Open" is now neither delivered nor superseded.
        "DROP INDEX outbox_undelivered",
        "CREATE INDEX outbox_open_due ON outbox (channel, next_attempt_at)"
        " WHERE delivered_at IS NULL AND superseded_at IS NULL",
        "CREATE INDEX outbox_open_age ON outbox (channel, queued_at)"
        " WHERE delivered_at IS NULL AND superseded_at IS NULL",
        "CREATE INDEX outbox_superseded_by ON outbox (superseded_by) WHERE superseded_by IS NOT NULL",
    ),
)

# A bounded store (monitor.store.maintenance). The notifications table is no longer kept for ever: a
# dedup key is pruned once it can never be published again (monitor.store.recurrence). Retired runs
# leave a tombstone, and what maintenance looks rows up by gets an index. (auto_vacuum cannot change
# inside a transaction: monitor.store.maintenance converts an older file with a one-time VACUUM when
# the daemon opens it.)
_V3 = Migration(
    version=3,
    description="retention: tombstones of retired runs; indexes for pruning by age",
    statements=(
        # Set when a finished run is retired: its readings and alerts are gone, its id stays so a restart
        # neither discovers nor polls it again (and so cannot alert about it again).
        "ALTER TABLE known_runs ADD COLUMN retired_at REAL",
        "CREATE INDEX known_runs_retired ON known_runs (finished_at) WHERE retired_at IS NOT NULL",
        "CREATE INDEX known_runs_finished ON known_runs (finished_at)"
        " WHERE finished_at IS NOT NULL AND retired_at IS NULL",
        "CREATE INDEX notifications_by_time ON notifications (created_at)",
        "CREATE INDEX thread_refs_by_key ON thread_refs (thread_key)",
        # Runs forgotten before this version (alert state gone, no known_runs row) get their tombstone
        # now, finished at their last alert: their alert keys, which kept a restart that discovered them
        # again from alerting twice, may then be pruned like any retired run's.
        """INSERT OR IGNORE INTO known_runs (run_id, source, first_seen, finished_at, retired_at)
        SELECT subject, 'discovered', MIN(created_at), MAX(created_at), MAX(created_at)
        FROM (SELECT json_extract(data, '$.subject') AS subject, created_at FROM notifications
              WHERE kind IN ('alert', 'renotify', 'resolve'))
        WHERE subject IS NOT NULL AND subject != ''
        AND subject NOT IN (SELECT subject FROM alerts)
        AND subject NOT IN (SELECT wallet_id FROM wallet_latest)
        GROUP BY subject""",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3)
SCHEMA_VERSION = MIGRATIONS[-1].version

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    applied_at REAL NOT NULL,
    description TEXT NOT NULL
)"""


def read_version(conn: sqlite3.Connection) -> int:
    """The highest applied migration; 0 for an empty file."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(conn: sqlite3.Connection, *, path: str, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Bring the file up to the newest version; return the version it ends at.

    The connection must be in autocommit mode (isolation_level=None): transactions are explicit here.
    """
    supported = migrations[-1].version if migrations else 0
    found = read_version(conn)
    if found > supported:
        raise SchemaTooNewError(path=path, found=found, supported=supported)
    for migration in migrations:
        if migration.version <= found:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while this one waited for the write lock.
            current = read_version(conn)
            if current > supported:
                raise SchemaTooNewError(path=path, found=current, supported=supported)
            if current < migration.version:
                conn.execute(_VERSION_TABLE)
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, applied_at, description) VALUES (?, ?, ?)",
                    (migration.version, time.time(), migration.description),
                )
                log.info("state_store_migrated", path=path, version=migration.version)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        found = migration.version
    return read_version(conn)
