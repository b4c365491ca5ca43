"""A simulated run and the pure arithmetic of its meters, as functions of simulated time.

Nothing runs in the background: every figure is computed from the run's fixed facts (when
it was created, its queue delay, rates, prices, when it was deleted) and the time asked about.

- The run is QUEUED for `queue_seconds`, then RUNNING until the earliest of: `max_steps`
  steps done (COMPLETED), `fail_after` seconds of running (FAILED), the first DELETE (STOPPED).
- True accrued tokens per meter = floor(rate x running seconds).
- Usage lands as records: a billing job runs at every multiple of `meter_interval` seconds
  of the epoch and lands what each run accrued since its last record. So the billed figures
  move in steps and stand still between records; what a run accrued before it ended (a
  DELETE, say) lands at the first record boundary at or after the end, then nothing more.
- Cost per meter = tokens x price per Mtok / 1e6, from the run's snapshotted prices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from monitor.sim.pricing import ModelPrice
from monitor.sim.rates import MeterRates

MAX_DELETES_KEPT = 20


@dataclass(frozen=True)
class Usage:
    training_tokens: int
    input_tokens: int
    output_tokens: int
    training_cost_usd: float
    input_cost_usd: float
    output_cost_usd: float

    @property
    def inference_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def inference_cost_usd(self) -> float:
        return self.input_cost_usd + self.output_cost_usd

    @property
    def total_tokens(self) -> int:
        return self.training_tokens + self.inference_tokens

    @property
    def total_cost_usd(self) -> float:
        return self.training_cost_usd + self.inference_cost_usd

    def as_dict(self) -> dict[str, float | int]:
        return {
            "training_tokens": self.training_tokens,
            "inference_input_tokens": self.input_tokens,
            "inference_output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "training_cost_usd": self.training_cost_usd,
            "inference_input_cost_usd": self.input_cost_usd,
            "inference_output_cost_usd": self.output_cost_usd,
            "inference_cost_usd": self.inference_cost_usd,
            "total_cost_usd": self.total_cost_usd,
        }


def price_usage(*, training: int, input_: int, output: int, price: ModelPrice) -> Usage:
    return Usage(
        training_tokens=training,
        input_tokens=input_,
        output_tokens=output,
        training_cost_usd=training * price.training_per_mtok / 1e6,
        input_cost_usd=input_ * price.inference_input_per_mtok / 1e6,
        output_cost_usd=output * price.inference_output_per_mtok / 1e6,
    )


@dataclass(frozen=True)
class BillingView:
    """What has landed by a moment: the figures the public API shows."""

    usage: Usage
    record_count: int
    first_billed_at: float | None
    last_billed_at: float | None


@dataclass
class SimRun:
    run_id: str
    name: str | None
    base_model: str
    team_id: str | None
    wallet_id: str
    price: ModelPrice
    rates: MeterRates
    created_at: float
    queue_seconds: float
    step_seconds: float
    max_steps: int | None
    fail_after: float | None
    source: str
    job_id: str
    token_fingerprint: str | None = None
    secrets_received: tuple[str, ...] = ()
    first_delete_at: float | None = None
    delete_count: int = 0
    deletes: list[tuple[float, str]] = field(default_factory=list)

    @property
    def started_at(self) -> float:
        return self.created_at + self.queue_seconds

    def record_delete(self, at: float, path: str) -> bool:
        """Note a DELETE; True when it is the first (the one that stops the burn)."""
        first = self.first_delete_at is None
        if first:
            self.first_delete_at = at
        self.delete_count += 1
        if len(self.deletes) < MAX_DELETES_KEPT:
            self.deletes.append((at, path))
        return first

    def end(self) -> tuple[float, str | None]:
        """When the burn stops for good and why ('completed', 'failed', 'deleted'); (inf, None) if not planned."""
        candidates: list[tuple[float, int, str]] = []
        if self.max_steps is not None:
            candidates.append((self.started_at + self.max_steps * self.step_seconds, 0, "completed"))
        if self.fail_after is not None:
            candidates.append((self.started_at + self.fail_after, 1, "failed"))
        if self.first_delete_at is not None:
            # A DELETE while queued ends the run before it starts: no running time at all.
            candidates.append((self.first_delete_at, 2, "deleted"))
        if not candidates:
            return math.inf, None
        at, _, reason = min(candidates)
        return at, reason

    def status(self, t: float) -> str:
        end_at, reason = self.end()
        if reason == "deleted" and end_at <= t:
            return "STOPPED"
        if t < self.started_at:
            return "QUEUED"
        if reason is not None and end_at <= t:
            return "COMPLETED" if reason == "completed" else "FAILED"
        return "RUNNING"

    def running_seconds(self, t: float) -> float:
        end_at, _ = self.end()
        return max(0.0, min(t, end_at) - self.started_at)

    def steps_done(self, t: float) -> int:
        steps = int(self.running_seconds(t) // self.step_seconds)
        return min(steps, self.max_steps) if self.max_steps is not None else steps

    def accrued(self, t: float) -> Usage:
        """The true usage up to `t`, landed or not."""
        seconds = self.running_seconds(t)
        # The epsilon keeps 2.9999999 tokens from flooring to 2 through float noise.
        return price_usage(
            training=math.floor(self.rates.training * seconds + 1e-6),
            input_=math.floor(self.rates.inference_input * seconds + 1e-6),
            output=math.floor(self.rates.inference_output * seconds + 1e-6),
            price=self.price,
        )

    def billed(self, t: float, *, meter_interval: float) -> BillingView:
        """The usage that has landed by `t` as records on the meter_interval grid."""
        start = self.started_at
        end_at, _ = self.end()
        empty = BillingView(usage=self.accrued(start), record_count=0, first_billed_at=None, last_billed_at=None)
        if end_at <= start:
            return empty
        last_boundary = math.ceil(end_at / meter_interval) * meter_interval if math.isfinite(end_at) else math.inf
        upper = min(t, last_boundary)
        first_index = math.floor(start / meter_interval) + 1
        last_index = math.floor(upper / meter_interval)
        count = last_index - first_index + 1
        if count <= 0:
            return empty
        last_at = last_index * meter_interval
        return BillingView(
            usage=self.accrued(last_at),
            record_count=count,
            first_billed_at=first_index * meter_interval,
            last_billed_at=last_at,
        )
