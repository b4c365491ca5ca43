"""Keeping the state file bounded: a maintenance cycle prunes what its retention lets go
(monitor.store.prune, monitor.store.retention), gives the free pages back to the file system
(`PRAGMA incremental_vacuum`) and truncates the WAL.

The daemon calls `StateStore.maintain` every few seconds from its housekeeping job, on the event loop.
The store decides: a cycle starts at most every `state.maintenance_interval` (the first one a minute
after the first call, so a restart re-derives anything a crash left half-published before anything is
pruned); a call runs bounded steps (each one short transaction of at most a few hundred rows or a few
MB of pages) until the cycle is done or STEP_BUDGET_SECONDS have passed, then returns; the next call
goes on where it stopped. So the loop is never held for much more than one step.

A file created before auto_vacuum was set (schema version 2 and older) is converted once, with a
VACUUM, when the daemon opens it, if its live data is small enough to copy in a few seconds
(`convert_to_incremental_vacuum`); until then its free pages are reused but the file does not shrink.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import structlog

from monitor.store import prune
from monitor.store.prune import RunCursor
from monitor.store.retention import KEEP_NEWEST_BALANCES, KEEP_NEWEST_READINGS, RetentionPolicy
from monitor.store.schema import StoreError

log = structlog.get_logger("monitor.store.state_store")

# A call stops starting new steps after this much time (each step is bounded on its own, see below).
STEP_BUDGET_SECONDS = 0.05
# The first cycle waits this long after the first call (see the module docstring).
STARTUP_DELAY_SECONDS = 60.0
# Bounds of one step.
ROWS_PER_STEP = 500
RUNS_PER_STEP = 500
NOTIFICATIONS_PER_STEP = 200
PAGES_PER_STEP = 512
# Below this many free pages the file is left as it is: the next inserts reuse them anyway.
VACUUM_MIN_FREE_PAGES = 256
# SQLite's own checkpoints keep the WAL near 1,000 pages (4 MB); it grows past that only while a reader
# (the CLI) holds an old snapshot, or after a burst. Past this, maintenance truncates it.
WAL_TRUNCATE_BYTES = 8 * 1024 * 1024
# The one-time VACUUM of a file from before auto_vacuum runs at open only below this much live data
# (~6 s at 40 MB/s); a bigger file waits for pruning and a later start (convert_to_incremental_vacuum).
CONVERT_AT_OPEN_MAX_BYTES = 256 * 1024 * 1024
# A finished run is retired by maintenance only this long after the daemon itself would have done it.
RETIRE_SLACK_SECONDS = 3600.0

PHASES = (
    "run_history",
    "wallet_history",
    "finished_runs",
    "tombstones",
    "notifications",
    "actions",
    "protections",
    "vacuum",
    "checkpoint",
)


@dataclass
class MaintenanceReport:
    """What one `maintain` call did."""

    at: float
    steps: int = 0
    # Rows deleted, by table ("runs_retired" counts runs retired by maintenance itself).
    deleted: dict[str, int] = field(default_factory=dict)
    pages_freed: int = 0
    seconds: float = 0.0
    worst_step_seconds: float = 0.0
    worst_step: str = ""
    # The cycle finished with this call (the next one starts a maintenance_interval later).
    cycle_done: bool = False
    error: str | None = None

    def count(self, table: str, rows: int) -> None:
        if rows:
            self.deleted[table] = self.deleted.get(table, 0) + rows


@dataclass
class _Cycle:
    """Where a cycle is: its phase and that phase's cursor."""

    phase: int = 0
    pages_freed: int = 0
    runs: RunCursor | None = field(default_factory=RunCursor)
    after: tuple[float, int] = (float("-inf"), 0)
    totals: MaintenanceReport | None = None


class Maintainer:
    def __init__(
        self,
        *,
        read: Callable[[], AbstractContextManager[sqlite3.Connection]],
        write: Callable[[], AbstractContextManager[sqlite3.Connection]],
        busy_timeout_ms: int,
        wal_path: str | None,
    ) -> None:
        self._read = read
        self._write = write
        self._busy_timeout_ms = busy_timeout_ms
        self._wal_path = wal_path
        self._next_cycle_at: float | None = None
        self._cycle: _Cycle | None = None
        self._last_error: str | None = None
        #: The totals of the last cycle that finished (for metrics and status views), None before one.
        self.last_cycle: MaintenanceReport | None = None

    def run(
        self, policy: RetentionPolicy, *, now: float, force: bool = False, budget: float = STEP_BUDGET_SECONDS
    ) -> MaintenanceReport | None:
        """Steps of the current cycle (starting one if due, or if `force`); None when nothing was due."""
        if self._cycle is None:
            if self._next_cycle_at is None and not force:
                self._next_cycle_at = now + STARTUP_DELAY_SECONDS
            if not force and (self._next_cycle_at is None or now < self._next_cycle_at):
                return None
            self._cycle = _Cycle(totals=MaintenanceReport(at=now))
        cycle = self._cycle
        report = MaintenanceReport(at=now)
        started = time.perf_counter()
        try:
            while cycle.phase < len(PHASES):
                step_started = time.perf_counter()
                name = PHASES[cycle.phase]
                if self._step(name, cycle, policy, now=now, report=report):
                    cycle.phase += 1
                    cycle.runs, cycle.after = RunCursor(), (float("-inf"), 0)
                took = time.perf_counter() - step_started
                report.steps += 1
                if took > report.worst_step_seconds:
                    report.worst_step_seconds, report.worst_step = took, name
                if time.perf_counter() - started >= budget:
                    break
        except Exception as exc:
            # Confined to maintenance (the daemon's probe says whether the store itself fails): logged
            # once per distinct error, with the traceback if it is not the store's; the cycle ends and
            # the next one tries again.
            report.error = f"{type(exc).__name__}: {exc}"
            if self._last_error != report.error:
                emit = log.error if isinstance(exc, StoreError | sqlite3.Error) else log.exception
                emit("state_store_maintenance_failed", phase=PHASES[cycle.phase], error=report.error)
            self._last_error = report.error
            cycle.phase = len(PHASES)
        report.seconds = time.perf_counter() - started
        self._fold(cycle, report)
        if cycle.phase >= len(PHASES):
            report.cycle_done = True
            self._cycle = None
            self._next_cycle_at = now + policy.maintenance_interval
            if report.error is None:
                self._last_error = None
            assert cycle.totals is not None
            self.last_cycle = cycle.totals
            self._log_cycle(cycle.totals)
        return report

    # -- one step of a phase; True when the phase is done ----------------------------------------

    def _step(
        self, name: str, cycle: _Cycle, policy: RetentionPolicy, *, now: float, report: MaintenanceReport
    ) -> bool:
        if name == "vacuum":
            freed, left = self._vacuum_step()
            report.pages_freed += freed
            cycle.pages_freed += freed
            return freed == 0 or left < VACUUM_MIN_FREE_PAGES
        if name == "checkpoint":
            self._checkpoint(shrink=cycle.pages_freed > 0)
            return True
        with self._write() as conn:
            return self._prune_step(conn, name, cycle, policy, now=now, report=report)

    def _prune_step(
        self,
        conn: sqlite3.Connection,
        name: str,
        cycle: _Cycle,
        policy: RetentionPolicy,
        *,
        now: float,
        report: MaintenanceReport,
    ) -> bool:
        if name == "run_history":
            assert cycle.runs is not None
            rows, cycle.runs = prune.sweep_run_history(
                conn,
                before=now - policy.history_seconds,
                keep_newest=KEEP_NEWEST_READINGS,
                start=cycle.runs,
                runs=RUNS_PER_STEP,
                rows=ROWS_PER_STEP,
            )
            report.count("run_history", rows)
            return cycle.runs is None
        if name == "wallet_history":
            rows = prune.prune_wallet_history(
                conn, before=now - policy.wallet_history_seconds, keep_newest=KEEP_NEWEST_BALANCES, limit=ROWS_PER_STEP
            )
            report.count("wallet_history", rows)
            return rows < ROWS_PER_STEP
        if name == "finished_runs":
            finished_before = now - policy.finished_run_seconds - policy.maintenance_interval - RETIRE_SLACK_SECONDS
            # Few rows per run by now: the history sweep ran first.
            stale = prune.stale_finished_runs(conn, finished_before=finished_before, limit=RUNS_PER_STEP // 10)
            for run_id in stale:
                prune.retire_run(conn, run_id, at=now)
            if stale:
                log.info("runs_retired_by_maintenance", runs=len(stale), first=stale[0])
            report.count("runs_retired", len(stale))
            return len(stale) < RUNS_PER_STEP // 10
        if name == "tombstones":
            rows, done = prune.prune_tombstones(
                conn, kept=policy.tombstones_kept, configured=policy.configured_runs, limit=ROWS_PER_STEP
            )
            report.count("known_runs", rows)
            return done
        if name == "notifications":
            pruned = prune.prune_notifications(
                conn, before=now - policy.notification_seconds, after=cycle.after, limit=NOTIFICATIONS_PER_STEP
            )
            report.count("notifications", pruned.notifications)
            report.count("outbox", pruned.outbox)
            report.count("thread_refs", pruned.thread_refs)
            if pruned.cursor is not None:
                cycle.after = pruned.cursor
            return pruned.cursor is None
        if name == "actions":
            rows, cursor = prune.prune_actions(
                conn,
                before=now - policy.action_seconds,
                after=cycle.after,
                configured=policy.configured_runs,
                limit=ROWS_PER_STEP,
            )
            report.count("actions", rows)
            if cursor is not None:
                cycle.after = cursor
            return cursor is None
        if name == "protections":
            rows = prune.prune_protections(conn, now=now, limit=ROWS_PER_STEP)
            report.count("protections", rows)
            return rows < ROWS_PER_STEP
        raise AssertionError(f"unknown maintenance phase {name}")

    # -- the file -------------------------------------------------------------------------------

    def _free_pages(self) -> int:
        with self._read() as conn:
            if int(conn.execute("PRAGMA auto_vacuum").fetchone()[0]) != 2:
                return 0  # not converted yet (see convert_to_incremental_vacuum): free pages are only reused
            return int(conn.execute("PRAGMA freelist_count").fetchone()[0])

    def _vacuum_step(self) -> tuple[int, int]:
        """Give up to PAGES_PER_STEP free pages back; (pages freed, free pages left)."""
        free = self._free_pages()
        if free < VACUUM_MIN_FREE_PAGES:
            return 0, free
        pages = min(free, PAGES_PER_STEP)
        with self._read() as conn:
            # executescript steps the pragma to the end (a plain execute frees a single page).
            try:
                conn.executescript(f"BEGIN IMMEDIATE; PRAGMA incremental_vacuum({pages}); COMMIT;")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            left = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        return free - left, left

    def _checkpoint(self, *, shrink: bool) -> None:
        """Pages given back reach the file system when the WAL is copied into the file: `shrink` does
        that now (PASSIVE: it never waits). A WAL past WAL_TRUNCATE_BYTES is also truncated, unless a
        reader (the CLI) is in the way: never wait for one (busy_timeout 0); the next cycle tries again."""
        truncate = self._wal_path is not None and _file_bytes(self._wal_path) > WAL_TRUNCATE_BYTES
        if not (shrink or truncate):
            return
        mode = "TRUNCATE" if truncate else "PASSIVE"
        with self._read() as conn, _busy_timeout(conn, 0, restore=self._busy_timeout_ms):
            busy, _log_pages, _done = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
            if busy:
                log.debug("state_store_checkpoint_busy", mode=mode)

    # -- bookkeeping ------------------------------------------------------------------------------

    @staticmethod
    def _fold(cycle: _Cycle, report: MaintenanceReport) -> None:
        totals = cycle.totals
        assert totals is not None
        totals.steps += report.steps
        for table, rows in report.deleted.items():
            totals.count(table, rows)
        totals.pages_freed += report.pages_freed
        totals.seconds += report.seconds
        if report.worst_step_seconds > totals.worst_step_seconds:
            totals.worst_step_seconds, totals.worst_step = report.worst_step_seconds, report.worst_step
        totals.error = report.error or totals.error

    @staticmethod
    def _log_cycle(totals: MaintenanceReport) -> None:
        emit = log.info if totals.deleted or totals.pages_freed else log.debug
        emit(
            "state_store_maintained",
            deleted=totals.deleted,
            pages_freed=totals.pages_freed,
            steps=totals.steps,
            seconds=round(totals.seconds, 4),
            worst_step=totals.worst_step,
            worst_step_ms=round(totals.worst_step_seconds * 1000, 2),
        )


@contextlib.contextmanager
def _busy_timeout(conn: sqlite3.Connection, ms: int, *, restore: int) -> Iterator[None]:
    conn.execute(f"PRAGMA busy_timeout = {int(ms)}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(restore)}")


def convert_to_incremental_vacuum(conn: sqlite3.Connection, path: str) -> bool:
    """A file made before auto_vacuum was set: switch it to INCREMENTAL with a one-time VACUUM, when the
    daemon opens it, before it polls anything. VACUUM copies the live data (about 40 MB/s on the
    development machine) and needs that much free disk again for the WAL, so a file holding more than
    CONVERT_AT_OPEN_MAX_BYTES of live data is left for a later start: maintenance prunes it meanwhile
    (its free pages are reused, the file stops growing), and the start after that converts what is left.
    A failure (a reader in the way, a full disk) is logged and changes nothing. True when converted."""
    if int(conn.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2:
        return False
    page_size, pages, free = (
        int(conn.execute(f"PRAGMA {name}").fetchone()[0]) for name in ("page_size", "page_count", "freelist_count")
    )
    live = (pages - free) * page_size
    if live > CONVERT_AT_OPEN_MAX_BYTES:
        log.warning(
            "state_store_conversion_deferred",
            path=path,
            live_bytes=live,
            hint="the file stops growing now and shrinks after a later start converts it, once pruned",
        )
        return False
    before = _file_bytes(path)
    started = time.perf_counter()
    try:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        log.warning(
            "state_store_vacuum_conversion_failed",
            path=path,
            error=str(exc),
            hint="the file keeps its size until a later start converts it",
        )
        return False
    log.info(
        "state_store_converted",
        path=path,
        auto_vacuum="incremental",
        bytes_before=before,
        bytes_after=_file_bytes(path),
        seconds=round(time.perf_counter() - started, 3),
    )
    return True


def _file_bytes(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
