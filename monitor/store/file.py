"""The state store's file on disk: created whole with mode 0600, checked before it is trusted, and
watched for being deleted or replaced while open. (The one-writer lock is in store_lock.)

Why each guard exists:
- sqlite3 opens a 0-byte file as an empty database, and an empty file is exactly what a failed
  write or a volume that did not mount leaves behind. Taking it as new would forget every alert
  (and send them all again) and the action log. So only a path that does not exist is created,
  and a new file appears at its path only fully initialised (built beside it, then linked in), so a
  crash during the first start cannot leave a file that the next start would have to refuse.
- A file that is damaged, truncated, not SQLite, someone else's database, or from a newer schema
  is refused before anything writes to it, naming the file and the reason, and is left as it was
  for whoever investigates.
- An open SQLite connection keeps writing to a file that was deleted or replaced (a backup
  restored with `mv`), silently: the store compares the path's inode with the one it opened.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from monitor.store.schema import StoreError, migrate

MEMORY = ":memory:"
SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_HEADER_BYTES = 100
# integrity_check (not quick_check): it also proves every index matches its table, and the action
# log's intent lookups read through indexes. Measured on a 50 MB state file (bench/store_open_bench.py):
# about 0.14 s warm and 0.42 s cold, against 0.045 s and 0.33 s for quick_check; cold, reading the
# file dominates both. Only the first few problems are listed in the message.
_INTEGRITY_PRAGMA = "PRAGMA integrity_check(5)"
# Owner read/write only: the file holds run names, costs and the whole action log.
FILE_MODE = 0o600
AUTO_VACUUM = "INCREMENTAL"
# A WAL that a burst (a one-time VACUUM, a big prune) grew is cut back to this after a checkpoint.
JOURNAL_SIZE_LIMIT_BYTES = 16 * 1024 * 1024


class StateFileRefusedError(StoreError):
    """The file at state.path exists but is not a usable prime-cost-monitor state file; it is left
    untouched, never taken as new."""

    def __init__(self, *, path: str, reason: str) -> None:
        super().__init__(
            f"state store {path} refused: {reason}. The file was left as it is; restore it from a "
            "backup, or move it aside to start with an empty state (every alert would be sent again)"
        )
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """Which file a path names: a file deleted or replaced under an open connection changes it."""

    device: int
    inode: int

    @classmethod
    def of_fd(cls, fd: int) -> FileIdentity:
        stat = os.fstat(fd)
        return cls(device=stat.st_dev, inode=stat.st_ino)

    @classmethod
    def of_path(cls, path: str) -> FileIdentity:
        stat = os.stat(path)
        return cls(device=stat.st_dev, inode=stat.st_ino)


def identity_at(path: str) -> FileIdentity | None:
    try:
        return FileIdentity.of_path(path)
    except OSError:
        return None


def verify_still_at_path(path: str, opened: FileIdentity) -> None:
    """Raise StoreError if the file opened is no longer the one at `path`."""
    current = identity_at(path)
    if current == opened:
        return
    what = "deleted" if current is None else "replaced by another file"
    raise StoreError(
        f"state store {path} was {what} while open: writes would go to a file nobody reads; "
        "restart the daemon to open the file now at that path"
    )


# -- creating a new file ---------------------------------------------------------------------------


def create_if_missing(path: str, *, initialize: Callable[[sqlite3.Connection], object]) -> bool:
    """Create a new state file at `path` if nothing is there; True if this call created it.

    The file is built under a temporary name in the same directory (mode 0600, initialised,
    closed, flushed) and then hard-linked into place, which fails if the path appeared meanwhile:
    `path` never names a half-made file, and two processes racing to create it end with one file.
    """
    if os.path.lexists(path):
        return False
    directory = os.path.dirname(os.path.abspath(path))
    temporary = f"{path}.new-{os.getpid()}-{time.monotonic_ns()}"
    try:
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE))
        conn = sqlite3.connect(temporary, isolation_level=None)
        try:
            # Before anything writes the header (even the switch to WAL): pruned rows give their pages
            # back to the file system (monitor.store.maintenance), instead of the file never shrinking.
            conn.execute(f"PRAGMA auto_vacuum = {AUTO_VACUUM}")
            conn.execute("PRAGMA journal_mode = WAL")
            initialize(conn)
        finally:
            # The last connection's close checkpoints the WAL into the file and removes -wal/-shm.
            conn.close()
        _fsync_path(temporary)
        created = _link_no_replace(temporary, path)
        # Makes the new name durable; some filesystems cannot fsync a directory, and the file is
        # whole either way.
        with contextlib.suppress(OSError):
            _fsync_path(directory)
        return created
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot create state store {path}: {exc}") from exc
    finally:
        for leftover in (temporary, f"{temporary}-wal", f"{temporary}-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


def _link_no_replace(source: str, target: str) -> bool:
    try:
        os.link(source, target)
        return True
    except FileExistsError:
        return False
    except OSError:
        # A filesystem without hard links: rename replaces, so re-check first (a narrow race
        # with another first start, acceptable where links do not exist).
        if os.path.lexists(target):
            return False
        os.rename(source, target)
        return True


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- checking an existing file ---------------------------------------------------------------------


def check_header(path: str) -> None:
    """Refuse what is plainly not a whole SQLite file, before sqlite3 sees it.

    The file's bytes are never quoted in the message: a config file put at state.path by mistake
    holds secrets.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as file:
            header = file.read(SQLITE_HEADER_BYTES)
    except OSError as exc:
        raise StoreError(f"cannot read state store {path}: {exc}") from exc
    if size == 0:
        raise StateFileRefusedError(
            path=path, reason="the file is empty (0 bytes), as a failed write or an unmounted volume leaves it"
        )
    if not header.startswith(SQLITE_MAGIC):
        raise StateFileRefusedError(path=path, reason=f"not a SQLite database ({size} bytes without the SQLite header)")
    if size < SQLITE_HEADER_BYTES:
        raise StateFileRefusedError(path=path, reason=f"truncated ({size} bytes, shorter than a SQLite header)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise StateFileRefusedError(path=path, reason=f"damaged header (page size {page_size})")
    if size % page_size:
        raise StateFileRefusedError(
            path=path, reason=f"truncated ({size} bytes is not a whole number of {page_size}-byte pages)"
        )


def check_integrity(conn: sqlite3.Connection, path: str) -> None:
    """Run SQLite's integrity check; refuse the file if it finds anything."""
    try:
        problems = [str(row[0]) for row in conn.execute(_INTEGRITY_PRAGMA).fetchall()]
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
            raise StateFileRefusedError(path=path, reason=f"damaged ({exc})") from exc
        raise
    if problems != ["ok"]:
        raise StateFileRefusedError(path=path, reason="damaged (SQLite integrity check: " + "; ".join(problems) + ")")


def check_ownership(conn: sqlite3.Connection, path: str) -> None:
    """Refuse a SQLite file that prime-cost-monitor did not create: migrating it would write our
    tables into someone else's database."""
    tables = [
        str(row[0])
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    if "schema_version" in tables:
        return
    if not tables:
        reason = "an empty SQLite database without prime-cost-monitor's schema (no tables)"
    else:
        shown = ", ".join(tables[:8]) + (", ..." if len(tables) > 8 else "")
        reason = f"a SQLite database that prime-cost-monitor did not create (no schema_version table; tables: {shown})"
    raise StateFileRefusedError(path=path, reason=reason)


def mode_warning(path: str) -> str | None:
    """A warning if group or others may read the existing file; its mode is left as the owner set it."""
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        return None
    if not mode & 0o077:
        return None
    return (
        f"state store {path} has mode {mode:04o}: group or others can read runs, costs and the action log; "
        f"chmod 600 {Path(path).name} to restrict it"
    )


def describe_sqlite_error(exc: sqlite3.Error) -> str:
    """The error with a hint at the usual cause, for messages that name the file."""
    name = str(getattr(exc, "sqlite_errorname", ""))
    # Extended codes (SQLITE_READONLY_DBMOVED, SQLITE_IOERR_WRITE) share their primary code's cause.
    primary = "_".join(name.split("_")[:2])
    return f"{exc}{_HINTS.get(primary, '')}"


_HINTS = {
    "SQLITE_FULL": " (the disk or volume is full)",
    "SQLITE_READONLY": " (the file or its directory is read-only, or the volume was remounted read-only)",
    "SQLITE_BUSY": " (another process held the write lock past the busy timeout)",
    "SQLITE_IOERR": " (the disk or volume failed a read or write)",
    "SQLITE_CANTOPEN": " (the file or its directory cannot be opened: missing, permissions, or a read-only volume)",
}


# -- opening ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenedStateFile:
    conn: sqlite3.Connection
    schema_version: int
    # None for :memory:; otherwise the file opened, to notice it being deleted or replaced.
    identity: FileIdentity | None
    # Set when an existing file is readable by group or others.
    mode_warning: str | None


def open_state_file(path: str, *, busy_timeout_ms: int) -> OpenedStateFile:
    """Connect to the state file at `path` (creating it only if nothing is there), refuse it unless it
    is a whole, undamaged prime-cost-monitor file of a schema this version knows, then migrate it.
    Every failure is a StoreError naming the file."""
    if path == MEMORY:
        conn = _connect(path, busy_timeout_ms)
        return OpenedStateFile(conn=conn, schema_version=_prepare(conn, path), identity=None, mode_warning=None)
    created = create_if_missing(path, initialize=lambda conn: migrate(conn, path=path))
    check_header(path)
    conn = _connect(path, busy_timeout_ms)
    try:
        try:
            # Before anything writes: even switching to WAL rewrites the header.
            check_integrity(conn, path)
            check_ownership(conn, path)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open state store {path}: {describe_sqlite_error(exc)}") from exc
        version = _prepare(conn, path)
        identity = FileIdentity.of_path(path)
    except OSError as exc:
        conn.close()
        raise StoreError(f"cannot open state store {path}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return OpenedStateFile(
        conn=conn, schema_version=version, identity=identity, mode_warning=None if created else mode_warning(path)
    )


def _connect(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open state store {path}: {describe_sqlite_error(exc)}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"cannot open state store {path}: {describe_sqlite_error(exc)}") from exc
    return conn


def _prepare(conn: sqlite3.Connection, path: str) -> int:
    """Journal settings, then migrations; the schema version the file ends at."""
    try:
        if path == MEMORY:
            conn.execute(f"PRAGMA auto_vacuum = {AUTO_VACUUM}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES}")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        return migrate(conn, path=path)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open state store {path}: {describe_sqlite_error(exc)}") from exc
