"""The one validated settings object: YAML file + environment, secrets as SecretStr.

Precedence, highest first: `PRIME_MONITOR_<SECTION>__<KEY>` env vars, the official CLI's env
names (`PRIME_API_KEY`, `PRIME_API_BASE_URL`, `PRIME_TEAM_ID`, plus `SLACK_BOT_TOKEN`), the YAML
file, the defaults. Errors name the file and the field's path (`rules[0] (run-cap).threshold`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from monitor.durations import Duration
from monitor.rules_config import Rule, RunRule, WalletRule

DEFAULT_BASE_URL = "https://api.primeintellect.ai"


class ConfigError(Exception):
    """Bad configuration; the message names the file and the field. The CLI exits 2 on it."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def normalise_base_url(url: str) -> str:
    """As the official `prime` CLI does: a trailing '/' or '/api/v1' is stripped."""
    return url.strip().rstrip("/").removesuffix("/api/v1").rstrip("/")


class ApiSettings(_Section):
    base_url: str = DEFAULT_BASE_URL
    api_key: SecretStr | None = None
    team_id: str | None = None
    timeout: Duration = 10.0
    max_concurrency: int = Field(default=16, ge=1, le=256)
    max_retries: int = Field(default=4, ge=0, le=20)
    # A response body larger than this is refused (InvalidResponseError), never read into memory whole.
    max_response_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=1024**3)
    # Where a person opens a run; used in alert links.
    dashboard_url: str = "https://app.primeintellect.ai/dashboard/training/{run_id}"

    @field_validator("base_url")
    @classmethod
    def _normalise(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return normalise_base_url(value)


class DiscoverySelector(_Section):
    name: list[str] = Field(default_factory=list, description="run-name globs; empty = any")
    base_model: list[str] = Field(default_factory=list, description="base-model globs; empty = any")

    @field_validator("name", "base_model", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class WatchSettings(_Section):
    runs: list[str] = Field(default_factory=list)
    discover: bool = True
    select: DiscoverySelector = Field(default_factory=DiscoverySelector)
    # Discovery pages the wallet's billing rows (100 a page) until it reaches rows it has already seen;
    # this bounds one read (the first one, or after a long gap). Rows past it are counted as unread.
    wallet_rows: int = Field(default=1000, ge=1, le=100_000)
    # How long a finished run's series stay in /metrics after its final read.
    retention: Duration = 86400.0


class PollSettings(_Section):
    interval: Duration = 30.0
    wallet_interval: Duration = 60.0
    # Poll runs near a threshold (or with a delete pending) at min_interval instead of interval.
    adaptive: bool = True
    min_interval: Duration = 5.0
    # Window for burn rates (USD/hour) computed from the snapshot history.
    burn_window: Duration = 900.0
    # A run that answers 404 is polled less and less often, doubling from interval up to this.
    not_found_backoff_max: Duration = 3600.0

    @model_validator(mode="after")
    def _bounds(self) -> PollSettings:
        if self.interval < 1:
            raise ValueError("interval must be at least 1s")
        if self.min_interval > self.interval:
            raise ValueError("min_interval cannot be longer than interval")
        return self


class SlackSettings(_Section):
    token: SecretStr | None = None
    channel: str | None = None
    # Incoming-webhook URL: plain posts, no threads. Used when no token is given.
    webhook_url: SecretStr | None = None
    # Slack Web API base (tests point it at a local fake).
    base_url: str | None = None

    @model_validator(mode="after")
    def _token_needs_channel(self) -> SlackSettings:
        if self.token is not None and not self.channel:
            raise ValueError("slack.token is set but slack.channel is not")
        return self

    @property
    def enabled(self) -> bool:
        return self.token is not None or self.webhook_url is not None


class WebhookSettings(_Section):
    url: SecretStr | None = None
    timeout: Duration = 10.0


class NotifySettings(_Section):
    slack: SlackSettings = Field(default_factory=SlackSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    # Print alerts to stdout (the demo uses it; handy without Slack).
    console: bool = False
    # Outbox delivery: first retry after retry_base, doubling, capped at retry_max.
    retry_base: Duration = 5.0
    retry_max: Duration = 300.0


class EnforceSettings(_Section):
    dry_run: bool = True
    grace_period: Duration = 120.0
    confirm_polls: int = Field(default=2, ge=1, le=20)
    max_deletes_per_hour: int = Field(default=3, ge=0, le=1000)
    protect: list[str] = Field(default_factory=list, description="run ids or run-name globs never deleted")


class ServerSettings(_Section):
    listen: str = "0.0.0.0:9477"
    enabled: bool = True

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        _host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be HOST:PORT, e.g. 0.0.0.0:9477")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]") or "0.0.0.0"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class StateSettings(_Section):
    path: str = "./prime-cost-monitor.db"
    history_per_run: int = Field(default=2000, ge=10, le=1_000_000)


class HealthSettings(_Section):
    """When the monitor says it cannot see, and when it asks to be restarted."""

    # /readyz fails when no pass could see (key accepted, API reachable) within this many poll
    # intervals (wallet_interval for the wallet).
    stale_intervals: int = Field(default=3, ge=1, le=1000)
    # How long the monitor must be blind (key refused, API unreachable, data stale, store or
    # notifications failing) before the "monitor is blind" notification; a blip sends nothing.
    blind_after: Duration = 120.0
    # /healthz fails (so an orchestrator restarts the daemon) when the scheduler stalls or every job
    # has failed for this long.
    unhealthy_after: Duration = 600.0
    # A run that fails this many polls in a row, while other reads succeed, gets one "cannot read" alert.
    run_alert_after: int = Field(default=2, ge=1, le=1000)


class LogSettings(_Section):
    format: Literal["json", "console"] = "json"
    level: Literal["debug", "info", "warning", "error"] = "info"


class _PrimeEnvSource(PydanticBaseSettingsSource):
    """The official CLI's env names, so one exported PRIME_API_KEY serves both tools."""

    _NAMES = {
        "PRIME_API_KEY": ("api", "api_key"),
        "PRIME_API_BASE_URL": ("api", "base_url"),
        "PRIME_TEAM_ID": ("api", "team_id"),
        "SLACK_BOT_TOKEN": ("notify", "slack", "token"),
    }

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = environ

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for env_name, path in self._NAMES.items():
            value = self._environ.get(env_name)
            if not value:
                continue
            node = out
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = value
        return out


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRIME_MONITOR_", env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )

    api: ApiSettings = Field(default_factory=ApiSettings)
    watch: WatchSettings = Field(default_factory=WatchSettings)
    poll: PollSettings = Field(default_factory=PollSettings)
    rules: list[Rule] = Field(default_factory=list)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    enforce: EnforceSettings = Field(default_factory=EnforceSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @model_validator(mode="after")
    def _unique_rule_names(self) -> Settings:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"two rules are named {rule.name!r}; rule names must be unique")
            seen.add(rule.name)
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
        # The YAML file arrives as init kwargs (load_settings reads it), so env beats file.
        return (env_settings, _PrimeEnvSource(settings_cls, os.environ), init_settings)

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


def _format_loc(loc: tuple[int | str, ...], raw_rules: object) -> str:
    out = ""
    parts = list(loc)
    i = 0
    while i < len(parts):
        part = parts[i]
        if isinstance(part, int):
            out += f"[{part}]"
            if out.startswith("rules[") and out.count("[") == 1 and isinstance(raw_rules, list):
                rule = raw_rules[part] if part < len(raw_rules) else None
                if isinstance(rule, dict) and rule.get("name"):
                    out += f" ({rule['name']})"
                # Pydantic adds the union member's tag (run/wallet) after the index: not a field.
                if i + 1 < len(parts) and parts[i + 1] in ("run", "wallet"):
                    i += 1
        else:
            out += ("." if out else "") + str(part)
        i += 1
    return out or "(top level)"


def format_validation_error(error: ValidationError, source: str, raw: Mapping[str, Any]) -> str:
    lines = [f"{source}: invalid configuration"]
    for item in error.errors(include_url=False, include_input=False):
        lines.append(f"  {_format_loc(tuple(item['loc']), raw.get('rules'))}: {item['msg']}")
    return "\n".join(lines)


def parse_yaml_mapping(text: str, *, source: str, error: type[ConfigError], sections_hint: str) -> dict[str, Any]:
    """YAML text whose top level is a mapping; `error` names the source and the line at fault."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise error(f"{source}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{source}: the top level must be a mapping ({sections_hint})")
    return data


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    return parse_yaml_mapping(
        text, source=str(path), error=ConfigError, sections_hint="sections api, watch, rules, ..."
    )


def load_settings(path: Path | str | None = None, *, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read, merge and validate; raises ConfigError naming the file and field."""
    raw: dict[str, Any] = read_yaml(Path(path)) if path is not None else {}
    if overrides:
        raw = _deep_merge(raw, dict(overrides))
    source = str(path) if path is not None else "configuration"
    try:
        return Settings(**raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, raw)) from None


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
