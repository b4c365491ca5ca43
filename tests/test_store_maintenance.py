"""Keeping the state file bounded: the file shrinks after pruning, an old file is converted once, a
maintenance call is short and a backlog is worked off over several, failures stay inside maintenance,
and the daemon, restarted after pruning, sends nothing twice and does not read retired runs again.

What is kept and what is pruned: test_store_retention.py.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import structlog

from monitor.snapshots import RunSnapshot
from monitor.store import maintenance
from monitor.store.codec import (
    READING_LAYOUT,
    READING_LAYOUTS,
    decode_run_snapshot,
    encode_run_reading,
    encode_run_snapshot,
)
from monitor.store.maintenance import NOTIFICATIONS_PER_STEP, ROWS_PER_STEP, STARTUP_DELAY_SECONDS, MaintenanceReport
from monitor.store.retention import KEEP_NEWEST_READINGS
from monitor.store.schema import MIGRATIONS, StoreError, migrate
from monitor.store.state_store import StateStore
from tests.support.rig import MonitorRig
from tests.support.simulator import running_simulator
from tests.test_store import T0, run_snapshot
from tests.test_store_retention import DAY, POLICY, maintain
from tests.test_trust import CAP, FAST, SLOW, run, scenario, settings


def fill(store: StateStore, *, runs: int, readings: int, start: float = T0) -> None:
    for r in range(runs):
        for i in range(readings):
            store.save_run_snapshot(run_snapshot(f"run-{r:03d}", taken_at=start + 30 * i, cost=float(i)))


def pragma(path: Path, name: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"PRAGMA {name}").fetchone()[0])


def test_pruning_gives_the_space_back_to_the_file_system(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore(path, exclusive=True) as store:  # no retention yet: today's row cap only
        fill(store, runs=40, readings=300)
        full = store.file_stats()
        assert full.file_bytes > 3_000_000  # 12,000 readings
        maintain(store, now=T0 + 30 * 300 + 3600)
        small = store.file_stats()
    assert pragma(path, "auto_vacuum") == 2  # incremental, from creation
    # 5 of 300 readings a run are left: the file is what they need, plus under 1 MB left free for reuse.
    assert small.free_pages < maintenance.VACUUM_MIN_FREE_PAGES
    assert small.file_bytes == small.pages * small.page_size < full.file_bytes / 2
    with StateStore(path) as reopened:
        assert len(reopened.run_history("run-000")) == 5


def test_a_wal_grown_behind_a_reader_is_truncated_without_waiting_for_it(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore(path, busy_timeout_ms=5000) as store:
        reader = sqlite3.connect(path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM run_history").fetchone()  # `status` holding its snapshot
        fill(store, runs=10, readings=60)  # SQLite's own checkpoints cannot reset the WAL meanwhile
        grown = store.file_stats().wal_bytes
        assert grown > maintenance.WAL_TRUNCATE_BYTES
        report = store.maintain(POLICY, now=T0, force=True)
        assert report is not None and report.cycle_done and report.error is None
        assert report.worst_step_seconds < 4.0  # did not sit out the 5 s busy timeout
        reader.execute("ROLLBACK")
        reader.close()
        assert store.maintain(POLICY, now=T0 + 300) is not None
        assert store.file_stats().wal_bytes == 0


def version_2_file(path: Path) -> None:
    """A state file as version 2 made it: no auto_vacuum."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    migrate(conn, path=str(path), migrations=MIGRATIONS[:2])
    conn.close()
    path.chmod(0o600)


def test_a_file_from_before_retention_is_converted_once_by_the_daemon_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    version_2_file(path)
    conn = sqlite3.connect(path, isolation_level=None)
    # A run forgotten by the old code: its alert's dedup key was all that stopped a second alert.
    conn.execute(
        "INSERT INTO notifications (dedup_key, created_at, data, kind, thread_key) VALUES"
        " ('alert:run-gone:run-cap:e0:t1', ?, '{\"subject\": \"run-gone\"}', 'alert', 'run-gone:run-cap:e0')",
        (T0,),
    )
    conn.close()
    with StateStore(path) as cli:  # `status` beside the daemon: migrates, never rewrites the file
        assert cli.schema_version == 3
        cli.save_run_snapshot(run_snapshot())
    assert pragma(path, "auto_vacuum") == 0
    with structlog.testing.capture_logs() as events, StateStore(path, exclusive=True) as daemon:
        assert daemon.latest_run_snapshots() == {"run-a": run_snapshot()}
        # The forgotten run got its tombstone, so a restart treats it as finished.
        gone = daemon.known_runs()["run-gone"]
        assert gone.finished_at == T0 and gone.retired_at == T0
    assert [e["event"] for e in events if e["event"].startswith("state_store_conv")] == ["state_store_converted"]
    assert pragma(path, "auto_vacuum") == 2
    with structlog.testing.capture_logs() as again, StateStore(path, exclusive=True):
        pass
    assert not [e for e in again if e["event"] == "state_store_converted"]


def test_a_big_old_file_is_converted_only_once_pruning_made_it_small(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maintenance, "CONVERT_AT_OPEN_MAX_BYTES", 500_000)
    path = tmp_path / "old.db"
    version_2_file(path)
    with StateStore(path) as old_daemon:
        fill(old_daemon, runs=10, readings=300)  # ~1 MB of readings
    with structlog.testing.capture_logs() as events, StateStore(path, exclusive=True) as daemon:
        maintain(daemon, now=T0 + 30 * 300 + 3600)  # prunes; the free pages are reused, not returned
    assert [e["event"] for e in events if e["event"].startswith("state_store_conv")] == [
        "state_store_conversion_deferred"
    ]
    assert pragma(path, "auto_vacuum") == 0
    big = path.stat().st_size
    with structlog.testing.capture_logs() as later, StateStore(path, exclusive=True) as restarted:
        assert len(restarted.run_history("run-009")) == 5
    assert [e["event"] for e in later if e["event"].startswith("state_store_conv")] == ["state_store_converted"]
    assert pragma(path, "auto_vacuum") == 2 and path.stat().st_size < big / 3


def test_a_cycle_starts_a_minute_after_the_first_call_then_every_interval(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.db") as store:
        assert store.maintain(POLICY, now=T0) is None
        assert store.maintain(POLICY, now=T0 + STARTUP_DELAY_SECONDS - 1) is None
        assert store.last_maintenance is None
        first = store.maintain(POLICY, now=T0 + STARTUP_DELAY_SECONDS)
        assert first is not None and first.cycle_done and first.error is None
        assert store.last_maintenance is not None and store.last_maintenance.at == T0 + STARTUP_DELAY_SECONDS
        assert store.maintain(POLICY, now=T0 + STARTUP_DELAY_SECONDS + 299) is None
        assert store.maintain(POLICY, now=T0 + STARTUP_DELAY_SECONDS + 300) is not None


def test_a_backlog_is_worked_off_in_bounded_steps_over_several_calls(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.db") as store:
        fill(store, runs=30, readings=100)  # 3,000 readings, before any time bound
        for i in range(500):
            store.outbox.enqueue(
                replace(_note(f"cap-{i}"), kind="delete_cap_reached"), channels=["slack", "webhook"], now=T0
            )
        for item in store.outbox.pending():
            store.outbox.mark_delivered(item.id, now=T0)
        reports: list[MaintenanceReport] = []
        while not reports or not reports[-1].cycle_done:
            report = store.maintain(POLICY, now=T0 + 30 * DAY, force=True, budget=0.0)  # one step per call
            assert report is not None and report.steps == 1 and report.error is None
            reports.append(report)
        for report in reports:
            assert report.deleted.get("run_history", 0) <= ROWS_PER_STEP
            assert report.deleted.get("notifications", 0) <= NOTIFICATIONS_PER_STEP
        assert sum(r.deleted.get("run_history", 0) for r in reports) == 30 * (100 - 5)
        assert sum(r.deleted.get("notifications", 0) for r in reports) == 500
        assert sum(r.deleted.get("outbox", 0) for r in reports) == 1000
        assert len(reports) >= 3000 // ROWS_PER_STEP


def _note(key: str) -> Any:
    from tests.test_store import notification

    return replace(notification(key), thread_key="")


def test_a_failing_step_is_logged_once_and_stays_inside_maintenance(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore(path, busy_timeout_ms=50) as store:
        fill(store, runs=1, readings=20)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with structlog.testing.capture_logs() as events:
            first = store.maintain(POLICY, now=T0 + DAY, force=True)
            second = store.maintain(POLICY, now=T0 + DAY + 400)
        assert first is not None and first.cycle_done and first.error is not None and "locked" in first.error
        assert second is not None and second.error == first.error
        assert [e["event"] for e in events if e["log_level"] == "error"] == ["state_store_maintenance_failed"]
        other.execute("ROLLBACK")
        other.close()
        third = store.maintain(POLICY, now=T0 + DAY + 800)
        assert third is not None and third.error is None and third.deleted == {"run_history": 15}


def test_a_reading_is_stored_compactly_read_back_exactly_and_old_rows_still_read() -> None:
    snapshot = run_snapshot()
    stored = set(RunSnapshot.__dataclass_fields__) - {"run_id", "taken_at", "taken_mono"}
    assert set(READING_LAYOUTS[READING_LAYOUT]) == stored, "a new RunSnapshot field needs a new layout"
    compact, old = encode_run_reading(snapshot), encode_run_snapshot(snapshot.to_dict())
    assert len(compact) < len(old) / 1.5
    assert decode_run_snapshot("run-a", T0, compact) == snapshot == decode_run_snapshot("run-a", T0, old)
    for damaged in (compact.replace("[1,", "[1,0,", 1), "[]", "[99]", '{"x"'):
        with pytest.raises(StoreError, match="damaged row"):
            decode_run_snapshot("run-a", T0, damaged)


# -- the daemon -----------------------------------------------------------------------------------------


async def test_after_pruning_a_restart_sends_nothing_twice_and_reads_no_retired_run(tmp_path: Path) -> None:
    """A run that breaches and stays breached (a reminder every hour), a run that alerted and finished
    (retired an hour later); three days on a manual clock with maintenance on and a one-day notification
    retention, then a restart: every message exactly once, the finished run never read again."""
    runs = [run("run-hot", FAST), run("run-done", SLOW, max_steps=20)]
    with running_simulator(scenario(*runs), manual_clock=True) as sim:
        config = settings(
            sim,
            tmp_path,
            watch={"runs": ["run-hot", "run-done"], "retention": "1h"},
            rules=[
                {"name": "run-cap", "scope": "run", "metric": "total_cost_usd", "threshold": CAP, "action": "alert"},
                {
                    "name": "tiny",
                    "scope": "run",
                    "match": {"run_id": "run-done"},
                    "metric": "total_cost_usd",
                    "threshold": 0.001,
                    "action": "alert",
                    "renotify": None,
                },
            ],
            state={"notification_retention": "1d", "maintenance_interval": "10m"},
        )
        rig = await MonitorRig(sim, config).start()
        await rig.steps(60, 15.0)  # 15 minutes: run-hot breaches, run-done alerts and finishes (10 min)
        assert "alert" in rig.kinds("run-hot") and "alert" in rig.kinds("run-done")
        assert rig.parts.poller.watch.finished.keys() == {"run-done"}
        await rig.steps(72, 3600.0)
        store = rig.parts.store
        assert store.known_runs()["run-done"].retired_at is not None
        with store._read() as conn:
            keys = {str(k) for (k,) in conn.execute("SELECT dedup_key FROM notifications")}
        # The open episode of run-hot keeps its keys; the retired run's alert is pruned.
        assert "alert:run-hot:run-cap:e0:t1" in keys and not any("run-done" in k for k in keys)
        assert len(store.run_history("run-hot")) == KEEP_NEWEST_READINGS  # an hour apart: older than the window
        sent_before = len(rig.sent)
        done_reads = sim.request_count("usage")
        rig = await rig.restart()
        sim.reset_requests()
        await rig.steps(8, 15.0)
        new = rig.sent[sent_before:]
        assert all(n.kind == "renotify" for n in new), [n.dedup_key for n in new]
        keys_sent = [n.dedup_key for n in rig.sent]
        assert len(keys_sent) == len(set(keys_sent)), "a message was sent twice"
        assert "run-done" not in rig.parts.poller.watch.active() and done_reads > 0
        assert all("run-done" not in r["path"] for r in sim.requests()["recent"])
        await rig.close()
