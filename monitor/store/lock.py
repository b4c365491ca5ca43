"""The one-writer lock on a state file: an exclusive, non-blocking flock on `<state>.lock`, held by
the daemon for its life, with the holder's name written inside for whoever is refused.

Two daemons on one file would both announce and both send a DELETE. The OS drops a flock when
its holder dies, so a lock file left by a crash is simply taken over. The lock file is never
deleted: deleting a flock'ed file lets two processes each lock a different inode under one name.
flock works between processes and containers on one host; on NFS, Linux maps it to NFS byte-range
locks (NFSv4: works across hosts); some network filesystems ignore it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import structlog

from monitor.store.file import FILE_MODE, FileIdentity, identity_at
from monitor.store.schema import StoreError

log = structlog.get_logger(__name__)

_HOLDER_MAX_BYTES = 4096
_LOCK_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds a state file's lock, as written into `<state>.lock` by the holder itself."""

    pid: int
    hostname: str
    started_at: float
    command: str

    @classmethod
    def of_this_process(cls) -> LockHolder:
        return cls(
            pid=os.getpid(),
            hostname=socket.gethostname(),
            started_at=time.time(),
            command=" ".join(getattr(sys, "orig_argv", sys.argv)),
        )

    @classmethod
    def parse(cls, raw: bytes) -> LockHolder | None:
        try:
            data = json.loads(raw.decode("utf-8"))
            return cls(
                pid=int(data["pid"]),
                hostname=str(data["hostname"]),
                started_at=float(data["started_at"]),
                command=str(data["command"]),
            )
        except (ValueError, TypeError, KeyError):
            return None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode("utf-8")

    def describe(self) -> str:
        started = datetime.fromtimestamp(self.started_at, tz=UTC).isoformat(timespec="seconds")
        return f"pid {self.pid} on host {self.hostname}, started {started}, command: {self.command}"


class StateLockedError(StoreError):
    """Another process holds the state file's lock: a second daemon on the same file refuses to start."""

    def __init__(self, *, path: str, lock_path: str, holder: LockHolder | None) -> None:
        who = holder.describe() if holder is not None else "a process that has not written its name yet"
        hint = ""
        if holder is not None and holder.hostname != socket.gethostname():
            hint = " (on another host sharing this volume)"
        super().__init__(
            f"state store {path} is in use by another prime-cost-monitor daemon: {who}{hint}. "
            f"Only one daemon may use a state file; stop that one first (lock file: {lock_path})"
        )
        self.path = path
        self.lock_path = lock_path
        self.holder = holder


def lock_path_for(state_path: str) -> str:
    return f"{state_path}.lock"


class StateFileLock:
    """An exclusive, non-blocking flock on `<state>.lock`, held until `release()` or process death."""

    def __init__(self, *, state_path: str, lock_path: str, fd: int, holder: LockHolder) -> None:
        self.state_path = state_path
        self.lock_path = lock_path
        self.holder = holder
        self._fd: int | None = fd
        self._identity = FileIdentity.of_fd(fd)

    @classmethod
    def acquire(cls, state_path: str) -> StateFileLock:
        """Take the lock or raise StateLockedError naming the holder (StoreError if the lock file
        cannot be created at all)."""
        lock_path = lock_path_for(state_path)
        for _ in range(_LOCK_ATTEMPTS):
            fd = _open_lock_file(state_path, lock_path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = LockHolder.parse(_read_all(fd))
                os.close(fd)
                raise StateLockedError(path=state_path, lock_path=lock_path, holder=holder) from None
            except OSError as exc:
                os.close(fd)
                raise StoreError(f"state store {state_path}: cannot lock {lock_path}: {exc}") from exc
            # Locked an inode that is no longer at the path (someone removed the lock file between
            # our open and flock): that lock guards nothing, try again with the file now there.
            if identity_at(lock_path) != FileIdentity.of_fd(fd):
                os.close(fd)
                continue
            try:
                return cls._take(state_path=state_path, lock_path=lock_path, fd=fd)
            except OSError as exc:
                os.close(fd)
                raise StoreError(f"state store {state_path}: cannot write {lock_path}: {exc}") from exc
        raise StoreError(f"state store {state_path}: {lock_path} keeps being replaced; cannot lock it")

    @classmethod
    def _take(cls, *, state_path: str, lock_path: str, fd: int) -> StateFileLock:
        previous = LockHolder.parse(_read_all(fd))
        if previous is not None:
            # A clean release empties the file, so a name left in it means its holder died holding it.
            log.warning("state_lock_taken_over", path=state_path, previous_holder=asdict(previous))
        holder = LockHolder.of_this_process()
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.to_json(), 0)
        return cls(state_path=state_path, lock_path=lock_path, fd=fd, holder=holder)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def verify(self) -> None:
        """Raise StoreError if the lock file was deleted or replaced: a second daemon could then lock
        a new file under the same name, and this lock would no longer keep it out."""
        if self._fd is None:
            raise StoreError(f"state store {self.state_path}: the lock was released")
        if identity_at(self.lock_path) != self._identity:
            raise StoreError(
                f"state store {self.state_path}: the lock file {self.lock_path} was deleted or replaced "
                "while this daemon held it, so another daemon may now use the same state file; restart it"
            )

    def release(self) -> None:
        """Idempotent. Empties the file first so the next holder can tell a clean exit from a crash."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the last descriptor drops the flock


def _open_lock_file(state_path: str, lock_path: str) -> int:
    try:
        return os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        raise StoreError(f"state store {state_path}: cannot open lock file {lock_path}: {exc}") from exc


def _read_all(fd: int) -> bytes:
    try:
        return os.pread(fd, _HOLDER_MAX_BYTES, 0)
    except OSError:
        return b""
