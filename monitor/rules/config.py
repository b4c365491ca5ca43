"""Budget rules as small typed objects, validated at load time.

A rule watches one metric of a run (scope: run) or of the wallet (scope: wallet) and breaches
when the metric goes above `threshold` or below `below`; `warn_at` adds warning tiers at
fractions of the threshold. Which direction a metric takes is fixed per metric.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from monitor.api.ids import run_id_problem
from monitor.config.durations import DAY, PositiveDuration, parse_duration
from monitor.rules.catalog import CATALOG, RUN_METRICS, WALLET_METRICS, delete_refusal

# Which way each metric breaches, from the catalog (monitor.rules.catalog), by scope.
RUN_METRICS_ABOVE = tuple(m for m in RUN_METRICS if CATALOG[m].breaches == "above")
RUN_METRICS_BELOW = tuple(m for m in RUN_METRICS if CATALOG[m].breaches == "below")
WALLET_METRICS_ABOVE = tuple(m for m in WALLET_METRICS if CATALOG[m].breaches == "above")
WALLET_METRICS_BELOW = tuple(m for m in WALLET_METRICS if CATALOG[m].breaches == "below")

# The config schema's metric names. Pydantic needs them spelled out; a test checks they are exactly
# the catalog's, scope by scope.
RunMetric = Literal[
    "total_cost_usd",
    "training_cost_usd",
    "inference_cost_usd",
    "inference_input_cost_usd",
    "inference_output_cost_usd",
    "total_tokens",
    "training_tokens",
    "inference_input_tokens",
    "inference_output_tokens",
    "burn_rate_usd_per_hour",
    "projected_cost_usd",
    "time_to_budget_seconds",
]
WalletMetric = Literal["balance_usd", "runway_seconds", "spend_usd"]
Severity = Literal["info", "warning", "critical"]
# Past this a limit is a typo (1e15 dollars, tokens or seconds), and products with it stay finite.
MAX_LIMIT = 1e15


def _addressable_run_id(value: str) -> str:
    problem = run_id_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


# A run id as config names one (watch.runs, match.run_id): one the monitor can address safely.
RunId = Annotated[str, AfterValidator(_addressable_run_id)]
Limit = Annotated[float, Field(gt=0, le=MAX_LIMIT, allow_inf_nan=False)]


def _printable_name(value: str) -> str:
    # A rule's name goes into Slack messages, metric labels and dedup keys: one plain line.
    if not value.isprintable():
        raise ValueError("a rule name cannot hold control or invisible characters")
    return value


class _RuleBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_printable_name)]
    severity: Severity = "critical"
    warn_at: list[float] = Field(default_factory=list, max_length=10)
    # Re-send while still breached after this long; None = never. 0 would re-send on every poll: the
    # spam the product promises not to send.
    renotify: PositiveDuration | None = 3600.0
    # Resolve only once the metric is back this fraction inside the threshold (no flapping).
    hysteresis: float = Field(default=0.05, ge=0, lt=1)

    @field_validator("warn_at")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        for fraction in value:
            if not 0 < fraction < 1:
                raise ValueError(f"each warn_at must be a fraction between 0 and 1 (exclusive), got {fraction}")
        if len(set(value)) != len(value):
            raise ValueError("warn_at has a repeated value")
        return sorted(value)


class RunSelector(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: list[RunId] = Field(default_factory=list)
    name: list[str] = Field(default_factory=list, description="run-name globs")
    base_model: list[str] = Field(default_factory=list, description="base-model globs")
    team: list[str] = Field(default_factory=list)

    @field_validator("run_id", "name", "base_model", "team", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    def matches(self, *, run_id: str, run_name: str | None, base_model: str | None, team: str | None) -> bool:
        """Every given criterion must hold; within one criterion any listed value will do."""
        if self.run_id and run_id not in self.run_id:
            return False
        if self.name and not any(fnmatchcase(run_name or "", glob) for glob in self.name):
            return False
        if self.base_model and not any(fnmatchcase(base_model or "", glob) for glob in self.base_model):
            return False
        return not (self.team and (team or "") not in self.team)


def _duration_if_text(value: object) -> object:
    """`below` of a time metric reads as a duration ('2h'); a number is taken as it is."""
    return parse_duration(value) if isinstance(value, str) else value


class RunRule(_RuleBase):
    scope: Literal["run"] = "run"
    match: RunSelector = Field(default_factory=RunSelector)
    metric: RunMetric = "total_cost_usd"
    threshold: Limit | None = None
    below: Annotated[Limit | None, BeforeValidator(_duration_if_text)] = None
    # For time_to_budget_seconds and projected_cost_usd: the budget in USD the run is heading to.
    budget_usd: Limit | None = None
    # For projected_cost_usd: how far ahead to project at the current burn rate.
    horizon: PositiveDuration = 3600.0
    action: Literal["alert", "delete"] = "alert"
    # Delete when a steady burn will cross the limit before the next reading can show it (the billing
    # lag plus one poll): the run may stop slightly under its limit. Needs action delete.
    kill_ahead: bool = False

    @model_validator(mode="after")
    def _direction(self) -> RunRule:
        _check_direction(self.metric, self.threshold, self.below, RUN_METRICS_BELOW)
        if self.metric == "time_to_budget_seconds" and self.budget_usd is None:
            raise ValueError("metric time_to_budget_seconds needs budget_usd (the budget the run is heading to)")
        refusal = delete_refusal(self.metric) if self.action == "delete" else None
        if refusal is not None:
            raise ValueError(refusal)
        if self.kill_ahead and self.action != "delete":
            raise ValueError("kill_ahead needs action delete (it decides when to delete, ahead of the limit)")
        return self

    @property
    def limit(self) -> float:
        return self.threshold if self.threshold is not None else float(self.below or 0)

    @property
    def breaches_below(self) -> bool:
        return self.below is not None


class WalletRule(_RuleBase):
    scope: Literal["wallet"]
    metric: WalletMetric = "balance_usd"
    threshold: Limit | None = None
    below: Annotated[Limit | None, BeforeValidator(_duration_if_text)] = None
    # For spend_usd: the trailing window the spend is summed over.
    window: PositiveDuration = DAY
    # Wallet rules only alert: which runs to stop when the wallet runs low is a later decision.
    action: Literal["alert"] = "alert"

    @model_validator(mode="after")
    def _direction(self) -> WalletRule:
        _check_direction(self.metric, self.threshold, self.below, WALLET_METRICS_BELOW)
        return self

    @property
    def limit(self) -> float:
        return self.threshold if self.threshold is not None else float(self.below or 0)

    @property
    def breaches_below(self) -> bool:
        return self.below is not None


def _check_direction(metric: str, threshold: float | None, below: float | None, below_metrics: tuple[str, ...]) -> None:
    if metric in below_metrics:
        if below is None or threshold is not None:
            unit = " (a duration such as '2h')" if CATALOG[metric].unit == "seconds" else ""
            raise ValueError(f"metric {metric} breaches when it falls: give `below`{unit}, not `threshold`")
    elif threshold is None or below is not None:
        raise ValueError(f"metric {metric} breaches when it rises: give `threshold`, not `below`")


def _rule_scope(value: object) -> str:
    scope = value.get("scope", "run") if isinstance(value, dict) else getattr(value, "scope", "run")
    return scope if isinstance(scope, str) else repr(scope)


Rule = Annotated[
    Annotated[RunRule, Tag("run")] | Annotated[WalletRule, Tag("wallet")],
    Discriminator(_rule_scope, custom_error_type="rule_scope", custom_error_message="scope must be 'run' or 'wallet'"),
]
