"""A simulated run and the arithmetic of its meters, as functions of simulated time.

Nothing runs in the background: every figure is computed from the run's facts (when it was
created, its queue delay, rates, when it was deleted, its price changes and corrections) and
the time asked about.

- The run is QUEUED for `queue_seconds`, then RUNNING until the earliest of: `max_steps`
  steps done (COMPLETED), `fail_after` seconds of running (FAILED), the first DELETE (STOPPED).
- Raw tokens per meter = floor(rate x running seconds).
- Prices come in segments: the price snapshotted at creation, then one segment per price
  change. Tokens are priced by the segment they accrued in, so a meter's cost is the sum over
  segments of (tokens accrued in it x its price).
- Usage lands as records: a billing job runs at every multiple of `meter_interval` seconds
  of the epoch (grid index g lands at g x meter_interval) and lands what the run accrued
  since its last record. What a run accrued before it ended lands at the first boundary at
  or after the end, then nothing more.
- A correction (`correct`) takes a fraction off both the landed figures and the true accrued
  ones at its moment; accrual goes on on top of the corrected figures. A landing at the same
  instant as a correction comes first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from monitor.sim.pricing import ModelPrice
from monitor.sim.rates import MeterRates
from monitor.sim.usage import TOKEN_EPSILON, ZERO_USAGE, Usage, price_usage, shrink

MAX_DELETES_KEPT = 20


@dataclass(frozen=True)
class PriceSegment:
    """Prices that apply to tokens accrued from `starts_at` until the next segment starts."""

    starts_at: float
    price: ModelPrice


@dataclass(frozen=True)
class Correction:
    """A billing correction: what the run showed just before it and just after."""

    at: float
    fraction: float
    records_requested: int
    records_removed: int
    # Raw records landed when it was made; 0: nothing had landed, so no wallet row moved.
    landed_records: int
    accrued_before: Usage
    accrued_after: Usage
    billed_before: Usage
    billed_after: Usage
    record_count_before: int

    @property
    def accrued_removed(self) -> Usage:
        return self.accrued_before.minus(self.accrued_after)

    @property
    def amount_usd(self) -> float:
        """The change to the run's billed total (negative: a credit)."""
        return self.billed_after.total_cost_usd - self.billed_before.total_cost_usd


@dataclass(frozen=True)
class BillingView:
    """What has landed by a moment: the figures the public API shows."""

    usage: Usage
    record_count: int
    first_billed_at: float | None
    last_billed_at: float | None
    # Records landed before any correction removed some: what per-record wallet rows number.
    landed_records: int = 0
    # The last moment the landed figures changed: a landing or a correction after it.
    updated_at: float | None = None


@dataclass
class SimRun:
    run_id: str
    name: str | None
    base_model: str
    team_id: str | None
    wallet_id: str
    price: ModelPrice  # snapshotted at creation; `latest_price` after price changes
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
    segments: list[PriceSegment] = field(default_factory=list)
    corrections: list[Correction] = field(default_factory=list)
    # The last billed view and what it depends on (see `billed`): wallets over 10,000 runs ask often.
    _billed_memo: tuple[tuple[int, float, float | None, int, int], BillingView] | None = field(
        default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not self.segments:
            self.segments.append(PriceSegment(starts_at=self.created_at, price=self.price))

    @property
    def started_at(self) -> float:
        return self.created_at + self.queue_seconds

    @property
    def latest_price(self) -> ModelPrice:
        return self.segments[-1].price

    # --- lifecycle ---------------------------------------------------------------------------

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

    # --- price changes and corrections ---------------------------------------------------------

    def change_price(self, at: float, price: ModelPrice) -> None:
        """Tokens accrued from `at` on are priced at `price`; earlier tokens keep theirs."""
        # Segments stay in time order even if a wall clock steps back.
        self.segments.append(PriceSegment(starts_at=max(at, self.segments[-1].starts_at), price=price))

    def correct(self, at: float, *, fraction: float, records: int, meter_interval: float) -> Correction:
        """Take `fraction` off the landed and the accrued figures now, and `records` off the record count."""
        view = self.billed(at, meter_interval=meter_interval)
        accrued = self.accrued(at)
        one_price = self.latest_price if len(self.segments) == 1 else None
        correction = Correction(
            at=at,
            fraction=fraction,
            records_requested=records,
            records_removed=min(records, view.record_count),
            landed_records=view.landed_records,
            accrued_before=accrued,
            accrued_after=shrink(accrued, fraction=fraction, one_price=one_price),
            billed_before=view.usage,
            billed_after=shrink(view.usage, fraction=fraction, one_price=one_price),
            record_count_before=view.record_count,
        )
        self.corrections.append(correction)
        return correction

    # --- the meters ----------------------------------------------------------------------------

    def raw_tokens(self, t: float) -> tuple[int, int, int]:
        """(training, input, output) tokens accrued by `t`, before any correction."""
        seconds = self.running_seconds(t)
        rates = self.rates
        return (
            math.floor(rates.training * seconds + TOKEN_EPSILON),
            math.floor(rates.inference_input * seconds + TOKEN_EPSILON),
            math.floor(rates.inference_output * seconds + TOKEN_EPSILON),
        )

    def segment_usage(self, index: int, t: float) -> Usage:
        """Raw usage accrued by `t` within price segment `index`, at its prices."""
        segment = self.segments[index]
        # The first segment also holds whatever accrued before the run was created (nothing).
        starts = segment.starts_at if index > 0 else -math.inf
        following = self.segments[index + 1].starts_at if index + 1 < len(self.segments) else math.inf
        if starts >= t:
            return price_usage(training=0, input_=0, output=0, price=segment.price)
        upto = self.raw_tokens(min(t, following))
        before = self.raw_tokens(starts)
        training, input_, output = (upto[meter] - before[meter] for meter in range(3))
        return price_usage(training=training, input_=input_, output=output, price=segment.price)

    def raw_accrued(self, t: float) -> Usage:
        """Usage accrued by `t`, each token at the price of its segment, before corrections."""
        if len(self.segments) == 1:
            training, input_, output = self.raw_tokens(t)
            return price_usage(training=training, input_=input_, output=output, price=self.price)
        total = ZERO_USAGE
        for index in range(len(self.segments)):
            total = total.plus(self.segment_usage(index, t))
        return total

    def _less_corrections(self, usage: Usage, *, upto: float, inclusive: bool) -> Usage:
        for correction in self.corrections:
            if correction.at < upto or (inclusive and correction.at == upto):
                usage = usage.minus(correction.accrued_removed)
        return usage

    def accrued(self, t: float) -> Usage:
        """The true usage up to `t`, landed or not, after the corrections made by `t`."""
        return self._less_corrections(self.raw_accrued(t), upto=t, inclusive=True)

    def landed_usage(self, grid_index: int, *, meter_interval: float) -> Usage:
        """What the record at grid_index x meter_interval brings the billed figures to."""
        at = grid_index * meter_interval
        # The landing comes before a correction made at the same instant.
        return self._less_corrections(self.raw_accrued(at), upto=at, inclusive=False)

    def landing_span(self, t: float, *, meter_interval: float) -> tuple[int, int] | None:
        """Grid indices (first, last) of the records landed by `t`; None if none has."""
        start = self.started_at
        end_at, _ = self.end()
        if end_at <= start:
            return None
        first = math.floor(start / meter_interval) + 1
        last = math.floor(t / meter_interval)
        if math.isfinite(end_at):
            last = min(last, math.ceil(end_at / meter_interval))
        return (first, last) if last >= first else None

    def billed(self, t: float, *, meter_interval: float) -> BillingView:
        """The usage that has landed by `t` as records on the meter_interval grid, after corrections.

        Between two grid boundaries it changes only when the run does (a delete, a price change,
        a correction), so it is remembered under those; not for a moment before a correction.
        """
        if self.corrections and self.corrections[-1].at > t:
            return self._billed(t, meter_interval=meter_interval)
        key = (
            math.floor(t / meter_interval),
            meter_interval,
            self.first_delete_at,
            len(self.segments),
            len(self.corrections),
        )
        if self._billed_memo is not None and self._billed_memo[0] == key:
            return self._billed_memo[1]
        view = self._billed(t, meter_interval=meter_interval)
        self._billed_memo = (key, view)
        return view

    def _billed(self, t: float, *, meter_interval: float) -> BillingView:
        span = self.landing_span(t, meter_interval=meter_interval)
        if span is None:
            return BillingView(usage=ZERO_USAGE, record_count=0, first_billed_at=None, last_billed_at=None)
        first, last = span
        landed_at = last * meter_interval
        made = [c for c in self.corrections if c.at <= t]
        latest = made[-1] if made else None
        if latest is not None and latest.at >= landed_at:
            usage, updated_at = latest.billed_after, latest.at
        else:
            usage, updated_at = self.landed_usage(last, meter_interval=meter_interval), landed_at
        landed = last - first + 1
        return BillingView(
            usage=usage,
            record_count=landed - sum(c.records_removed for c in made),
            first_billed_at=first * meter_interval,
            last_billed_at=landed_at,
            landed_records=landed,
            updated_at=updated_at,
        )

    def record_amount_usd(self, grid_index: int, *, first_index: int, meter_interval: float) -> float:
        """The cost a record added to the billed total: what it landed less what was billed just before."""
        at = grid_index * meter_interval
        landed = self.landed_usage(grid_index, meter_interval=meter_interval).total_cost_usd
        previous_at = (grid_index - 1) * meter_interval
        before = [c for c in self.corrections if c.at < at]
        if before and (grid_index == first_index or before[-1].at >= previous_at):
            return landed - before[-1].billed_after.total_cost_usd
        if grid_index == first_index:
            return landed
        return landed - self.landed_usage(grid_index - 1, meter_interval=meter_interval).total_cost_usd
