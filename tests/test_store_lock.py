"""One writer: the daemon holds an exclusive lock on `<state>.lock` for its life; a second daemon on
the same file refuses to start naming the holder; a lock left by a dead process is taken over;
`status`, `protect` and `unprotect` work beside the holder.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import structlog
import yaml

from monitor.store.state_store import LockHolder, StateLockedError, StateStore, StoreError
from tests.support.daemon import DaemonFactory, DaemonProcess
from tests.support.simulator import SimulatorHandle

HOLD_THE_LOCK = """
import sys
from monitor.logs import configure_logging
from monitor.store.state_store import StateStore
configure_logging(fmt="json", level="error")  # stdout is for "locked" only
store = StateStore(sys.argv[1], exclusive=True)
print("locked", flush=True)
sys.stdin.read()
"""


def lock_file_of(path: Path) -> Path:
    return Path(f"{path}.lock")


def start_a_holder(path: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_exclusive_open_is_refused_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore(path, exclusive=True) as daemon:
        with pytest.raises(StateLockedError) as caught:
            StateStore(path, exclusive=True)
        refused = caught.value
        assert isinstance(refused, StoreError)
        assert refused.holder == daemon.lock_holder
        assert refused.holder is not None and refused.holder.pid == os.getpid()
        message = str(refused)
        assert str(path) in message and f"pid {os.getpid()}" in message and socket.gethostname() in message
        # The holder is unharmed.
        daemon.set_meta("still", "writing")
        assert daemon.get_meta("still") == "writing"
    # Released on close: the next daemon starts.
    with StateStore(path, exclusive=True) as next_daemon:
        assert next_daemon.get_meta("still") == "writing"


def test_the_lock_file_names_the_holder_and_is_emptied_on_a_clean_release(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore(path, exclusive=True):
        written = json.loads(lock_file_of(path).read_text(encoding="utf-8"))
        assert written["pid"] == os.getpid()
        assert written["hostname"] == socket.gethostname()
        assert abs(written["started_at"] - time.time()) < 60
        assert "python" in written["command"]
    assert lock_file_of(path).read_bytes() == b""
    # Never deleted: deleting a flock'ed file lets two processes lock two inodes under one name.
    assert lock_file_of(path).exists()


def test_status_and_protect_work_beside_the_daemon_and_take_no_lock(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore(path, exclusive=True) as daemon, StateStore(path) as cli:
        cli.protect("run-a", until=None, reason="from the CLI", now=0)
        assert [p.run_id for p in daemon.protections(now=0)] == ["run-a"]
        assert cli.lock_holder is None
        with StateStore(path) as second_cli:
            assert second_cli.unprotect("run-a")


def test_memory_stores_need_no_lock() -> None:
    with StateStore(":memory:", exclusive=True) as first, StateStore(":memory:", exclusive=True) as second:
        first.probe()
        second.probe()


def test_the_lock_is_taken_before_the_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    holder = start_a_holder(path)
    try:
        path.write_bytes(b"")  # whatever the file holds, a second daemon learns first that it is taken
        with pytest.raises(StateLockedError) as caught:
            StateStore(path, exclusive=True)
        assert caught.value.holder is not None and caught.value.holder.pid == holder.pid
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    holder = start_a_holder(path)
    with pytest.raises(StateLockedError) as caught:
        StateStore(path, exclusive=True)
    assert caught.value.holder is not None and caught.value.holder.pid == holder.pid
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    # The dead holder's name is still in the file; the OS has dropped its flock.
    assert LockHolder.parse(lock_file_of(path).read_bytes()) == caught.value.holder
    with structlog.testing.capture_logs() as events, StateStore(path, exclusive=True) as successor:
        assert successor.lock_holder is not None and successor.lock_holder.pid == os.getpid()
    taken_over = [e for e in events if e["event"] == "state_lock_taken_over"]
    assert len(taken_over) == 1 and taken_over[0]["previous_holder"]["pid"] == holder.pid


def test_a_lock_file_deleted_under_the_holder_fails_its_probe(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore(path, exclusive=True) as daemon:
        daemon.probe()
        lock_file_of(path).unlink()
        # Another daemon could now lock a new file under the same name: the holder must say so.
        with pytest.raises(StoreError, match=r"lock file .*state\.db\.lock was deleted or replaced"):
            daemon.probe()


def test_a_lock_file_that_cannot_be_created_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    lock_file_of(path).mkdir()  # something in the way that is not a file
    with pytest.raises(StoreError, match=r"cannot open lock file .*state\.db\.lock"):
        StateStore(path, exclusive=True)
    assert not path.exists()  # refused before the state file was created


# -- two real daemons --------------------------------------------------------------------------------------


def wallet_polls_grow(simulator: SimulatorHandle, *, timeout: float = 15.0) -> bool:
    before = simulator.request_count("wallet")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if simulator.request_count("wallet") > before:
            return True
        time.sleep(0.2)
    return False


def state_path_of(daemon: DaemonProcess) -> str:
    return str(yaml.safe_load(daemon.config_path.read_text(encoding="utf-8"))["state"]["path"])


def second_daemon_on(first: DaemonProcess, simulator: SimulatorHandle, factory: DaemonFactory) -> DaemonProcess:
    return factory(simulator, rules=[], state_path=Path(state_path_of(first)), name="second")


def test_a_second_daemon_on_the_same_state_file_refuses_to_start_naming_the_first(
    simulator: SimulatorHandle, daemon_factory: DaemonFactory
) -> None:
    first = daemon_factory(simulator, rules=[], name="first")
    first.start()
    first.wait_for_log("daemon_started")
    assert first.proc is not None
    second = second_daemon_on(first, simulator, daemon_factory)

    for once in (False, True):
        second.start(once=once)
        assert second.proc is not None
        exit_code = second.proc.wait(timeout=30)
        output = second.log_path.read_text(encoding="utf-8")
        assert exit_code != 0, output
        assert f"pid {first.proc.pid}" in output and state_path_of(first) in output
        assert "Traceback" not in output
        second.log_path.unlink()

    assert first.proc.poll() is None
    assert wallet_polls_grow(simulator), first.tail()
    assert first.stop() == 0


def test_a_daemon_takes_over_the_lock_of_a_killed_one(
    simulator: SimulatorHandle, daemon_factory: DaemonFactory
) -> None:
    first = daemon_factory(simulator, rules=[], name="first")
    first.start()
    first.wait_for_log("daemon_started")
    assert first.proc is not None
    killed_pid = first.proc.pid
    first.kill()  # SIGKILL: no clean release, the lock file still names it

    successor = second_daemon_on(first, simulator, daemon_factory)
    successor.start()
    successor.wait_for_log("daemon_started")
    taken_over = successor.wait_for_log("state_lock_taken_over")
    assert taken_over[0]["previous_holder"]["pid"] == killed_pid
    assert wallet_polls_grow(simulator), successor.tail()
    assert successor.stop() == 0
