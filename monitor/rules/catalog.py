"""The metric catalog: every metric a rule can watch, declared once.

For each: its scope (a run or the wallet), the direction it breaches in, its unit, the noun people
read in messages, whether the API reports it (measured) or the monitor computes it (derived), and,
for a run's cumulative totals, how its value is read from a reading. Rule validation, evaluation,
message wording and number formatting, and the budget gauges all read this table; a test checks it
agrees with the config schema's metric names.

Only measured figures may drive a delete (PRODUCT.md, "Enforcement safety"). The API bills
inference as one figure, so its input/output split is derived (an estimate), like every rate and
projection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from monitor.snapshots import RunSnapshot

Scope = Literal["run", "wallet"]
Direction = Literal["above", "below"]
Unit = Literal["usd", "tokens", "usd_per_hour", "seconds"]
Source = Literal["measured", "derived"]
# total: a cumulative total of a reading; rate and projection: computed from a run's readings over
# time; balance: the wallet's figure; window: a sum over a trailing window of wallet readings.
Kind = Literal["total", "rate", "projection", "balance", "window"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    scope: Scope
    breaches: Direction
    unit: Unit
    noun: str
    source: Source
    kind: Kind
    # For a run's totals: the value in a reading.
    read: Callable[[RunSnapshot], float] | None = None
    # For a derived metric: what it is computed from (said when a delete on it is refused), and the
    # measured metric a delete may cap instead, if there is one.
    derived_from: str = ""
    measured_instead: str = ""

    @property
    def may_delete(self) -> bool:
        """A delete may act on it: a run's figure the API reports as is."""
        return self.scope == "run" and self.source == "measured" and self.kind == "total"

    @property
    def is_estimate(self) -> bool:
        return self.source == "derived" and self.kind == "total"


def _total(name: str, unit: Unit, noun: str, read: Callable[[RunSnapshot], float]) -> MetricSpec:
    return MetricSpec(name, "run", "above", unit, noun, "measured", "total", read)


_PRICE_SPLIT = "prices (an estimate)"

CATALOG: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        _total("total_cost_usd", "usd", "total cost", lambda s: s.total_cost_usd),
        _total("training_cost_usd", "usd", "training cost", lambda s: s.training_cost_usd),
        _total("inference_cost_usd", "usd", "inference cost", lambda s: s.inference_cost_usd),
        MetricSpec(
            "inference_input_cost_usd",
            "run",
            "above",
            "usd",
            "inference input cost (estimate)",
            "derived",
            "total",
            lambda s: s.inference_input_cost_usd,
            derived_from=_PRICE_SPLIT,
            measured_instead="inference_cost_usd",
        ),
        MetricSpec(
            "inference_output_cost_usd",
            "run",
            "above",
            "usd",
            "inference output cost (estimate)",
            "derived",
            "total",
            lambda s: s.inference_output_cost_usd,
            derived_from=_PRICE_SPLIT,
            measured_instead="inference_cost_usd",
        ),
        _total("total_tokens", "tokens", "total tokens", lambda s: float(s.total_tokens)),
        _total("training_tokens", "tokens", "training tokens", lambda s: float(s.training_tokens)),
        _total("inference_input_tokens", "tokens", "inference input tokens", lambda s: float(s.inference_input_tokens)),
        _total(
            "inference_output_tokens", "tokens", "inference output tokens", lambda s: float(s.inference_output_tokens)
        ),
        MetricSpec(
            "burn_rate_usd_per_hour",
            "run",
            "above",
            "usd_per_hour",
            "burn rate",
            "derived",
            "rate",
            derived_from="readings over time (a rate)",
        ),
        MetricSpec(
            "projected_cost_usd",
            "run",
            "above",
            "usd",
            "projected cost",
            "derived",
            "projection",
            derived_from="the burn rate (a projection)",
        ),
        MetricSpec(
            "time_to_budget_seconds",
            "run",
            "below",
            "seconds",
            "time to budget",
            "derived",
            "projection",
            derived_from="the burn rate (a projection)",
        ),
        MetricSpec("balance_usd", "wallet", "below", "usd", "balance", "measured", "balance"),
        MetricSpec("runway_seconds", "wallet", "below", "seconds", "runway", "derived", "projection"),
        MetricSpec("spend_usd", "wallet", "above", "usd", "spend", "derived", "window"),
    )
}

RUN_METRICS: tuple[str, ...] = tuple(name for name, spec in CATALOG.items() if spec.scope == "run")
WALLET_METRICS: tuple[str, ...] = tuple(name for name, spec in CATALOG.items() if spec.scope == "wallet")
RUN_TOTALS: tuple[str, ...] = tuple(name for name in RUN_METRICS if CATALOG[name].kind == "total")


def spec_of(metric: str) -> MetricSpec:
    return CATALOG[metric]


def is_measured(metric: str) -> bool:
    """True when a delete may act on this metric (the API reports it as is)."""
    spec = CATALOG.get(metric)
    return spec is not None and spec.may_delete


def delete_refusal(metric: str) -> str | None:
    """Why `action: delete` cannot use this metric, or None when it can."""
    spec = CATALOG.get(metric)
    if spec is None or spec.may_delete:
        return None
    if spec.scope == "wallet":
        return "wallet rules only alert"
    instead = f", or cap {spec.measured_instead}" if spec.measured_instead else ""
    return (
        f"action delete needs a figure the API reports directly; {metric} is derived from "
        f"{spec.derived_from}: use action alert{instead}"
    )
