"""The simulator's scenario: keys, clock, wallets, runs and faults, validated with pydantic.

A scenario is YAML (or a dict in tests). `load_scenario(None)` reads the embedded default,
`monitor/sim/scenarios/default.yml`. A bad scenario raises ScenarioError naming the file and field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from monitor.config.durations import Duration
from monitor.config.settings import ConfigError, parse_yaml_mapping
from monitor.sim.faults import FaultSpec
from monitor.sim.pricing import ModelPrice, known_models, lookup_price
from monitor.sim.rates import ConfigProblem, MeterRates, derive_run

DEFAULT_API_KEY = "sim-key"
DEFAULT_ADMIN_TOKEN = "sim-admin"


class ScenarioError(ConfigError):
    """A scenario that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RatesSpec(_Strict):
    """Tokens per second of running time on each meter."""

    training: float = Field(ge=0)
    inference_input: float = Field(ge=0)
    inference_output: float = Field(ge=0)


class PricingSpec(_Strict):
    """$ per million tokens; overrides the price table (needed for a model the table lacks)."""

    training_per_mtok: float = Field(ge=0)
    inference_input_per_mtok: float = Field(ge=0)
    inference_output_per_mtok: float = Field(ge=0)


class BillingRowSpec(_Strict):
    """A static billing row of another resource type (display history; it does not move the balance)."""

    id: str | None = None
    resource_type: str = "compute"
    resource_id: str | None = None
    amount_usd: float
    billed_ago: Duration = Field(default=3600.0, description="seconds before the simulator started")


class WalletSpec(_Strict):
    wallet_id: str | None = None
    team_id: str | None = Field(default=None, description="null: the caller's personal wallet")
    starting_balance_usd: float = 1000.0
    currency: str = "USD"
    billings: list[BillingRowSpec] = Field(default_factory=list)


class RunSpec(_Strict):
    """A run, as written in a scenario or posted to `POST /_sim/runs`."""

    id: str | None = Field(default=None, min_length=1, max_length=200)
    name: str | None = None
    base_model: str | None = Field(default=None, description="default: config's model.name, then defaults.model")
    team_id: str | None = None
    rates: RatesSpec | None = None
    config: dict[str, Any] | None = Field(default=None, description="prime-rl style config; rates derive from it")
    max_steps: int | None = Field(default=None, ge=1)
    step_seconds: Duration | None = None
    queue_seconds: Duration | None = None
    started_ago: Duration = Field(default=0.0, description="created this long before now (history pre-accrues)")
    fail_after: Duration | None = Field(default=None, description="FAILED after this much running time")
    pricing: PricingSpec | None = None

    @model_validator(mode="after")
    def _rates_or_config(self) -> RunSpec:
        if self.rates is not None and self.config is not None:
            raise ValueError("give either rates or config, not both")
        if self.step_seconds is not None and self.step_seconds <= 0:
            raise ValueError("step_seconds must be above 0")
        return self


class Defaults(_Strict):
    """What a run gets when neither its spec nor its config says."""

    model: str = "Qwen/Qwen3.5-0.8B"
    step_seconds: Duration = 30.0
    queue_seconds: Duration = 5.0
    batch_size: int = Field(default=64, ge=1)
    seq_len: int = Field(default=4096, ge=1)
    max_completion_tokens: int = Field(default=1024, ge=1)

    @model_validator(mode="after")
    def _check(self) -> Defaults:
        if self.step_seconds <= 0:
            raise ValueError("step_seconds must be above 0")
        if lookup_price(self.model) is None:
            raise ValueError(f"model {self.model!r} is not in the price table")
        return self


class Scenario(_Strict):
    api_keys: list[SecretStr] = Field(default_factory=lambda: [SecretStr(DEFAULT_API_KEY)], min_length=1)
    admin_token: SecretStr = SecretStr(DEFAULT_ADMIN_TOKEN)
    meter_interval: Duration = Field(default=60.0, description="seconds between usage records (billing lag)")
    speed: float = Field(default=1.0, gt=0, le=100_000, description="simulated seconds per real second")
    seed: int = 0
    billing_rows: Literal["per_run", "per_record"] = Field(
        default="per_run", description="wallet rows: one per run, or one per landed usage record"
    )
    request_log_size: int = Field(default=500, ge=1, le=100_000)
    defaults: Defaults = Field(default_factory=Defaults)
    wallets: list[WalletSpec] = Field(default_factory=lambda: [WalletSpec()])
    runs: list[RunSpec] = Field(default_factory=list)
    faults: list[FaultSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_references(self) -> Scenario:
        if self.meter_interval <= 0:
            raise ValueError("meter_interval must be above 0")
        teams = [w.team_id for w in self.wallets]
        if len(set(teams)) != len(teams):
            raise ValueError("two wallets have the same team_id (null is the personal wallet)")
        wallet_ids = [w.wallet_id for w in self.wallets if w.wallet_id is not None]
        if len(set(wallet_ids)) != len(wallet_ids):
            raise ValueError("two wallets have the same wallet_id")
        if None not in teams:
            self.wallets.insert(0, WalletSpec())
            teams.insert(0, None)
        run_ids = [r.id for r in self.runs if r.id is not None]
        if len(set(run_ids)) != len(run_ids):
            raise ValueError("two runs have the same id")
        for index, run in enumerate(self.runs):
            if run.team_id not in teams:
                raise ValueError(f"runs[{index}].team_id: no wallet has team_id {run.team_id!r}")
            try:
                resolve_run(run, self.defaults)
            except ConfigProblem as problem:
                raise ValueError(f"runs[{index}].{problem.param}: {problem.details}") from None
        return self

    def api_key_values(self) -> list[str]:
        return [key.get_secret_value() for key in self.api_keys]


@dataclass(frozen=True)
class ResolvedRun:
    """A run spec with every default applied: what the engine needs to burn tokens."""

    base_model: str
    price: ModelPrice
    rates: MeterRates
    max_steps: int | None
    step_seconds: float
    queue_seconds: float


def resolve_run(spec: RunSpec, defaults: Defaults) -> ResolvedRun:
    """Rates, prices and timing of a run; raises ConfigProblem naming the field at fault."""
    step_seconds = spec.step_seconds if spec.step_seconds is not None else defaults.step_seconds
    queue_seconds = spec.queue_seconds if spec.queue_seconds is not None else defaults.queue_seconds
    model_param = "base_model"
    if spec.rates is not None:
        rates = MeterRates(
            training=spec.rates.training,
            inference_input=spec.rates.inference_input,
            inference_output=spec.rates.inference_output,
        )
        max_steps = spec.max_steps
        model = spec.base_model or defaults.model
    else:
        derived = derive_run(
            spec.config or {},
            step_seconds=step_seconds,
            default_batch_size=defaults.batch_size,
            default_seq_len=defaults.seq_len,
            default_max_completion_tokens=defaults.max_completion_tokens,
        )
        rates = derived.rates
        max_steps = spec.max_steps if spec.max_steps is not None else derived.max_steps
        if spec.base_model:
            model = spec.base_model
        elif derived.model_name:
            model, model_param = derived.model_name, derived.model_param or "config.model.name"
        else:
            model = defaults.model
    if spec.pricing is not None:
        price = ModelPrice(
            model=model,
            inference_input_per_mtok=spec.pricing.inference_input_per_mtok,
            inference_output_per_mtok=spec.pricing.inference_output_per_mtok,
            training_per_mtok=spec.pricing.training_per_mtok,
        )
    else:
        found = lookup_price(model)
        if found is None:
            raise ConfigProblem(model_param, f"unknown model {model!r}; known models: {', '.join(known_models())}")
        price = found
    return ResolvedRun(
        base_model=model,
        price=price,
        rates=rates,
        max_steps=max_steps,
        step_seconds=step_seconds,
        queue_seconds=queue_seconds,
    )


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out or "(top level)"


def scenario_from_dict(data: Mapping[str, Any], *, source: str = "scenario") -> Scenario:
    try:
        return Scenario.model_validate(dict(data))
    except ValidationError as exc:
        lines = [f"{source}: invalid scenario"]
        for item in exc.errors(include_url=False, include_input=False):
            message = str(item["msg"]).removeprefix("Value error, ")
            loc = tuple(item["loc"])
            problem = item.get("ctx", {}).get("error")
            if isinstance(problem, ConfigProblem):  # a check that names its own field
                loc, message = (*loc, *problem.param.split(".")), problem.details
            # Cross-field checks name their own field (`runs[0].team_id: ...`).
            lines.append(f"  {_format_loc(loc)}: {message}" if loc else f"  {message}")
        raise ScenarioError("\n".join(lines)) from None


def _read_yaml_text(text: str, source: str) -> dict[str, Any]:
    return parse_yaml_mapping(
        text, source=source, error=ScenarioError, sections_hint="api_keys, wallets, runs, faults, ..."
    )


def default_scenario_text() -> str:
    return resources.files("monitor.sim").joinpath("scenarios/default.yml").read_text(encoding="utf-8")


def load_scenario(source: Scenario | Mapping[str, Any] | str | Path | None = None) -> Scenario:
    """A Scenario from a model, a dict, a YAML file path, or None for the embedded default."""
    if isinstance(source, Scenario):
        return source
    if source is None:
        return scenario_from_dict(_read_yaml_text(default_scenario_text(), "default scenario"), source="default")
    if isinstance(source, Mapping):
        return scenario_from_dict(source)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read the scenario file: {exc.strerror or exc}") from None
    return scenario_from_dict(_read_yaml_text(text, str(path)), source=str(path))
