"""Store failures while running surface as StoreError naming the file (never raw sqlite3 or OS errors):
a full disk, a read-only file, directory or volume, the file deleted or replaced underneath, a write
lock held past the busy timeout. `probe()` proves the store reads and writes for health checks.
File modes: new files 0600, an existing file's mode kept but warned about.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import structlog

from monitor.store.state_store import StateStore, StoreError
from tests.test_store import T0, run_snapshot


def mode_of(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- deleted or replaced underneath ------------------------------------------------------------------------


def test_a_state_file_deleted_while_open_fails_every_call_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = StateStore(path)
    store.set_meta("k", "v")
    for leftover in tmp_path.glob("state.db*"):
        leftover.unlink()
    # SQLite itself would carry on writing into the deleted file, which nobody will ever read.
    calls: list[Callable[[], object]] = [lambda: store.get_meta("k"), lambda: store.set_meta("k", "w"), store.probe]
    for call in calls:
        with pytest.raises(StoreError, match=rf"{path} was deleted while open"):
            call()
    store.close()


def test_a_state_file_replaced_while_open_fails_every_call_and_the_new_file_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = StateStore(path)
    store.save_run_snapshot(run_snapshot(cost=1.0))
    # A backup restored with `mv` over the live file.
    backup = tmp_path / "backup.db"
    with StateStore(backup) as other:
        other.protect("run-a", until=None, reason="in the backup", now=T0)
    os.replace(backup, path)
    restored = path.read_bytes()
    calls: list[Callable[[], object]] = [
        store.latest_run_snapshots,
        lambda: store.save_run_snapshot(run_snapshot(cost=2.0)),
        store.probe,
    ]
    for call in calls:
        with pytest.raises(StoreError, match=rf"{path} was replaced by another file while open"):
            call()
    store.close()
    assert path.read_bytes() == restored


# -- locked, read-only, full -------------------------------------------------------------------------------


def test_a_probe_past_the_busy_timeout_is_a_store_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore(path) as cli, StateStore(path, busy_timeout_ms=10) as daemon:
        with cli._write(), pytest.raises(StoreError, match=rf"{path}: database is locked \(another process held"):
            daemon.probe()
        daemon.probe()  # the writer is gone: healthy again


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make a file or directory read-only for this process, root included (root ignores mode bits,
    so as root the immutable attribute stands in for them)."""
    if os.geteuid() != 0:
        original = mode_of(path)
        path.chmod(original & ~0o222)
        try:
            yield
        finally:
            path.chmod(original)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: cannot make a file read-only for root")
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make {path} immutable here: {made.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize(
    ("what", "reason"),
    [
        ("file", "attempt to write a readonly database (the file or its directory is read-only"),
        ("directory", "unable to open database file (the file or its directory cannot be opened"),
    ],
)
def test_a_daemon_refuses_to_start_on_a_read_only_state_file_or_directory(
    tmp_path: Path, what: str, reason: str
) -> None:
    path = tmp_path / "volume" / "state.db"
    path.parent.mkdir()
    with StateStore(path, exclusive=True) as store:  # a daemon ran here before
        store.set_meta("k", "v")
    with read_only(path if what == "file" else path.parent):
        with pytest.raises(StoreError) as caught:
            StateStore(path, exclusive=True)
        assert str(path) in str(caught.value) and reason in str(caught.value)
        if what == "file":
            # `status` only reads: a read-only file is fine for it.
            with StateStore(path) as status:
                assert status.get_meta("k") == "v"


IN_A_SMALL_VOLUME = r"""
import json, os, subprocess, sys
from monitor.logs import configure_logging
from monitor.store.state_store import StateStore, StoreError

configure_logging(fmt="json", level="critical")
volume = sys.argv[1]
path = os.path.join(volume, "state.db")
seen = {}

def attempt(name, call):
    try:
        seen[name] = ["ok", call()]
    except StoreError as exc:
        seen[name] = ["StoreError", str(exc)]
    except BaseException as exc:
        seen[name] = [type(exc).__name__, str(exc)]

store = StateStore(path, exclusive=True)
store.set_meta("before", "kept")
filler = os.open(os.path.join(volume, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
try:
    while True:
        os.write(filler, bytes(65536))
except OSError:
    os.close(filler)
attempt("write when full", lambda: store.set_meta("big", "y" * 300_000))
attempt("probe when full", store.probe)
attempt("read when full", lambda: store.get_meta("before"))
os.unlink(os.path.join(volume, "filler"))
attempt("write after freeing space", lambda: store.set_meta("big", "y" * 300_000))
attempt("probe after freeing space", store.probe)
store.close()
subprocess.run(["mount", "-o", "remount,ro", volume], check=True)
attempt("daemon on a read-only volume", lambda: StateStore(path, exclusive=True))
print(json.dumps(seen))
"""


def test_a_full_disk_and_a_read_only_volume_are_store_errors_naming_the_file(tmp_path: Path) -> None:
    """A real 1 MB tmpfs in a private mount namespace (unshare as a mapped root user): real ENOSPC and
    EROFS, gone when the process exits."""
    volume = tmp_path / "volume"
    volume.mkdir()
    mount_and_run = f'mount -t tmpfs -o size=1m tmpfs "$1" && exec "{sys.executable}" -c "$2" "$1"'
    in_a_namespace = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", mount_and_run, "sh"]
    try:
        done = subprocess.run(
            [*in_a_namespace, str(volume), IN_A_SMALL_VOLUME],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except FileNotFoundError:
        pytest.skip("no unshare(1) here")
    if done.returncode != 0 and "mount" in done.stderr and "Traceback" not in done.stderr:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    state = str(volume / "state.db")
    for name in ("write when full", "probe when full"):
        kind, message = seen[name]
        assert kind == "StoreError" and state in message and "disk is full" in message, seen
    assert seen["read when full"] == ["ok", "kept"]
    assert seen["write after freeing space"][0] == "ok" and seen["probe after freeing space"][0] == "ok"
    kind, message = seen["daemon on a read-only volume"]
    assert kind == "StoreError" and state in message and "Read-only file system" in message, seen


# -- probe -------------------------------------------------------------------------------------------------


def test_probe_writes_and_reads_without_changing_anything_else(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore(path, exclusive=True) as store:
        store.save_run_snapshot(run_snapshot())
        before = (store.latest_run_snapshots(), store.actions(), store.known_runs())
        for _ in range(3):
            store.probe()
        assert (store.latest_run_snapshots(), store.actions(), store.known_runs()) == before
    with sqlite3.connect(path) as conn:
        # One counter row, not one row per probe.
        assert conn.execute("SELECT value FROM meta WHERE key = 'store_probe'").fetchall() == [("4",)]
    conn.close()


def test_probe_on_a_closed_store_says_so(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    store.close()
    with pytest.raises(StoreError, match="is closed"):
        store.probe()


# -- file modes --------------------------------------------------------------------------------------------


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    # With umask 0, anything not created 0600 on purpose would be world-readable (and writable).
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_new_state_wal_shm_and_lock_files_are_owner_only(tmp_path: Path, permissive_umask: None) -> None:
    path = tmp_path / "state.db"
    with StateStore(path, exclusive=True) as store:
        store.set_meta("k", "v")
        assert store.mode_warning is None
        made = {p.name: mode_of(p) for p in tmp_path.iterdir()}
    assert made == {name: 0o600 for name in ("state.db", "state.db-wal", "state.db-shm", "state.db.lock")}


def test_an_existing_file_readable_by_others_keeps_its_mode_with_one_warning(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateStore(path).close()
    path.chmod(0o644)
    with structlog.testing.capture_logs() as events, StateStore(path) as store:
        assert store.mode_warning is not None
        assert str(path) in store.mode_warning and "0644" in store.mode_warning
        store.set_meta("k", "v")
        store.probe()
    assert mode_of(path) == 0o644
    assert [e["event"] for e in events if e["log_level"] == "warning"] == ["state_store_mode_too_open"]
    path.chmod(0o600)
    with StateStore(path) as store:
        assert store.mode_warning is None
