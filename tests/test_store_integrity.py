"""A state file that is not whole and ours is refused at open, naming the file and the reason, and left
untouched; only a path with nothing at it is created new. In-process, and through the real CLI
(`python -m monitor run --config FILE --once`: non-zero exit, the reason on stderr, no traceback).
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.snapshots import RunSnapshot
from monitor.store.file import create_if_missing
from monitor.store.state_store import SCHEMA_VERSION, SchemaTooNewError, StateFileRefusedError, StateStore, StoreError
from tests.support.daemon import DaemonFactory
from tests.support.simulator import SimulatorHandle
from tests.test_store import T0, action, run_snapshot

PAGE = 4096
SECRET = "sk-do-not-print-me-0123456789"


def a_state_file_with_rows(path: Path, *, runs: int = 20, readings: int = 300) -> Path:
    """A real state file, closed cleanly (its WAL folded in): a few hundred rows over many pages."""
    with StateStore(path) as store:
        for i in range(readings):
            store.save_run_snapshot(run_snapshot(run_id=f"run-{i % runs}", taken_at=T0 + i, cost=i / 7))
            if i % 10 == 0:
                store.append_action(action("alert_sent", created_at=T0 + i))
    assert path.stat().st_size > 20 * PAGE
    return path


def empty(path: Path) -> None:
    path.touch()


def truncated_mid_page(path: Path) -> None:
    a_state_file_with_rows(path)
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size // 2 + 123)


def truncated_at_a_page(path: Path) -> None:
    a_state_file_with_rows(path)
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size // 2 // PAGE * PAGE)


def random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(7).randbytes(64 * 1024))


def damaged_pages_in_the_middle(path: Path) -> None:
    a_state_file_with_rows(path)
    pages = path.stat().st_size // PAGE
    with path.open("r+b") as file:
        file.seek(pages // 2 * PAGE)
        file.write(random.Random(11).randbytes(2 * PAGE))


def a_config_file(path: Path) -> None:
    # A config put at state.path by mistake: it holds a secret, which must not be quoted back.
    path.write_text(f"api:\n  key: {SECRET}\nrules: []\n" * 50, encoding="utf-8")


def someone_elses_database(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO invoices (amount) VALUES (12.5)")
    conn.close()


def an_empty_sqlite_database(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("VACUUM")  # writes the header: a valid database with no tables
    conn.close()
    assert path.stat().st_size > 0


def from_a_newer_schema(path: Path) -> None:
    StateStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version (version, applied_at, description) VALUES (99, 0, 'future')")
    conn.close()


Damage = Callable[[Path], None]
# (how the file is made, the words the refusal must say)
REFUSED: dict[str, tuple[Damage, str]] = {
    "empty": (empty, "empty (0 bytes)"),
    "truncated mid-page": (truncated_mid_page, "truncated"),
    "truncated at a page boundary": (truncated_at_a_page, "damaged"),
    "random bytes": (random_bytes, "not a SQLite database"),
    "damaged pages in the middle": (damaged_pages_in_the_middle, "damaged"),
    "a config file": (a_config_file, "not a SQLite database"),
    "someone else's database": (someone_elses_database, "did not create (no schema_version table; tables: customers"),
    "an empty SQLite database": (an_empty_sqlite_database, "without prime-cost-monitor's schema"),
    "from a newer schema": (from_a_newer_schema, "schema version 99"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_bad_state_file_is_refused_naming_it_and_the_reason_and_left_untouched(tmp_path: Path, case: str) -> None:
    make, reason = REFUSED[case]
    path = tmp_path / "state.db"
    make(path)
    before = path.read_bytes()
    for exclusive in (False, True):  # `status` and the daemon alike
        with pytest.raises(StoreError) as caught:
            StateStore(path, exclusive=exclusive)
        message = str(caught.value)
        assert str(path) in message
        assert reason in message
        assert SECRET not in message
        if case == "from a newer schema":
            assert isinstance(caught.value, SchemaTooNewError)
        else:
            assert isinstance(caught.value, StateFileRefusedError)
            assert caught.value.path == str(path)
    assert path.read_bytes() == before


def test_a_refused_file_does_not_keep_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.touch()
    with pytest.raises(StateFileRefusedError):
        StateStore(path, exclusive=True)
    path.unlink()
    # The refused attempt let go of the lock: once the file is fixed, the daemon can start.
    with StateStore(path, exclusive=True) as store:
        assert store.schema_version == SCHEMA_VERSION


def test_a_file_left_by_a_crash_with_its_wal_is_accepted_with_everything_in_it(tmp_path: Path) -> None:
    running = tmp_path / "running" / "state.db"
    store = StateStore(running)
    store.save_run_snapshot(run_snapshot(cost=41.5))
    store.set_meta("k", "v")
    # What a SIGKILL leaves: the main file plus a WAL that holds the latest writes.
    crashed = tmp_path / "crashed" / "state.db"
    crashed.parent.mkdir()
    for suffix in ("", "-wal"):
        shutil.copyfile(f"{running}{suffix}", f"{crashed}{suffix}")
    store.close()
    with StateStore(crashed, exclusive=True) as reopened:
        assert reopened.latest_run_snapshots()["run-a"].total_cost_usd == 41.5
        assert reopened.get_meta("k") == "v"


def test_a_new_file_appears_only_fully_initialised(tmp_path: Path) -> None:
    path = tmp_path / "state.db"

    def crash_while_initialising(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x INTEGER)")
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(StoreError, match="cannot create state store"):
        create_if_missing(str(path), initialize=crash_while_initialising)
    # Nothing at the path (so the next start creates it afresh, instead of refusing a half-made
    # file), and no temporary file left beside it.
    assert os.listdir(tmp_path) == []
    assert create_if_missing(str(path), initialize=lambda conn: None) is True
    assert create_if_missing(str(path), initialize=lambda conn: None) is False


# -- through the real CLI ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["empty", "truncated mid-page", "damaged pages in the middle", "from a newer schema"])
def test_run_once_refuses_a_bad_state_file_with_a_message_and_no_traceback(
    simulator: SimulatorHandle, daemon_factory: DaemonFactory, tmp_path: Path, case: str
) -> None:
    make, reason = REFUSED[case]
    path = tmp_path / "volume" / "state.db"
    path.parent.mkdir()
    make(path)
    before = path.read_bytes()
    daemon = daemon_factory(simulator, rules=[], state_path=path)
    exit_code = daemon.run_once()
    output = daemon.log_path.read_text(encoding="utf-8")
    assert exit_code != 0, output
    assert str(path) in output and reason in output
    assert "Traceback" not in output
    assert path.read_bytes() == before
    # It never got as far as the API.
    assert simulator.request_count("wallet") == 0


@pytest.mark.parametrize("case", ["random bytes", "a config file", "someone else's database"])
def test_run_refuses_a_file_that_is_not_a_state_file(
    simulator: SimulatorHandle, daemon_factory: DaemonFactory, tmp_path: Path, case: str
) -> None:
    make, reason = REFUSED[case]
    path = tmp_path / "volume" / "state.db"
    path.parent.mkdir()
    make(path)
    daemon = daemon_factory(simulator, rules=[], state_path=path)
    daemon.start()
    assert daemon.proc is not None
    exit_code = daemon.proc.wait(timeout=30)
    output = daemon.log_path.read_text(encoding="utf-8")
    assert exit_code != 0, output
    assert str(path) in output and reason in output
    assert "Traceback" not in output and SECRET not in output


def test_a_row_damaged_inside_is_a_store_error_not_a_stray_value_error(tmp_path: Path) -> None:
    """Damage inside a row's bytes passes SQLite's integrity check; reading the row must still fail
    as the store failing (named, counted, alerted), never as a ValueError deep in a job."""
    path = tmp_path / "state.db"
    with StateStore(path) as store:
        store.save_run_snapshot(RunSnapshot(run_id="run-a", taken_at=1.0, total_cost_usd=1.0))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE run_latest SET data = '{not json'")
    with StateStore(path) as store, pytest.raises(StoreError, match="damaged row"):
        store.latest_run_snapshots()
