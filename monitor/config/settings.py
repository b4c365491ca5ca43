"""The one validated settings object: YAML file + environment, secrets as SecretStr.

Precedence, highest first: `PRIME_MONITOR_<SECTION>__<KEY>` env vars, the official CLI's env
names (`PRIME_API_KEY`, `PRIME_API_BASE_URL`, `PRIME_TEAM_ID`, plus `SLACK_BOT_TOKEN`), the YAML
file, the defaults. The file is read by config_yaml (plain YAML only), the environment by config_env
(each value keeps the variable it came from). Any bad input is one ConfigError naming the file and
the field's path with its line or variable (`rules[0] (run-cap).threshold (line 7)`).
"""

from __future__ import annotations

import hashlib
import json
import string
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from monitor.config.durations import DAY, HOUR, WEEK, YEAR, Duration, format_duration, within
from monitor.config.types import FilePath, PlainText, SecretUrl, Timeout, Url
from monitor.config.yaml_reader import (
    ConfigError,
    parse_yaml_mapping,
)
from monitor.rules.config import Rule, RunId, RunRule, WalletRule

__all__ = ["ConfigError", "Settings", "parse_yaml_mapping"]

DEFAULT_BASE_URL = "https://api.primeintellect.ai"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def normalise_base_url(url: str) -> str:
    """As the official `prime` CLI does: a trailing '/' or '/api/v1' is stripped."""
    return url.strip().rstrip("/").removesuffix("/api/v1").rstrip("/")


class ApiSettings(_Section):
    base_url: Url = DEFAULT_BASE_URL
    api_key: SecretStr | None = None
    team_id: PlainText | None = None
    # A total deadline per request.
    timeout: Timeout = 10.0
    max_concurrency: int = Field(default=16, ge=1, le=256)
    # The connection pool under the client (monitor/api/transport.py): aiohttp's, or httpx's own.
    transport: Literal["aiohttp", "httpcore"] = "aiohttp"
    max_retries: int = Field(default=4, ge=0, le=20)
    # A response body larger than this is refused (InvalidResponseError), never read into memory whole.
    max_response_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=1024**3)
    # Where a person opens a run; used in alert links.
    dashboard_url: str = Field(default="https://app.primeintellect.ai/dashboard/training/{run_id}", max_length=2048)

    @field_validator("base_url")
    @classmethod
    def _normalise(cls, value: str) -> str:
        return normalise_base_url(value)

    @field_validator("dashboard_url")
    @classmethod
    def _fills_in_run_id(cls, value: str) -> str:
        # Alerts fill it in with str.format: a stray brace would fail every alert that carries a link,
        # and a format spec ({run_id:>999999999}) would build a gigabyte string.
        try:
            fields = [(name, spec, conversion) for _text, name, spec, conversion in string.Formatter().parse(value)]
        except ValueError:
            fields = [("", "", None)]
        if any(
            name is not None and (name, spec, conversion) != ("run_id", "", None) for name, spec, conversion in fields
        ):
            raise ValueError("only {run_id} may stand in braces (write {{ and }} for literal braces)")
        return value


class DiscoverySelector(_Section):
    name: list[str] = Field(default_factory=list, description="run-name globs; empty = any")
    base_model: list[str] = Field(default_factory=list, description="base-model globs; empty = any")

    @field_validator("name", "base_model", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class WatchSettings(_Section):
    runs: list[RunId] = Field(default_factory=list)
    discover: bool = True
    select: DiscoverySelector = Field(default_factory=DiscoverySelector)
    # Discovery pages the wallet's billing rows (100 a page) until it reaches rows it has already seen;
    # this bounds one read (the first one, or after a long gap). Rows past it are counted as unread.
    wallet_rows: int = Field(default=1000, ge=1, le=100_000)
    # How long a finished run's series stay in /metrics after its final read.
    retention: Duration = DAY


class PollSettings(_Section):
    interval: Annotated[Duration, within(low=1.0, high=DAY)] = 30.0
    wallet_interval: Annotated[Duration, within(low=1.0, high=DAY)] = 60.0
    # Poll each run by its projected time to its nearest threshold: from max_interval far away down to
    # min_interval near a crossing (or with a delete pending); interval when nothing can be projected.
    adaptive: bool = True
    min_interval: Annotated[Duration, within(low=0.1, high=DAY)] = 2.0
    max_interval: Annotated[Duration, within(low=1.0, high=DAY)] = 300.0
    # A budget for all run reads together, whatever the number of runs (0: none); the runs closest to a
    # limit are read first.
    max_requests_per_second: float = Field(default=50.0, ge=0.0, le=10_000.0, allow_inf_nan=False)
    # Window for burn rates (USD/hour) computed from the snapshot history.
    burn_window: Annotated[Duration, within(low=1.0, high=WEEK)] = 900.0
    # A run that answers 404 is polled less and less often, doubling from interval up to this.
    not_found_backoff_max: Annotated[Duration, within(low=1.0, high=WEEK)] = 3600.0

    @model_validator(mode="after")
    def _consistent(self) -> PollSettings:
        if self.min_interval > self.interval:
            raise ValueError("min_interval cannot be longer than interval")
        if self.max_interval < self.interval:
            raise ValueError("max_interval cannot be shorter than interval")
        if self.not_found_backoff_max < self.interval:
            raise ValueError("not_found_backoff_max cannot be shorter than interval (it backs off from interval)")
        if self.burn_window < 2 * self.interval:
            raise ValueError(
                "burn_window must be at least twice interval: a burn rate needs two readings inside the window"
            )
        return self


class SlackSettings(_Section):
    token: SecretStr | None = None
    channel: PlainText | None = None
    # Incoming-webhook URL: plain posts, no threads. Used when no token is given.
    webhook_url: SecretUrl | None = None
    # Slack Web API base (tests point it at a local fake).
    base_url: Url | None = None

    @model_validator(mode="after")
    def _token_needs_channel(self) -> SlackSettings:
        if self.token is not None and not self.channel:
            raise ValueError("slack.token is set but slack.channel is not")
        return self

    @property
    def enabled(self) -> bool:
        return self.token is not None or self.webhook_url is not None


class WebhookSettings(_Section):
    url: SecretUrl | None = None
    timeout: Timeout = 10.0


class NotifySettings(_Section):
    slack: SlackSettings = Field(default_factory=SlackSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    # Print alerts to stdout (the demo uses it; handy without Slack).
    console: bool = False
    # Outbox delivery: first retry after retry_base, doubling, capped at retry_max.
    retry_base: Annotated[Duration, within(low=0.1, high=DAY)] = 5.0
    retry_max: Annotated[Duration, within(low=0.1, high=DAY)] = 300.0

    @model_validator(mode="after")
    def _base_within_max(self) -> NotifySettings:
        if self.retry_base > self.retry_max:
            raise ValueError("retry_base cannot be longer than retry_max")
        return self


class EnforceSettings(_Section):
    dry_run: bool = True
    # 0 is allowed: delete as soon as the readings confirm the breach.
    grace_period: Annotated[Duration, within(low=0.0, high=WEEK)] = 120.0
    confirm_polls: int = Field(default=2, ge=1, le=20)
    # Announce a delete (and start its grace period) when a steady burn will reach the limit within the
    # grace period, so the DELETE lands as soon as fresh readings confirm the crossing instead of a grace
    # period after it. Off: the countdown starts only once the limit is crossed.
    anticipate: bool = True
    # A countdown never waits longer than it takes the run, at its burn rate, to spend this fraction of
    # its limit past it: a run burning $5/s would otherwise spend $600 over a $50 cap during a 2-minute
    # grace. It shortens only the countdowns of runs too fast to see coming a grace period ahead.
    # null: always the full grace period.
    grace_overspend_cap: float | None = Field(default=0.1, gt=0.0, le=100.0, allow_inf_nan=False)
    max_deletes_per_hour: int = Field(default=3, ge=0, le=1000)
    protect: list[str] = Field(default_factory=list, description="run ids or run-name globs never deleted")


class ServerSettings(_Section):
    listen: str = "0.0.0.0:9477"
    enabled: bool = True

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        _host, sep, port = value.rpartition(":")
        if not sep or not (port.isascii() and port.isdigit()) or len(port) > 5 or not 0 <= int(port) <= 65535:
            raise ValueError("must be HOST:PORT, e.g. 0.0.0.0:9477")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]") or "0.0.0.0"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class StateSettings(_Section):
    """What the state file keeps, and for how long (monitor.store.retention applies it)."""

    path: FilePath = "./prime-cost-monitor.db"
    # A hard cap on readings kept per run, on top of the time bound below.
    history_per_run: int = Field(default=2000, ge=10, le=1_000_000)
    # A run's readings are kept for poll.burn_window + poll.interval + this (the wallet's balances
    # for the longest wallet rule window, 24h without one, + poll.wallet_interval + this); older
    # ones are pruned, the newest few always stay.
    history_margin: Annotated[Duration, within(low=0.0, high=DAY)] = 120.0
    # Delivered or superseded notifications older than this are pruned, except those whose dedup key
    # could still be published again (an alert episode or a delete episode still open), which stay
    # however old. The messages themselves are in Slack; each day kept costs about as much as the
    # readings when reminders go out hourly (bench/store_size.py).
    notification_retention: Annotated[Duration, within(low=HOUR, high=YEAR)] = 2 * DAY
    # The action log (the audit of deletes) is pruned after this; never a record of a run with a
    # delete still pending, nor the latest record of each run x rule while the run is watched.
    action_retention: Annotated[Duration, within(low=DAY, high=YEAR)] = 90 * DAY
    # How often the store prunes what is due and gives free pages back to the file system.
    maintenance_interval: Annotated[Duration, within(low=10.0, high=DAY)] = 300.0


class HealthSettings(_Section):
    """When the monitor says it cannot see, and when it asks to be restarted."""

    # /readyz fails when no pass could see (key accepted, API reachable) within this many poll
    # intervals (wallet_interval for the wallet).
    stale_intervals: int = Field(default=3, ge=1, le=1000)
    # How long the monitor must be blind (key refused, API unreachable, data stale, store or
    # notifications failing) before the "monitor is blind" notification; a blip sends nothing.
    # 0 tells at once.
    blind_after: Annotated[Duration, within(low=0.0, high=DAY)] = 120.0
    # /healthz fails (so an orchestrator restarts the daemon) when the scheduler stalls or every job
    # has failed for this long.
    unhealthy_after: Annotated[Duration, within(low=1.0, high=WEEK)] = 600.0
    # A run that fails this many polls in a row, while other reads succeed, gets one "cannot read" alert.
    run_alert_after: int = Field(default=2, ge=1, le=1000)

    @model_validator(mode="after")
    def _told_before_restarted(self) -> HealthSettings:
        # Restarting before telling would loop restarts and never say why.
        if self.unhealthy_after < self.blind_after:
            raise ValueError("unhealthy_after cannot be shorter than blind_after")
        return self


class LogSettings(_Section):
    format: Literal["json", "console"] = "json"
    level: Literal["debug", "info", "warning", "error"] = "info"


class Settings(BaseSettings):
    """Validated settings. `load_config` merges the file and the environment into it (it keeps where
    each value came from, for errors); constructing Settings directly reads no environment."""

    model_config = SettingsConfigDict(extra="forbid")

    api: ApiSettings = Field(default_factory=ApiSettings)
    watch: WatchSettings = Field(default_factory=WatchSettings)
    poll: PollSettings = Field(default_factory=PollSettings)
    rules: list[Rule] = Field(default_factory=list, max_length=1000)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    enforce: EnforceSettings = Field(default_factory=EnforceSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"two rules are named {rule.name!r}; rule names must be unique")
            seen.add(rule.name)
        slowest = max(self.poll.interval, self.poll.wallet_interval)
        if self.health.unhealthy_after <= slowest:
            raise ValueError(
                f"health.unhealthy_after ({format_duration(self.health.unhealthy_after)}) must be longer than "
                f"poll.interval and poll.wallet_interval ({format_duration(slowest)}), or /healthz fails between polls"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment is read by load_config (config_env), which knows each value's variable.
        return (init_settings,)

    @property
    def run_rules(self) -> list[RunRule]:
        return [r for r in self.rules if isinstance(r, RunRule)]

    @property
    def wallet_rules(self) -> list[WalletRule]:
        return [r for r in self.rules if isinstance(r, WalletRule)]

    def config_hash(self) -> str:
        """A short hash of the settings in force, secrets left out: recorded with every action."""
        dumped = self.model_dump(mode="json", exclude={"api": {"api_key"}, "notify": True})
        canonical = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]
