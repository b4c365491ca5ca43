"""Can the monitor see, and is it alive? One place answers both, for /readyz, /healthz, the self-alerts
and the metrics, from the runtime state and the settings.

- **Blind causes** (`blind_causes`): the key is refused; the API cannot be reached (every read fails
  with a 5xx, a 429, a timeout or a refused connection); the data is stale (no read could see for
  `health.stale_intervals` poll intervals, whatever the reason: ticks that fire late, answers slower
  than the interval); the state store fails; a notification channel fails. Each with since when.
- **Ready** (`readiness_problems`): the config is loaded and no blind cause but a failing
  notification channel holds (a channel down is shown, and alerted on the other channels, but the
  monitor still sees). Runs that fail on their own are listed in the body as warnings: confined to
  the run, they do not make the whole monitor unready.
- **Live** (`liveness_problem`): the scheduler's heartbeat moves, and not every job (nor the store)
  has failed for longer than `health.unhealthy_after`: then a restart may help, so /healthz fails.

Ages are measured on the monotonic clock: a host clock that jumps changes nothing here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from monitor.clock import Clock
from monitor.config.durations import format_duration
from monitor.config.settings import Settings
from monitor.exporter.live import RuntimeState

# Causes of blindness, in the order they are reported.
KEY_REFUSED = "key_refused"
API_UNREACHABLE = "api_unreachable"
DATA_STALE = "data_stale"
STORE_FAILING = "store_failing"
NOTIFICATIONS_FAILING = "notifications_failing"
CAUSES = (KEY_REFUSED, API_UNREACHABLE, DATA_STALE, STORE_FAILING, NOTIFICATIONS_FAILING)


@dataclass(frozen=True, slots=True)
class BlindCause:
    cause: str
    # Wall time the condition began (for people), and how long it has held (monotonic).
    since: float
    held_for: float
    detail: str
    # For notification failures: the channel that fails (alerts go out on the others).
    channel: str = ""

    @property
    def key(self) -> str:
        return f"{self.cause}:{self.channel}" if self.channel else self.cause


@dataclass(frozen=True, slots=True)
class ChannelState:
    """What the self-watch needs to know of a notification channel (from the outbox)."""

    channel: str
    failing_since: float | None
    last_error: str | None
    backlog: int


def stale_limit(settings: Settings, runtime: RuntimeState, *, has_runs: bool) -> float:
    """How old the last seeing read may be before the data counts as stale."""
    poll = settings.poll
    interval = poll.interval if has_runs else max(poll.interval, poll.wallet_interval)
    return settings.health.stale_intervals * interval


def blind_causes(
    settings: Settings,
    runtime: RuntimeState,
    *,
    now: float,
    now_mono: float,
    has_runs: bool,
    channels: list[ChannelState] | None = None,
) -> list[BlindCause]:
    """Every reason the monitor cannot see right now, however briefly (callers decide how long counts)."""
    causes: list[BlindCause] = []
    interval = settings.poll.interval
    unauthorized_for = None if runtime.unauthorized_mono is None else now_mono - runtime.unauthorized_mono
    wallet_refused = runtime.wallet_health.last_kind == "unauthorized"
    # A 401 on one run is cleared by good reads of the others within a pass; the key itself is refused
    # when the wallet says so or no read has succeeded for two intervals since the first 401.
    if runtime.unauthorized_since is not None and (wallet_refused or (unauthorized_for or 0.0) >= 2 * interval):
        causes.append(
            BlindCause(
                KEY_REFUSED,
                since=runtime.unauthorized_since,
                held_for=unauthorized_for or 0.0,
                detail=runtime.unauthorized_error or "the API answers 401",
            )
        )
    if runtime.unreachable_since is not None and runtime.unreachable_mono is not None:
        causes.append(
            BlindCause(
                API_UNREACHABLE,
                since=runtime.unreachable_since,
                held_for=now_mono - runtime.unreachable_mono,
                detail=runtime.unreachable_error or "no answer from the API",
            )
        )
    if runtime.store_failing_since is not None and runtime.store_failing_mono is not None:
        causes.append(
            BlindCause(
                STORE_FAILING,
                since=runtime.store_failing_since,
                held_for=now_mono - runtime.store_failing_mono,
                detail=runtime.store_error or "the state store fails",
            )
        )
    limit = stale_limit(settings, runtime, has_runs=has_runs)
    seen = runtime.last_seen_mono if runtime.last_seen_mono is not None else runtime.started_mono
    age = now_mono - seen
    # Stale data with the key refused, the API down or the store failing is that cause's consequence.
    if age > limit and not causes:
        what = "no read has succeeded" if runtime.last_seen_mono is not None else "nothing has been read"
        causes.append(
            BlindCause(
                DATA_STALE,
                since=now - age,
                held_for=age - limit,
                detail=f"{what} for {format_duration(age)} (limit {format_duration(limit)})",
            )
        )
    for channel in channels or []:
        if channel.failing_since is not None:
            causes.append(
                BlindCause(
                    NOTIFICATIONS_FAILING,
                    since=channel.failing_since,
                    held_for=max(now - channel.failing_since, 0.0),
                    detail=f"{channel.last_error or 'sends fail'} ({channel.backlog} waiting)",
                    channel=channel.channel,
                )
            )
    return causes


def readiness_problems(
    settings: Settings,
    runtime: RuntimeState,
    *,
    now: float,
    now_mono: float,
    has_runs: bool,
) -> list[str]:
    """Why the monitor is not ready; empty when it is."""
    problems: list[str] = []
    if not runtime.config_loaded:
        problems.append("config not loaded")
    if runtime.last_seen_mono is None:
        problems.append("no read has succeeded yet")
    for cause in blind_causes(settings, runtime, now=now, now_mono=now_mono, has_runs=has_runs):
        if cause.cause == API_UNREACHABLE and cause.held_for < settings.poll.interval:
            continue  # one failed pass is a blip; stale data (below) catches a longer outage
        problems.append(f"{cause.cause.replace('_', ' ')} since {format_duration(cause.held_for)} ago: {cause.detail}")
    return problems


def run_warnings(runtime: RuntimeState, *, active: list[str]) -> list[str]:
    """Runs (and the wallet) failing on their own: shown beside a ready status, not hidden by it."""
    warnings = []
    for run_id in active:
        health = runtime.health.get(run_id)
        if health is not None and health.last_poll_failed:
            warnings.append(f"run {run_id}: {health.last_kind} ({health.consecutive_failures} in a row)")
    wallet = runtime.wallet_health
    if wallet.last_poll_failed:
        warnings.append(f"wallet: {wallet.last_kind} ({wallet.consecutive_failures} in a row)")
    return warnings


def liveness_problem(
    settings: Settings, runtime: RuntimeState, *, now_mono: float, heartbeat_max_age: float
) -> str | None:
    """Why a restart may help, or None (see the module doc)."""
    started = now_mono - runtime.started_mono
    if runtime.heartbeat_mono is not None and now_mono - runtime.heartbeat_mono > heartbeat_max_age:
        return f"scheduler heartbeat is {now_mono - runtime.heartbeat_mono:.0f}s old (max {heartbeat_max_age:g}s)"
    if runtime.heartbeat_mono is None and started > heartbeat_max_age:
        return f"no scheduler heartbeat since start-up {started:.0f}s ago (max {heartbeat_max_age:g}s)"
    limit = settings.health.unhealthy_after
    failing = runtime.job_failing_since_mono
    if runtime.job_ok_mono.keys() | failing.keys() and all(
        job in failing for job in runtime.job_ok_mono.keys() | failing.keys()
    ):
        oldest = min(failing.values())
        if now_mono - oldest > limit:
            return f"every job has failed for {format_duration(now_mono - oldest)} (limit {format_duration(limit)})"
    store_since = runtime.store_failing_mono
    if store_since is not None and now_mono - store_since > limit:
        return f"the state store has failed for {format_duration(now_mono - store_since)}: {runtime.store_error}"
    return None


class MonitorHealth:
    """The answers /readyz and /healthz give, over the live runtime and the settings in force."""

    def __init__(
        self,
        *,
        settings: Callable[[], Settings],
        runtime: RuntimeState,
        clock: Clock,
        active_runs: Callable[[], list[str]],
        heartbeat_max_age: float,
    ) -> None:
        self._settings = settings
        self._runtime = runtime
        self._clock = clock
        self._active_runs = active_runs
        self.heartbeat_max_age = heartbeat_max_age

    def liveness(self) -> str | None:
        return liveness_problem(
            self._settings(), self._runtime, now_mono=self._clock.monotonic(), heartbeat_max_age=self.heartbeat_max_age
        )

    def readiness(self) -> tuple[list[str], list[str]]:
        """(problems, warnings): ready when there are no problems; warnings name runs failing on their own."""
        active = self._active_runs()
        return self._problems(has_runs=bool(active)), run_warnings(self._runtime, active=active)

    def ready(self) -> bool:
        """Readiness alone, for the gauge rendered on every scrape: without walking every run for the
        warnings (at 10,000 runs that was 4% of the loop under a scrape burst)."""
        return not self._problems(has_runs=bool(self._active_runs()))

    def _problems(self, *, has_runs: bool) -> list[str]:
        return readiness_problems(
            self._settings(),
            self._runtime,
            now=self._clock.now(),
            now_mono=self._clock.monotonic(),
            has_runs=has_runs,
        )
