"""Budget rules as small typed objects, validated at load time.

A rule watches one metric of a run (scope: run) or of the wallet (scope: wallet) and breaches
when the metric goes above `threshold` or below `below`; `warn_at` adds warning tiers at
fractions of the threshold. Which direction a metric takes is fixed per metric.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from monitor.durations import Duration, parse_duration

# Totals the API measures (RunSnapshot.metric reads them); the only metrics a delete may act on.
RUN_MEASURED_TOTALS = (
    "total_cost_usd",
    "training_cost_usd",
    "inference_cost_usd",
    "inference_input_cost_usd",
    "inference_output_cost_usd",
    "total_tokens",
    "training_tokens",
    "inference_input_tokens",
    "inference_output_tokens",
)
# Run metrics that breach when they rise above `threshold`.
RUN_METRICS_ABOVE = (*RUN_MEASURED_TOTALS, "burn_rate_usd_per_hour", "projected_cost_usd")
# Run metrics that breach when they fall below `below`.
RUN_METRICS_BELOW = ("time_to_budget_seconds",)
WALLET_METRICS_ABOVE = ("spend_usd",)
WALLET_METRICS_BELOW = ("balance_usd", "runway_seconds")

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
_TIME_METRICS = {"time_to_budget_seconds", "runway_seconds"}


class _RuleBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    severity: Severity = "critical"
    warn_at: list[float] = Field(default_factory=list)
    # Re-send while still breached after this long; None = never.
    renotify: Duration | None = 3600.0
    # Resolve only once the metric is back this fraction inside the threshold (no flapping).
    hysteresis: float = Field(default=0.05, ge=0, lt=1)

    @field_validator("renotify")
    @classmethod
    def _positive_renotify(cls, value: float | None) -> float | None:
        # 0 would re-send on every poll: the spam the product promises not to send. null turns it off.
        if value is not None and value <= 0:
            raise ValueError("renotify must be a positive duration such as '1h', or null to never re-send")
        return value

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

    run_id: list[str] = Field(default_factory=list)
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


class RunRule(_RuleBase):
    scope: Literal["run"] = "run"
    match: RunSelector = Field(default_factory=RunSelector)
    metric: RunMetric = "total_cost_usd"
    threshold: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    below: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    # For time_to_budget_seconds and projected_cost_usd: the budget in USD the run is heading to.
    budget_usd: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    # For projected_cost_usd: how far ahead to project at the current burn rate.
    horizon: Duration = 3600.0
    action: Literal["alert", "delete"] = "alert"

    @field_validator("below", mode="before")
    @classmethod
    def _duration_below(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _direction(self) -> RunRule:
        _check_direction(self.metric, self.threshold, self.below, RUN_METRICS_BELOW)
        if self.metric == "time_to_budget_seconds" and self.budget_usd is None:
            raise ValueError("metric time_to_budget_seconds needs budget_usd (the budget the run is heading to)")
        if self.action == "delete" and self.metric in RUN_METRICS_BELOW:
            raise ValueError("action delete needs a cap (threshold) on a cost or token metric")
        if self.action == "delete" and self.metric in ("burn_rate_usd_per_hour", "projected_cost_usd"):
            raise ValueError("action delete is allowed only on a measured total, not on a rate or projection")
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
    threshold: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    below: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    # For spend_usd: the trailing window the spend is summed over.
    window: Duration = 86400.0
    # Wallet rules only alert: which runs to stop when the wallet runs low is a later decision.
    action: Literal["alert"] = "alert"

    @field_validator("window")
    @classmethod
    def _positive_window(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("window must be a positive duration such as '24h'")
        return value

    @field_validator("below", mode="before")
    @classmethod
    def _duration_below(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

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
            unit = " (a duration such as '2h')" if metric in _TIME_METRICS else ""
            raise ValueError(f"metric {metric} breaches when it falls: give `below`{unit}, not `threshold`")
    elif threshold is None or below is not None:
        raise ValueError(f"metric {metric} breaches when it rises: give `threshold`, not `below`")


def _rule_scope(value: object) -> str:
    if isinstance(value, dict):
        return str(value.get("scope", "run"))
    return str(getattr(value, "scope", "run"))


Rule = Annotated[
    Annotated[RunRule, Tag("run")] | Annotated[WalletRule, Tag("wallet")],
    Discriminator(_rule_scope),
]
