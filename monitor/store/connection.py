"""The state file's connection: opened (or created) whole and checked, the one-writer lock, the
transactions every table's methods run in, and a write probe for health checks.

`StateStore` (monitor.store.state_store) builds on it with the tables.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import structlog

from monitor.store.file import (
    MEMORY,
    FileIdentity,
    describe_sqlite_error,
    open_state_file,
    verify_still_at_path,
)
from monitor.store.lock import LockHolder, StateFileLock
from monitor.store.maintenance import convert_to_incremental_vacuum
from monitor.store.schema import StoreError

log = structlog.get_logger("monitor.store.state_store")


@dataclass(frozen=True, slots=True)
class StoreFileStats:
    """How big the state file is, and how much of it is free (for benchmarks and logs)."""

    page_size: int
    pages: int
    free_pages: int
    file_bytes: int
    wal_bytes: int


class StoreConnection:
    """One SQLite connection to the state file, shared under a lock; transactions via `_read`/`_write`."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 5000, exclusive: bool = False) -> None:
        """Open (or, only if nothing is at `path`, create) the state file.

        `exclusive`: hold the one-writer lock on `<path>.lock` until close(), taken before anything is
        read or written; raises StateLockedError naming the holder if another process has it. The
        daemon opens exclusive; `status`, `protect` and `unprotect` do not (they work beside it), and
        only the daemon converts a file made before auto_vacuum was set (a one-time VACUUM).
        An existing file that is empty, damaged, not SQLite, not ours or from a newer schema raises
        a StoreError subclass naming the file and the reason, and is left untouched.
        """
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
            if self._path != MEMORY:
                convert_to_incremental_vacuum(self._conn, self._path)
        if self.mode_warning is not None:
            log.warning("state_store_mode_too_open", path=self._path, warning=self.mode_warning)

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

    def __enter__(self) -> Self:
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

    def file_stats(self) -> StoreFileStats:
        with self._read() as conn:
            pragmas = ("page_size", "page_count", "freelist_count")
            page_size, pages, free = (int(conn.execute(f"PRAGMA {name}").fetchone()[0]) for name in pragmas)
        return StoreFileStats(
            page_size=page_size,
            pages=pages,
            free_pages=free,
            file_bytes=_size(self._path),
            wal_bytes=_size(f"{self._path}-wal"),
        )


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
