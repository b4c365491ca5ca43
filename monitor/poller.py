"""Reads the API: one run's usage, the wallet, and the set of runs to watch.

A reading that fails (transport, HTTP, schema or sanity) is logged, counted in the run's health
and never handed on: only good readings reach the rules, the alerts and enforcement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import structlog

from monitor.client import PrimeClient
from monitor.clock import Clock
from monitor.config import Settings
from monitor.errors import ApiError, InvalidResponseError, NotFoundError, UnauthorizedError
from monitor.runtime import RunHealth, RuntimeState
from monitor.snapshots import RunSnapshot, WalletSnapshot
from monitor.store import StateStore
from monitor.validation import usage_problem

log = structlog.get_logger(__name__)

# A run that reports a terminal status is read until two such readings agree, at most this often.
MAX_TERMINAL_READS = 5


@dataclass
class WatchList:
    """Which runs to poll and when each is next due."""

    configured: list[str] = field(default_factory=list)
    discovered: set[str] = field(default_factory=set)
    # Discovered runs whose name or model the discovery selector rejects: read once, then ignored.
    ignored: set[str] = field(default_factory=set)
    finished: dict[str, float] = field(default_factory=dict)
    # When each run was last polled; it is due again one interval later (its interval may change
    # in between: a run that turns hot is due at min_interval after its last poll).
    last_polled: dict[str, float] = field(default_factory=dict)
    # Readings taken of each run since it showed a terminal status.
    terminal_reads: dict[str, int] = field(default_factory=dict)
    # Runs to poll at the fastest allowed interval (near a threshold, or a delete pending).
    hot: set[str] = field(default_factory=set)

    def active(self) -> list[str]:
        ordered = list(dict.fromkeys([*self.configured, *sorted(self.discovered)]))
        return [r for r in ordered if r not in self.finished and r not in self.ignored]

    def due(self, now: float, interval_for: Callable[[str], float]) -> list[str]:
        return [r for r in self.active() if r not in self.last_polled or self.last_polled[r] + interval_for(r) <= now]

    def make_all_due(self) -> None:
        self.last_polled.clear()


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
                self.runtime.runs[run_id] = snapshot

    def interval_for(self, run_id: str) -> float:
        poll = self.settings.poll
        return poll.min_interval if (poll.adaptive and run_id in self.watch.hot) else poll.interval

    async def poll_due_runs(self) -> list[RunSnapshot]:
        """Poll every run that is due, concurrently (the client bounds the concurrency)."""
        now = self.clock.now()
        # The job ticks every min_interval but fires a few ms late by a varying amount; without
        # this slack a run due "now + interval" is often skipped on the next tick and polled at
        # twice its interval, which also breaks enforcement's run of consecutive fresh readings.
        slack = 0.5 * min(self.settings.poll.min_interval, self.settings.poll.interval)
        due = self.watch.due(now + slack, self.interval_for)
        for run_id in due:
            self.watch.last_polled[run_id] = now
        results = await asyncio.gather(*(self.poll_run(run_id) for run_id in due))
        return [snap for snap in results if snap is not None]

    async def poll_run(self, run_id: str) -> RunSnapshot | None:
        health = self.runtime.health.setdefault(run_id, RunHealth())
        started = self.clock.now()
        health.last_attempt_at = started
        log_ = log.bind(run_id=run_id)
        try:
            usage = await self.client.get_run_usage(run_id)
        except UnauthorizedError:
            self._failed(health, "unauthorized")
            raise
        except NotFoundError:
            self._failed(health, "not found (HTTP 404)")
            log_.warning("run_not_found")
            return None
        except InvalidResponseError as exc:
            self.runtime.invalid_responses["usage"] += 1
            self._failed(health, str(exc))
            log_.error("invalid_usage_response", field=exc.field, error=str(exc))
            return None
        except ApiError as exc:
            self._failed(health, str(exc))
            log_.warning("run_poll_failed", error=str(exc), error_type=type(exc).__name__)
            return None
        taken_at = self.clock.now()
        snapshot = RunSnapshot.from_response(usage, taken_at=taken_at, team_id=self.settings.api.team_id)
        previous = self.runtime.runs.get(run_id)
        problem = usage_problem(snapshot, requested_run_id=run_id, previous=previous)
        if problem is not None:
            self.runtime.invalid_responses["usage"] += 1
            self._failed(health, problem)
            log_.error("implausible_usage", problem=problem)
            return None
        if run_id in self.watch.discovered and not self._selected(snapshot):
            self.watch.ignored.add(run_id)
            log_.info("run_ignored_by_selector", run_name=snapshot.run_name, base_model=snapshot.base_model)
            return None
        self.store.save_run_snapshot(snapshot)
        self.runtime.runs[run_id] = snapshot
        health.last_success_at = taken_at
        health.last_error = None
        health.consecutive_failures = 0
        self.runtime.last_poll_success_at = taken_at
        if snapshot.terminal and self._final(snapshot, previous):
            health.finished_at = taken_at
            self.watch.finished[run_id] = taken_at
            self.store.mark_run_finished(run_id, finished_at=taken_at)
            log_.info("run_finished", status=snapshot.status, total_cost_usd=snapshot.total_cost_usd)
        return snapshot

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

    def _failed(self, health: RunHealth, error: str) -> None:
        health.consecutive_failures += 1
        health.last_error = error

    def _selected(self, snapshot: RunSnapshot) -> bool:
        select = self.settings.watch.select
        if select.name and not any(fnmatchcase(snapshot.run_name or "", g) for g in select.name):
            return False
        return not (select.base_model and not any(fnmatchcase(snapshot.base_model or "", g) for g in select.base_model))

    async def poll_wallet(self) -> WalletSnapshot | None:
        try:
            wallet = await self.client.get_wallet(rows=self.settings.watch.wallet_rows)
        except UnauthorizedError:
            raise
        except InvalidResponseError as exc:
            self.runtime.invalid_responses["wallet"] += 1
            log.error("invalid_wallet_response", field=exc.field, error=str(exc))
            return None
        except ApiError as exc:
            log.warning("wallet_poll_failed", error=str(exc), error_type=type(exc).__name__)
            return None
        snapshot = WalletSnapshot.from_response(wallet, taken_at=self.clock.now())
        self.store.save_wallet_snapshot(snapshot)
        self.runtime.wallet = snapshot
        self.runtime.last_wallet_success_at = snapshot.taken_at
        self.runtime.last_poll_success_at = snapshot.taken_at
        if self.settings.watch.discover:
            self._discover(snapshot)
        return snapshot

    def _discover(self, wallet: WalletSnapshot) -> None:
        for run_id in wallet.training_run_ids():
            if run_id in self.watch.discovered or run_id in self.watch.configured:
                continue
            self.watch.discovered.add(run_id)
            self.store.remember_run(run_id, source="discovered", seen_at=wallet.taken_at)
            log.info("run_discovered", run_id=run_id)

    def expire_finished(self) -> list[str]:
        """Drop finished runs from the live view once their retention has passed; their series go with them."""
        now = self.clock.now()
        expired = [
            run_id
            for run_id, finished_at in self.watch.finished.items()
            if now - finished_at >= self.settings.watch.retention and run_id in self.runtime.runs
        ]
        for run_id in expired:
            self.runtime.runs.pop(run_id, None)
            self.runtime.burn_rates.pop(run_id, None)
            self.runtime.health.pop(run_id, None)
            for key in [k for k in self.runtime.evaluations if k[0] == run_id]:
                del self.runtime.evaluations[key]
        return expired
