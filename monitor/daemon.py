"""The daemon: APScheduler 3.x jobs on the running asyncio loop, wired to poller, pipeline,
outbox, enforcement, metrics server and the state store.

Each job survives an exception in one pass (logged, counted, next tick tries again), runs at most
one instance at a time and is bounded by a timeout, so a slow API never wedges the schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor.client import PrimeClient
from monitor.clock import SYSTEM_CLOCK, Clock
from monitor.config import ConfigError, Settings, load_settings
from monitor.enforce import Enforcer
from monitor.errors import UnauthorizedError
from monitor.metrics import build_registry
from monitor.notify import build_notifiers
from monitor.notify.base import Notifier
from monitor.notify.outbox import OutboxDispatcher
from monitor.passes import PassResult
from monitor.pipeline import Pipeline
from monitor.poller import Poller
from monitor.runtime import RuntimeState
from monitor.server import MonitorHttpServer
from monitor.store import StateStore

log = structlog.get_logger(__name__)

OUTBOX_INTERVAL = 2.0
HEARTBEAT_INTERVAL = 5.0
# Deadlines are checked this often: a grace period ends at most this late. A tick with nothing
# pending costs a dict walk.
ENFORCE_INTERVAL = 0.25
DRAIN_SECONDS = 8.0


class Daemon:
    def __init__(
        self,
        *,
        settings: Settings,
        config_path: Path | None = None,
        clock: Clock = SYSTEM_CLOCK,
        notifiers: list[Notifier] | None = None,
        serve_http: bool = True,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self.clock = clock
        self.runtime = RuntimeState(started_at=clock.now(), config_loaded=True, config_hash=settings.config_hash())
        self.store = StateStore(settings.state.path, history_per_run=settings.state.history_per_run)
        self.client = PrimeClient.from_settings(settings.api, clock=clock, stats=self.runtime.requests)
        self.dispatcher = OutboxDispatcher(
            store=self.store,
            notifiers=notifiers if notifiers is not None else build_notifiers(settings.notify),
            clock=clock,
            retry_base=settings.notify.retry_base,
            retry_max=settings.notify.retry_max,
            runtime=self.runtime,
        )
        self.poller = Poller(settings=settings, client=self.client, store=self.store, runtime=self.runtime, clock=clock)
        self.enforcer = Enforcer(
            settings=settings,
            client=self.client,
            store=self.store,
            runtime=self.runtime,
            dispatcher=self.dispatcher,
            clock=clock,
        )
        self.pipeline = Pipeline(
            settings=settings,
            store=self.store,
            runtime=self.runtime,
            dispatcher=self.dispatcher,
            clock=clock,
            enforcer=self.enforcer,
        )
        self.server: MonitorHttpServer | None = None
        if serve_http and settings.server.enabled:
            self.server = MonitorHttpServer(
                runtime=self.runtime,
                registry=build_registry(self.runtime, clock=clock),
                host=settings.server.host,
                port=settings.server.port,
                clock=clock,
                heartbeat_max_age=max(60.0, 4 * HEARTBEAT_INTERVAL),
            )
        self.scheduler: AsyncIOScheduler | None = None
        self.stopping = asyncio.Event()
        self._unauthorized_logged = False
        # Job tasks running right now: SIGTERM lets them finish (bounded) before closing things.
        self._in_flight: set[asyncio.Task[Any]] = set()

    # One pass -----------------------------------------------------------------------------

    async def poll_wallet(self) -> None:
        wallet = await self.poller.poll_wallet()
        if wallet is not None:
            await self.pipeline.on_wallet_snapshot(wallet)

    async def poll_runs(self, *, all_runs: bool = False) -> None:
        if all_runs:
            self.poller.watch.make_all_due()
        self.poller.watch.hot = self.enforcer.pending_runs() | self.pipeline.hot_runs()
        for snapshot in await self.poller.poll_due_runs():
            await self.pipeline.on_run_snapshot(snapshot)

    async def run_once(self) -> PassResult:
        """One full pass (`run --once`, `check`): wallet and discovery, every run, rules, outbox, enforcement."""
        self.poller.restore()
        await self.enforcer.reconcile()
        unauthorized = False
        try:
            await self.poll_wallet()
            await self.poll_runs(all_runs=True)
        except UnauthorizedError as exc:
            unauthorized = True
            log.error("api_unauthorized", error=str(exc))
        await self.enforcer.tick()
        await self.dispatcher.deliver_due()
        return PassResult.from_runtime(self.runtime, watched=self.poller.watch.active(), unauthorized=unauthorized)

    # The long-running daemon --------------------------------------------------------------

    def _guarded(
        self, name: str, job: Callable[[], Awaitable[Any]], *, timeout: float
    ) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            self.runtime.heartbeat_at = self.clock.now()
            task = asyncio.current_task()
            if task is not None:
                self._in_flight.add(task)
            try:
                await asyncio.wait_for(job(), timeout=timeout)
            except UnauthorizedError as exc:
                # Loud once per episode: nothing works until the key is fixed (SIGHUP reloads it).
                if not self._unauthorized_logged:
                    log.critical("api_unauthorized", job=name, error=str(exc))
                    self._unauthorized_logged = True
                return
            except TimeoutError:
                log.error("job_timed_out", job=name, timeout_seconds=timeout)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job_failed", job=name)
            else:
                self._unauthorized_logged = False
            finally:
                if task is not None:
                    self._in_flight.discard(task)

        return run

    def _schedule(self) -> AsyncIOScheduler:
        poll = self.settings.poll
        api_budget = self.settings.api.timeout * (self.settings.api.max_retries + 1) + 60.0
        scheduler = AsyncIOScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
        )
        tick = min(poll.min_interval, poll.interval)
        scheduler.add_job(
            self._guarded("poll_runs", self.poll_runs, timeout=api_budget), "interval", seconds=tick, id="poll_runs"
        )
        scheduler.add_job(
            self._guarded("poll_wallet", self.poll_wallet, timeout=api_budget),
            "interval",
            seconds=poll.wallet_interval,
            id="poll_wallet",
        )
        scheduler.add_job(
            self._guarded("deliver_outbox", self.dispatcher.deliver_due, timeout=120.0),
            "interval",
            seconds=OUTBOX_INTERVAL,
            id="deliver_outbox",
        )
        scheduler.add_job(
            self._guarded("enforce", self.enforcer.tick, timeout=api_budget),
            "interval",
            seconds=ENFORCE_INTERVAL,
            id="enforce",
        )
        scheduler.add_job(
            self._guarded("housekeeping", self._housekeeping, timeout=30.0),
            "interval",
            seconds=HEARTBEAT_INTERVAL,
            id="housekeeping",
        )
        return scheduler

    async def _housekeeping(self) -> None:
        self.runtime.heartbeat_at = self.clock.now()
        for run_id in self.poller.expire_finished():
            self.pipeline.forget(run_id)

    async def run_forever(self) -> None:
        if self.server is not None:
            await self.server.start()
            log.info("http_listening", url=self.server.url)
        self.poller.restore()
        await self.enforcer.reconcile()
        self.runtime.heartbeat_at = self.clock.now()
        log.info(
            "daemon_started",
            base_url=self.settings.api.base_url,
            runs=len(self.poller.watch.active()),
            rules=len(self.settings.rules),
            dry_run=self.settings.enforce.dry_run,
            config_hash=self.runtime.config_hash,
        )
        # The first pass runs at once rather than one interval after start.
        await self._guarded("poll_wallet", self.poll_wallet, timeout=120.0)()
        await self._guarded("poll_runs", self.poll_runs, timeout=120.0)()
        self.scheduler = self._schedule()
        self.scheduler.start()
        await self.stopping.wait()
        await self.shutdown()

    def request_stop(self) -> None:
        self.stopping.set()

    async def shutdown(self) -> None:
        """Stop scheduling, let in-flight jobs finish briefly, then close everything."""
        log.info("daemon_stopping")
        # Pause first: shutdown() would cancel running jobs at once, cutting a DELETE or a Slack
        # post off between the call and its record. Let them finish, bounded, then shut down.
        if self.scheduler is not None:
            self.scheduler.pause()
        in_flight = [t for t in self._in_flight if not t.done()]
        if in_flight:
            log.info("daemon_draining", jobs=len(in_flight), timeout_seconds=DRAIN_SECONDS)
            _, pending = await asyncio.wait(in_flight, timeout=DRAIN_SECONDS)
            for task in pending:
                task.cancel()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        with contextlib.suppress(Exception):
            await self.dispatcher.deliver_due()
        if self.server is not None:
            await self.server.stop()
        await self.dispatcher.aclose()
        await self.client.aclose()
        self.store.close()
        log.info("daemon_stopped")

    def reload(self) -> bool:
        """SIGHUP: re-read the config file; an invalid one is refused and the old one kept."""
        if self.config_path is None:
            log.warning("reload_skipped", reason="no config file")
            return False
        try:
            new = load_settings(self.config_path)
        except ConfigError as exc:
            log.error("reload_rejected", error=str(exc))
            return False
        for part in (self, self.poller, self.pipeline, self.enforcer):
            part.settings = new
        self.poller.watch.configured = list(new.watch.runs)
        self.runtime.config_hash = new.config_hash()
        if self.scheduler is not None:
            tick = min(new.poll.min_interval, new.poll.interval)
            self.scheduler.reschedule_job("poll_runs", trigger="interval", seconds=tick)
            self.scheduler.reschedule_job("poll_wallet", trigger="interval", seconds=new.poll.wallet_interval)
        log.info("config_reloaded", config_hash=self.runtime.config_hash, rules=len(new.rules))
        return True
