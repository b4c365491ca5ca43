"""Reads the API: each run's usage, the wallet, and the set of runs to watch.

Every run is read and processed on its own: a failure of any kind while reading, judging or
evaluating one run (an API error, bad data, a bug) marks that run's health and nothing else, and the
other runs of the pass go on. A reading reaches the rules only when the reading model accepted it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from fnmatch import fnmatchcase

import structlog

from monitor.api.client import PrimeClient
from monitor.clock import Clock
from monitor.config.settings import Settings
from monitor.exporter.live import RuntimeState
from monitor.readings.discovery import Discovery
from monitor.readings.fetch import RunRead, fetch_run
from monitor.readings.model import ReadingModel, Verdict
from monitor.readings.watchlist import WatchList
from monitor.rules.schedule import PollHint
from monitor.snapshots import RunSnapshot, WalletSnapshot
from monitor.store.schema import StoreError
from monitor.store.state_store import StateStore

log = structlog.get_logger(__name__)

# A run that reports a terminal status is read until two such readings agree, at most this often.
MAX_TERMINAL_READS = 5

ReadingHandler = Callable[[RunSnapshot, Verdict], Awaitable[PollHint]]


class Poller:
    def __init__(
        self, *, settings: Settings, client: PrimeClient, store: StateStore, runtime: RuntimeState, clock: Clock
    ) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.runtime = runtime
        self.clock = clock
        self.watch = WatchList(configured=list(settings.watch.runs))
        self.readings = ReadingModel()
        self.discovery = Discovery(settings=settings, store=store, runtime=runtime, clock=clock, watch=self.watch)
        # Called with every accepted reading, inside the run's own guard (the pipeline's evaluation).
        self.on_reading: ReadingHandler | None = None
        self._in_flight: dict[str, asyncio.Task[RunSnapshot | None]] = {}
        # The read budget (a token bucket refilled at poll.max_requests_per_second).
        self._tokens = 0.0
        self._budget_at: float | None = None

    def restore(self) -> None:
        """After a restart: the runs already known, their last readings, and which ones finished."""
        now = self.clock.now()
        for run_id in self.watch.configured:
            self.store.remember_run(run_id, source="config", seen_at=now)
        for run_id, known in self.store.known_runs().items():
            if known.source == "discovered" and self.settings.watch.discover:
                self.watch.discovered.add(run_id)
            if known.finished_at is not None:
                self.watch.finished[run_id] = known.finished_at
        retention = self.settings.watch.retention
        for run_id, snapshot in self.store.latest_run_snapshots().items():
            finished_at = self.watch.finished.get(run_id)
            if finished_at is None or now - finished_at < retention:
                self.runtime.restored(run_id, snapshot)

    def interval_for(self, run_id: str) -> float:
        """How long after its last read a run is due again (see monitor.rules.schedule)."""
        poll = self.settings.poll
        health = self.runtime.health.get(run_id)
        if health is not None and health.last_kind == "not_found" and health.consecutive_failures > 1:
            # A run that keeps answering 404 (a typo, another team's id, deleted long ago) backs off.
            return min(poll.not_found_backoff_max, poll.interval * 2.0 ** (health.consecutive_failures - 1))
        if not poll.adaptive:
            scheduled = poll.interval
        else:
            hint = self.watch.hints.get(run_id)
            wait = poll.interval if hint is None or hint.wait is None else hint.wait
            scheduled = min(max(wait, poll.min_interval), poll.max_interval)
        wanted = self.watch.read_by.get(run_id)
        last = self.watch.last_polled.get(run_id)
        if wanted is not None and last is not None:
            # Enforcement needs a fresh reading by then (never sooner than min_interval after the last).
            scheduled = min(scheduled, max(wanted - last, poll.min_interval))
        return scheduled

    def _urgency(self, run_id: str) -> float:
        """Sort key of due runs: a delete in progress first, then the nearest to a threshold."""
        if run_id in self.watch.read_by:
            return -1.0
        hint = self.watch.hints.get(run_id)
        return hint.urgency if hint is not None and hint.urgency is not None else math.inf

    def _within_budget(self, due: list[str], now: float) -> list[str]:
        """At most poll.max_requests_per_second reads, whatever the number of runs: the most urgent first."""
        budget = self.settings.poll.max_requests_per_second
        if budget <= 0:
            return due
        tick = min(self.settings.poll.min_interval, self.settings.poll.interval)
        elapsed = now - self._budget_at if self._budget_at is not None else tick
        self._budget_at = now
        self._tokens = min(self._tokens + elapsed * budget, max(budget * tick, 1.0))
        allowed = int(self._tokens)
        if len(due) > allowed:
            due = sorted(due, key=self._urgency)[:allowed]
        self._tokens -= len(due)
        return due

    # -- the pass --------------------------------------------------------------------------------

    def start_due_runs(self) -> list[str]:
        """Start reading every run that is due and not already being read; returns their ids. Each run
        is read in its own task, so a slow or failing run never holds up the others."""
        now = self.clock.monotonic()
        # The job ticks every min_interval but fires a few ms late by a varying amount; without
        # this slack a run due "now + interval" is often skipped on the next tick and polled at
        # twice its interval, which also breaks enforcement's run of consecutive fresh readings.
        slack = 0.5 * min(self.settings.poll.min_interval, self.settings.poll.interval)
        due = [r for r in self.watch.due(now + slack, self.interval_for) if r not in self._in_flight]
        due = self._within_budget(due, now)
        for run_id in due:
            self.watch.last_polled[run_id] = now
            task = asyncio.create_task(self._read_guarded(run_id), name=f"poll:{run_id}")
            self._in_flight[run_id] = task
            task.add_done_callback(self._read_done)
        return due

    def _read_done(self, task: asyncio.Task[RunSnapshot | None]) -> None:
        run_id = task.get_name().removeprefix("poll:")
        if self._in_flight.get(run_id) is task:
            del self._in_flight[run_id]

    async def poll_due_runs(self) -> list[RunSnapshot]:
        """Read every due run and wait for them all (a one-off pass: `check`, `run --once`, tests);
        returns the readings accepted."""
        self.start_due_runs()
        results = await asyncio.gather(*list(self._in_flight.values()))
        return [snapshot for snapshot in results if snapshot is not None]

    def in_flight(self) -> list[asyncio.Task[RunSnapshot | None]]:
        return [task for task in self._in_flight.values() if not task.done()]

    def _run_budget(self) -> float:
        """How long one run's read (retries included) and evaluation may take before it counts as failed."""
        api = self.settings.api
        return api.timeout * (api.max_retries + 1) + 30.0 * api.max_retries + 30.0

    async def _read_guarded(self, run_id: str) -> RunSnapshot | None:
        try:
            return await asyncio.wait_for(self.poll_run(run_id), timeout=self._run_budget())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Whatever went wrong is this run's alone: recorded on it, the pass goes on.
            kind, error = "internal_error", f"{type(exc).__name__}: {exc}"
            if isinstance(exc, TimeoutError):
                kind, error = "timeout", f"reading and evaluating the run took over {self._run_budget():.0f}s"
            if isinstance(exc, StoreError):
                self.runtime.store_failed(str(exc), at=self.clock.now(), mono=self.clock.monotonic())
            health = self.runtime.run_read_failed(
                run_id, kind=kind, error=error, at=self.clock.now(), mono=self.clock.monotonic()
            )
            # The traceback once per streak; the repeats are counted (prime_monitor_read_failures_total).
            if health.consecutive_failures == 1:
                if kind == "internal_error":
                    log.exception("run_processing_failed", run_id=run_id, kind=kind)
                else:
                    log.error("run_processing_failed", run_id=run_id, kind=kind, error=error)
            return None

    # -- one run -------------------------------------------------------------------------------

    async def poll_run(self, run_id: str) -> RunSnapshot | None:
        """Read one run, judge the reading, keep it if accepted and hand it on; None when nothing usable came."""
        health = self.runtime.health.get(run_id)
        if health is not None:
            health.last_attempt_at = self.clock.now()
        read = await fetch_run(self.client, run_id, clock=self.clock, team_id=self.settings.api.team_id)
        log_ = log.bind(run_id=run_id)
        if not read.ok:
            if read.kind == "invalid_response":
                self.runtime.invalid_response("usage")
            self._failed(run_id, kind=read.kind, error=read.error)
            return None
        assert read.snapshot is not None
        verdict = self.readings.judge(read.snapshot, requested_run_id=run_id, baseline=self.runtime.runs.get(run_id))
        if verdict.dropped_transient:
            self.runtime.reading_rejected("usage", "decrease_not_confirmed")
            log_.warning("usage_decrease_dropped", reason="the next reading is back at the earlier level")
        if verdict.outcome != "accepted":
            if verdict.outcome == "rejected":
                self.runtime.reading_rejected("usage", verdict.code)
                if verdict.code == "invalid":
                    self.runtime.invalid_response("usage")
            self._failed(run_id, kind=verdict.outcome, error=verdict.reason)
            if verdict.outcome == "held":
                # A decrease waits for the next reading to confirm it: read again soon.
                self.watch.hints[run_id] = PollHint(wait=self.settings.poll.min_interval, urgency=0.0)
            return None
        snapshot = verdict.snapshot
        assert snapshot is not None
        if run_id in self.watch.discovered and not self._selected(snapshot):
            self.watch.ignored.add(run_id)
            log_.info("run_ignored_by_selector", run_name=snapshot.run_name, base_model=snapshot.base_model)
            return None
        previous = self.runtime.runs.get(run_id)
        if verdict.corrected:
            self.runtime.reading_corrected("usage")
            log_.warning(
                "usage_corrected",
                change=verdict.reason,
                total_cost_usd=snapshot.total_cost_usd,
                previous_total_cost_usd=previous.total_cost_usd if previous else None,
            )
        self.store.save_run_snapshot(snapshot)
        assert snapshot.taken_mono is not None
        health = self.runtime.run_read(run_id, snapshot, mono=snapshot.taken_mono)
        if snapshot.terminal and self._final(snapshot, previous):
            health.finished_at = snapshot.taken_at
            self.watch.finished[run_id] = snapshot.taken_at
            self.store.mark_run_finished(run_id, finished_at=snapshot.taken_at)
            log_.info("run_finished", status=snapshot.status, total_cost_usd=snapshot.total_cost_usd)
        if self.on_reading is not None:
            self.watch.hints[run_id] = await self.on_reading(snapshot, verdict)
        self.runtime.run_processed(run_id)
        return snapshot

    async def reread(self, run_id: str) -> RunRead:
        """A fresh read for a decision (the enforcer's check before a DELETE): judged against the last
        accepted reading like a poll, but it changes nothing. A held decrease or a rejected reading
        comes back with that kind and no snapshot."""
        read = await fetch_run(self.client, run_id, clock=self.clock, team_id=self.settings.api.team_id, urgent=True)
        if not read.ok:
            if read.kind == "invalid_response":
                self.runtime.invalid_response("usage")
            return read
        assert read.snapshot is not None
        verdict = self.readings.judge(
            read.snapshot, requested_run_id=run_id, baseline=self.runtime.runs.get(run_id), commit=False
        )
        if verdict.outcome != "accepted":
            return RunRead(kind=verdict.outcome, error=verdict.reason)
        return RunRead(kind="ok", snapshot=verdict.snapshot)

    def _failed(self, run_id: str, *, kind: str, error: str) -> None:
        health = self.runtime.run_read_failed(
            run_id, kind=kind, error=error, at=self.clock.now(), mono=self.clock.monotonic()
        )
        # Logged when the failure starts or changes kind; repeats are counted, not logged again.
        if health.consecutive_failures == 1 or health.last_kind != kind:
            emit = (
                log.warning if kind in ("not_found", "held", "rate_limited", "server_error", "timeout") else log.error
            )
            emit("run_read_failed", run_id=run_id, kind=kind, error=error)

    def _final(self, snapshot: RunSnapshot, previous: RunSnapshot | None) -> bool:
        """Usage lands with a lag, so the first reading that shows a terminal status may still miss
        the last records. A finished run is read until two terminal readings agree (at most
        MAX_TERMINAL_READS), and only then is it no longer polled."""
        reads = self.watch.terminal_reads.get(snapshot.run_id, 0) + 1
        self.watch.terminal_reads[snapshot.run_id] = reads
        settled = (
            previous is not None
            and previous.terminal
            and previous.record_count == snapshot.record_count
            and previous.total_cost_usd == snapshot.total_cost_usd
        )
        return settled or reads >= MAX_TERMINAL_READS

    def _selected(self, snapshot: RunSnapshot) -> bool:
        select = self.settings.watch.select
        if select.name and not any(fnmatchcase(snapshot.run_name or "", g) for g in select.name):
            return False
        return not (select.base_model and not any(fnmatchcase(snapshot.base_model or "", g) for g in select.base_model))

    # -- the wallet ------------------------------------------------------------------------------

    async def poll_wallet(self) -> WalletSnapshot | None:
        """Read the wallet and discover runs from its billing rows; the accepted reading, or None."""
        self.discovery.settings = self.settings
        return await self.discovery.poll(self.client)

    # -- retiring runs ---------------------------------------------------------------------------

    def expire_finished(self) -> list[str]:
        """Finished runs whose retention has passed; the caller retires them from every component."""
        now = self.clock.now()
        return [
            run_id
            for run_id, finished_at in self.watch.finished.items()
            if now - finished_at >= self.settings.watch.retention and run_id in self.runtime.runs
        ]

    def forget(self, run_id: str) -> None:
        self.readings.forget(run_id)
        self.watch.hints.pop(run_id, None)
        self.watch.last_polled.pop(run_id, None)
        self.watch.terminal_reads.pop(run_id, None)
