"""The daemon: APScheduler 3.x jobs on the running asyncio loop, over the components monitor.wiring
builds, plus the metrics and health server.

Each job survives an exception in one pass (logged, counted, next tick tries again), runs at most
one instance at a time and is bounded by a timeout, so a slow API never wedges the schedule. Runs
are read each in its own task (monitor.poller), so one slow or failing run holds up nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor.api.client import PrimeClient
from monitor.clock import SYSTEM_CLOCK, Clock
from monitor.config.load import load_settings
from monitor.config.settings import ConfigError, Settings
from monitor.exporter.collector import build_registry
from monitor.exporter.health import MonitorHealth
from monitor.exporter.server import MonitorHttpServer
from monitor.logs import configure_logging, register_secrets, secrets_of
from monitor.notify import build_notifiers
from monitor.notify.base import Notifier
from monitor.pass_result import PassResult
from monitor.store.retention import RetentionPolicy
from monitor.store.schema import StoreError
from monitor.wiring import Components, build

log = structlog.get_logger(__name__)

OUTBOX_INTERVAL = 2.0
HEARTBEAT_INTERVAL = 5.0
# Deadlines are checked this often: a grace period ends at most this late. A tick with nothing
# pending costs a dict walk.
ENFORCE_INTERVAL = 0.25
DRAIN_SECONDS = 8.0


def _not_a_skipped_run(record: logging.LogRecord) -> bool:
    # APScheduler warns each time a run of a job is skipped because its last run is still going. At 10,000
    # runs that is dozens of lines an hour for the 0.25 s enforce tick, each harmless (the next run follows);
    # prime_monitor_job_runs_skipped_total counts them instead.
    return not str(record.msg).startswith('Execution of job "%s" skipped: maximum number of running instances')


# The daemon's scheduler logs through its own child of APScheduler's logger, so the filter touches no
# other scheduler in the process; its other lines go on to the same handlers.
_SCHEDULER_LOG = logging.getLogger("apscheduler.scheduler.daemon")
_SCHEDULER_LOG.addFilter(_not_a_skipped_run)
# Sections a reload cannot apply to a running daemon: the state file and the listening socket.
RESTART_SECTIONS = ("state", "server")


class Daemon:
    def __init__(
        self,
        *,
        settings: Settings,
        config_path: Path | None = None,
        clock: Clock = SYSTEM_CLOCK,
        notifiers: list[Notifier] | None = None,
        serve_http: bool = True,
        exclusive: bool = True,
    ) -> None:
        self.config_path = config_path
        self.clock = clock
        self._fixed_notifiers = notifiers is not None
        self.parts: Components = build(settings, clock=clock, notifiers=notifiers, exclusive=exclusive)
        self.health = MonitorHealth(
            settings=lambda: self.parts.settings,
            runtime=self.parts.runtime,
            clock=clock,
            active_runs=self.parts.poller.watch.active,
            heartbeat_max_age=max(60.0, 4 * HEARTBEAT_INTERVAL),
        )
        self.server: MonitorHttpServer | None = None
        if serve_http and settings.server.enabled:
            self.server = MonitorHttpServer(
                registry=build_registry(self.parts.runtime, clock=clock, ready=lambda: self.health.ready()),
                health=self.health,
                host=settings.server.host,
                port=settings.server.port,
            )
        self.scheduler: AsyncIOScheduler | None = None
        self.stopping = asyncio.Event()
        # Job tasks running right now: SIGTERM lets them finish (bounded) before closing things.
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._reloading: asyncio.Task[bool] | None = None
        # The last error of each job that is failing: repeats are not logged again.
        self._job_errors: dict[str, str] = {}
        # API clients replaced by a reload, still finishing the reads in flight on them.
        self._retiring_clients: set[PrimeClient] = set()

    # The components, by name, for the demo, `check` and tests.
    @property
    def settings(self) -> Settings:
        return self.parts.settings

    @property
    def runtime(self) -> Any:
        return self.parts.runtime

    @property
    def store(self) -> Any:
        return self.parts.store

    @property
    def poller(self) -> Any:
        return self.parts.poller

    @property
    def enforcer(self) -> Any:
        return self.parts.enforcer

    @property
    def dispatcher(self) -> Any:
        return self.parts.dispatcher

    # One pass -----------------------------------------------------------------------------

    async def poll_wallet(self) -> None:
        wallet = await self.parts.poller.poll_wallet()
        if wallet is not None:
            await self.parts.pipeline.on_wallet_snapshot(wallet)

    def _mark_hot(self) -> None:
        self.parts.poller.watch.read_by = self.parts.enforcer.read_by()

    async def poll_runs(self) -> None:
        """The tick: start reading every due run, each in its own task; returns at once."""
        self._mark_hot()
        self.parts.poller.start_due_runs()

    async def start(self) -> None:
        """What a start does before the first pass: the runs already known, open countdowns and intents."""
        self.parts.poller.restore()
        await self.parts.enforcer.reconcile()

    async def one_pass(self, *, all_runs: bool = False, housekeeping: bool = True) -> None:
        """Every job once, in pipeline order, waiting for each run's read: what the scheduler spreads
        over time, in one call (`run --once`, `check`, and in-process tests on a manual clock)."""
        parts = self.parts
        budget = self._api_budget()
        await self._guarded("poll_wallet", self.poll_wallet, timeout=budget)()
        if all_runs:
            parts.poller.watch.make_all_due()
        self._mark_hot()
        await self._guarded("poll_runs", parts.poller.poll_due_runs, timeout=budget)()
        await self._guarded("enforce", parts.enforcer.tick, timeout=budget)()
        if housekeeping:
            await self._guarded("housekeeping", self._housekeeping, timeout=30.0)()
        await self._guarded("deliver_outbox", parts.dispatcher.deliver_due, timeout=120.0)()

    async def run_once(self) -> PassResult:
        """One full pass (`run --once`, `check`): wallet and discovery, every run, rules, outbox, enforcement."""
        parts = self.parts
        await self.start()
        await self.one_pass(all_runs=True, housekeeping=False)
        return PassResult.from_runtime(
            parts.runtime, watched=parts.poller.watch.active(), settings=parts.settings, now_mono=self.clock.monotonic()
        )

    # The long-running daemon --------------------------------------------------------------

    def _guarded(
        self, name: str, job: Callable[[], Awaitable[Any]], *, timeout: float
    ) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            runtime = self.parts.runtime
            runtime.beat(at=self.clock.now(), mono=self.clock.monotonic())
            task = asyncio.current_task()
            if task is not None:
                self._in_flight.add(task)
            ok = False
            try:
                await asyncio.wait_for(job(), timeout=timeout)
                ok = True
                if self._job_errors.pop(name, None) is not None:
                    log.info("job_recovered", job=name)
            except TimeoutError:
                if self._first_error(name, "timeout"):
                    log.error("job_timed_out", job=name, timeout_seconds=timeout)
            except asyncio.CancelledError:
                raise
            except StoreError as exc:
                runtime.store_failed(str(exc), at=self.clock.now(), mono=self.clock.monotonic())
                if self._first_error(name, str(exc)):
                    log.error("job_failed", job=name, error=str(exc), error_type="StoreError")
            except Exception as exc:
                # The traceback once per streak of the same error; /healthz and metrics carry the rest.
                if self._first_error(name, f"{type(exc).__name__}: {exc}"):
                    log.exception("job_failed", job=name)
            finally:
                runtime.job_finished(name, ok=ok, mono=self.clock.monotonic())
                if task is not None:
                    self._in_flight.discard(task)

        return run

    def _first_error(self, job: str, error: str) -> bool:
        """True when this error starts a streak (or differs from the last one) and so is worth a log line."""
        if self._job_errors.get(job) == error:
            return False
        self._job_errors[job] = error
        return True

    def _api_budget(self) -> float:
        api = self.parts.settings.api
        return api.timeout * (api.max_retries + 1) + 60.0

    def _schedule(self) -> AsyncIOScheduler:
        poll = self.parts.settings.poll
        scheduler = AsyncIOScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
            logger=_SCHEDULER_LOG,
        )
        tick = min(poll.min_interval, poll.interval)
        jobs: list[tuple[str, Callable[[], Awaitable[Any]], float, float]] = [
            ("poll_runs", self.poll_runs, tick, 30.0),
            ("poll_wallet", self.poll_wallet, poll.wallet_interval, self._api_budget()),
            ("deliver_outbox", self.parts.dispatcher.deliver_due, OUTBOX_INTERVAL, 120.0),
            ("enforce", self.parts.enforcer.tick, ENFORCE_INTERVAL, self._api_budget()),
            ("housekeeping", self._housekeeping, HEARTBEAT_INTERVAL, 30.0),
        ]
        for name, job, seconds, timeout in jobs:
            scheduler.add_job(
                self._guarded(name, job, timeout=timeout), "interval", seconds=seconds, id=name, name=name
            )
        self.parts.runtime.jobs_scheduled(name for name, *_ in jobs)
        scheduler.add_listener(self._job_skipped, EVENT_JOB_MAX_INSTANCES)
        return scheduler

    def _job_skipped(self, event: JobSubmissionEvent) -> None:
        self.parts.runtime.job_skipped(str(event.job_id))

    async def _housekeeping(self) -> None:
        parts = self.parts
        for run_id in parts.poller.expire_finished():
            parts.retire(run_id)
        try:
            parts.store.probe()
        except StoreError as exc:
            if parts.runtime.store_failing_since is None:
                log.error("state_store_failing", error=str(exc))
            parts.runtime.store_failed(str(exc), at=self.clock.now(), mono=self.clock.monotonic())
        else:
            if parts.runtime.store_failing_since is not None:
                log.warning("state_store_works_again", failed_since=parts.runtime.store_failing_since)
            parts.runtime.store_works()
        await parts.selfwatch.check()
        # Bounded pruning and vacuum steps when a cycle is due: the store decides how often.
        parts.store.maintain(RetentionPolicy.of(parts.settings), now=self.clock.now())

    async def run_forever(self) -> None:
        parts = self.parts
        if self.server is not None:
            await self.server.start()
            log.info("http_listening", url=self.server.url)
        await self.start()
        parts.runtime.beat(at=self.clock.now(), mono=self.clock.monotonic())
        log.info(
            "daemon_started",
            base_url=parts.settings.api.base_url,
            runs=len(parts.poller.watch.active()),
            rules=len(parts.settings.rules),
            dry_run=parts.settings.enforce.dry_run,
            config_hash=parts.runtime.config_hash,
        )
        # The first pass runs at once rather than one interval after start.
        await self._guarded("poll_wallet", self.poll_wallet, timeout=self._api_budget())()
        await self._guarded("poll_runs", self.poll_runs, timeout=30.0)()
        self.scheduler = self._schedule()
        self.scheduler.start()
        await self.stopping.wait()
        await self.shutdown()

    def request_stop(self) -> None:
        self.stopping.set()

    async def shutdown(self) -> None:
        """Stop scheduling, let in-flight jobs and run reads finish briefly, then close everything."""
        log.info("daemon_stopping")
        # Pause first: shutdown() would cancel running jobs at once, cutting a DELETE or a Slack
        # post off between the call and its record. Let them finish, bounded, then shut down.
        if self.scheduler is not None:
            self.scheduler.pause()
        in_flight = [t for t in [*self._in_flight, *self.parts.poller.in_flight()] if not t.done()]
        if in_flight:
            log.info("daemon_draining", jobs=len(in_flight), timeout_seconds=DRAIN_SECONDS)
            _, pending = await asyncio.wait(in_flight, timeout=DRAIN_SECONDS)
            for task in pending:
                task.cancel()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        with contextlib.suppress(Exception):
            await self.parts.dispatcher.deliver_due()
        if self.server is not None:
            await self.server.stop()
        if self._reloading is not None and not self._reloading.done():
            self._reloading.cancel()  # a SIGHUP during shutdown builds nothing that would stay open
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reloading
        for client in list(self._retiring_clients):
            with contextlib.suppress(Exception):  # one stuck close must not keep the store open
                await self._close_retired(client)
        await self.parts.aclose()
        log.info("daemon_stopped")

    async def _close_retired(self, client: PrimeClient) -> None:
        if client in self._retiring_clients:
            self._retiring_clients.discard(client)
            await client.aclose()

    # Reload ---------------------------------------------------------------------------------

    def reload(self) -> None:
        """SIGHUP: re-read the config file in a task (the handler must not block the loop)."""
        if self._reloading is not None and not self._reloading.done():
            log.warning("reload_skipped", reason="a reload is already running")
            return
        self._reloading = asyncio.get_running_loop().create_task(self.apply_reload())

    async def apply_reload(self) -> bool:
        """Every section that changed reaches every component that uses it: a new API key or URL builds
        a new client, a new Slack token or channel new notifiers. `state` and `server` need a restart
        (said so, old values kept). A file that cannot be read is rejected whole, the old config kept."""
        if self.config_path is None:
            log.warning("reload_skipped", reason="no config file")
            return False
        try:
            new = load_settings(self.config_path)
        except ConfigError as exc:
            self.parts.runtime.reload_rejected()
            log.error("reload_rejected", error=str(exc), config=str(self.config_path))
            return False
        except Exception as exc:  # load_settings promises ConfigError; never let a reload kill the daemon
            self.parts.runtime.reload_rejected()
            log.error("reload_rejected", error=f"{type(exc).__name__}: {exc}"[:2000], config=str(self.config_path))
            return False
        parts, old = self.parts, self.parts.settings
        changed = [name for name in type(old).model_fields if getattr(new, name) != getattr(old, name)]
        kept = [name for name in RESTART_SECTIONS if name in changed]
        if kept:
            log.warning(
                "reload_needs_restart", sections=kept, hint="these sections keep their old values until a restart"
            )
            new = new.model_copy(update={name: getattr(old, name) for name in kept})
        register_secrets(secrets_of(new))
        if "api" in changed:
            old_client = parts.client
            parts.use_client(PrimeClient.from_settings(new.api, clock=self.clock, stats=parts.runtime.requests))
            # Reads in flight finish on the old client; it closes once they are done, or at shutdown.
            self._retiring_clients.add(old_client)
            asyncio.get_running_loop().call_later(
                self._api_budget(), lambda: asyncio.ensure_future(self._close_retired(old_client))
            )
        if "notify" in changed and not self._fixed_notifiers:
            await parts.dispatcher.replace_notifiers(build_notifiers(new.notify))
        parts.dispatcher.set_retry(retry_base=new.notify.retry_base, retry_max=new.notify.retry_max)
        if "log" in changed:
            configure_logging(fmt=new.log.format, level=new.log.level)
        parts.apply(new)
        parts.runtime.channels_configured(parts.dispatcher.channels)
        parts.runtime.reload_applied()
        if self.scheduler is not None:
            tick = min(new.poll.min_interval, new.poll.interval)
            self.scheduler.reschedule_job("poll_runs", trigger="interval", seconds=tick)
            self.scheduler.reschedule_job("poll_wallet", trigger="interval", seconds=new.poll.wallet_interval)
        log.info(
            "config_reloaded",
            config_hash=parts.runtime.config_hash,
            rules=len(new.rules),
            sections_changed=[name for name in changed if name not in kept],
        )
        return True
