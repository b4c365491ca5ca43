"""The reading model: how each new reading of a run (or of the wallet) is judged against the last one
accepted, before anything is shown, alerted on or enforced.

The API's latest figures are the truth, also when they fall. But one reading is not yet a fact:
- A reading that is broken on its own (monitor.readings.checks) or that jumps further than the run's new
  tokens can explain at the highest price anyone charges is **rejected**: counted, logged, never the
  baseline, so one absurd figure (a cost of 1e300) can neither alert nor blind the run afterwards.
- A reading whose totals or record count fall (a billing correction, or a glitch) is **held**: it is
  not shown or judged until the next reading agrees with it. If it does, the decrease is **accepted
  as a correction** and everything follows the corrected figure; if the next reading is back at the
  old level, the held one is dropped as a transient. While a decrease is held the run's latest read
  counts as not good, so enforcement does not act on the old, higher figure either.
- The inference input/output cost split is not reported by the API (it bills inference as one
  figure). It is derived here per usage increment at the prices of that moment, so a price change
  mid-run moves only the cost after it; a split is an estimate and never drives a delete.

Pure and synchronous: no I/O, no clock. The caller keeps the baseline (the runtime's latest reading)
and this module keeps only the decreases waiting for confirmation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from monitor.readings.checks import usage_problem
from monitor.snapshots import RunSnapshot, WalletSnapshot

# The highest published price per meter, $ per million tokens (Qwen3.5-397B-A17B), and a margin for
# price rises the table does not know yet. A run's own snapshotted price counts when it is higher.
HIGHEST_PRICE_PER_MTOK = {"training": 4.00, "inference_input": 1.00, "inference_output": 3.00}
PRICE_MARGIN = 1.5
# Costs are rounded by the API: a cent or so, or a thousandth of the figure, is never a jump.
_COST_TOLERANCE_USD = 0.02
_COST_TOLERANCE_RATIO = 0.001

Outcome = Literal["accepted", "held", "rejected"]


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    # The accepted reading, with its derived figures filled in (None unless accepted).
    snapshot: RunSnapshot | None = None
    # Why it was held or rejected, as a sentence for the log and the run's health.
    reason: str = ""
    # A short code for metrics: "invalid", "implausible", "decrease_unconfirmed" (held).
    code: str = ""
    # Accepted as a billing correction (a decrease the next reading confirmed).
    corrected: bool = False
    # A held decrease was dropped because this reading is back at the old level.
    dropped_transient: bool = False


def _tolerance(amount: float) -> float:
    return max(_COST_TOLERANCE_USD, _COST_TOLERANCE_RATIO * abs(amount))


def _price(reported: float | None, meter: str) -> float:
    highest = HIGHEST_PRICE_PER_MTOK[meter]
    if reported is not None and math.isfinite(reported) and reported > highest:
        highest = reported
    return highest * PRICE_MARGIN / 1_000_000


def _decrease(new: RunSnapshot, old: RunSnapshot) -> str | None:
    """What fell between two readings of one run, or None when nothing did."""
    pairs = (
        ("total_cost_usd", new.total_cost_usd, old.total_cost_usd),
        ("training.cost_usd", new.training_cost_usd, old.training_cost_usd),
        ("inference.cost_usd", new.inference_cost_usd, old.inference_cost_usd),
    )
    for name, now, before in pairs:
        if now + _tolerance(before) < before:
            return f"{name} fell from {before:.4f} to {now:.4f}"
    tokens = (
        ("training.tokens", new.training_tokens, old.training_tokens),
        ("inference.input_tokens", new.inference_input_tokens, old.inference_input_tokens),
        ("inference.output_tokens", new.inference_output_tokens, old.inference_output_tokens),
        ("record_count", new.record_count, old.record_count),
    )
    for name, count, earlier in tokens:
        if count < earlier:
            return f"{name} fell from {earlier:,} to {count:,}"
    return None


def _unexplained(new: RunSnapshot, old: RunSnapshot | None) -> str | None:
    """A cost that the tokens added since `old` (all tokens, for a first reading) cannot explain even at
    the highest known price; None when every meter's cost is explained."""
    base_train_tokens = old.training_tokens if old else 0
    base_in = old.inference_input_tokens if old else 0
    base_out = old.inference_output_tokens if old else 0
    train_cost = new.training_cost_usd - (old.training_cost_usd if old else 0.0)
    inference_cost = new.inference_cost_usd - (old.inference_cost_usd if old else 0.0)
    train_bound = (new.training_tokens - base_train_tokens) * _price(new.training_price_per_mtok, "training")
    inference_bound = (new.inference_input_tokens - base_in) * _price(
        new.inference_input_price_per_mtok, "inference_input"
    ) + (new.inference_output_tokens - base_out) * _price(new.inference_output_price_per_mtok, "inference_output")
    since = "since the last reading" if old else "in total"
    if train_cost > train_bound + _tolerance(new.training_cost_usd):
        return (
            f"training.cost_usd rose by {train_cost:.4g} {since}, more than its "
            f"{new.training_tokens - base_train_tokens:,} new tokens can cost at the highest known price"
        )
    if inference_cost > inference_bound + _tolerance(new.inference_cost_usd):
        return (
            f"inference.cost_usd rose by {inference_cost:.4g} {since}, more than its new input and output "
            "tokens can cost at the highest known prices"
        )
    return None


def _input_share(input_tokens: int, output_tokens: int, input_price: float | None, output_price: float | None) -> float:
    """The fraction of an inference cost that input tokens account for, at these prices."""
    if input_price is not None and output_price is not None:
        weight_in, weight_out = input_tokens * input_price, output_tokens * output_price
    else:
        weight_in, weight_out = float(input_tokens), float(output_tokens)
    total = weight_in + weight_out
    return weight_in / total if total > 0 else 0.0


def with_derived_split(new: RunSnapshot, old: RunSnapshot | None) -> RunSnapshot:
    """`new` with its inference input cost estimate: `old`'s estimate plus this increment's share at
    the latest prices; from the totals when there is no earlier estimate (a first reading, a correction)."""
    if old is None or old.inference_input_cost_estimate_usd is None:
        share = _input_share(
            new.inference_input_tokens,
            new.inference_output_tokens,
            new.inference_input_price_per_mtok,
            new.inference_output_price_per_mtok,
        )
        estimate = new.inference_cost_usd * share
    else:
        added_cost = new.inference_cost_usd - old.inference_cost_usd
        added_in = new.inference_input_tokens - old.inference_input_tokens
        added_out = new.inference_output_tokens - old.inference_output_tokens
        if added_in or added_out:
            share = _input_share(
                added_in, added_out, new.inference_input_price_per_mtok, new.inference_output_price_per_mtok
            )
        else:  # cost landed without tokens (rounding): keep the run's split so far
            share = old.inference_input_cost_estimate_usd / old.inference_cost_usd if old.inference_cost_usd else 0.0
        estimate = old.inference_input_cost_estimate_usd + added_cost * share
    return replace(new, inference_input_cost_estimate_usd=min(max(estimate, 0.0), new.inference_cost_usd))


class ReadingModel:
    """Judges readings of runs; keeps only the decreases that wait for confirmation."""

    def __init__(self) -> None:
        self._held: dict[str, RunSnapshot] = {}

    def held(self, run_id: str) -> RunSnapshot | None:
        return self._held.get(run_id)

    def forget(self, run_id: str) -> None:
        self._held.pop(run_id, None)

    def judge(
        self, reading: RunSnapshot, *, requested_run_id: str, baseline: RunSnapshot | None, commit: bool = True
    ) -> Verdict:
        """The verdict on `reading` given the last accepted reading of the run (None: the first).
        `commit=False` asks without changing what is held (a re-read before a decision)."""
        problem = usage_problem(reading, requested_run_id=requested_run_id)
        if problem is not None:
            return Verdict("rejected", reason=problem, code="invalid")
        if baseline is None:
            unexplained = _unexplained(reading, None)
            if unexplained is not None:
                return Verdict("rejected", reason=unexplained, code="implausible")
            return Verdict("accepted", snapshot=with_derived_split(reading, None))
        run_id = reading.run_id
        fell = _decrease(reading, baseline)
        held = self._held.get(run_id)
        if fell is not None:
            if held is not None and _decrease(reading, held) is None and _unexplained(reading, held) is None:
                if commit:
                    del self._held[run_id]
                return Verdict("accepted", snapshot=with_derived_split(reading, None), corrected=True, reason=fell)
            if commit:
                self._held[run_id] = reading
            return Verdict(
                "held",
                reason=f"{fell}: held until the next reading confirms a billing correction",
                code="decrease_unconfirmed",
            )
        dropped = (self._held.pop(run_id, None) if commit else held) is not None
        unexplained = _unexplained(reading, baseline)
        if unexplained is not None:
            return Verdict("rejected", reason=unexplained, code="implausible", dropped_transient=dropped)
        return Verdict("accepted", snapshot=with_derived_split(reading, baseline), dropped_transient=dropped)


class WalletModel:
    """The wallet's balance may rise (a top-up) and fall (spend) freely; a negative balance is held
    until the next reading confirms it, so one bad figure cannot open and resolve a floor alert.
    An accepted verdict carries no snapshot: the reading is kept as it came."""

    def __init__(self) -> None:
        self._held: WalletSnapshot | None = None

    def judge(self, reading: WalletSnapshot) -> Verdict:
        balance = reading.balance_usd
        if not math.isfinite(balance):
            return Verdict("rejected", reason=f"balance_usd is not a finite number ({balance})", code="invalid")
        if reading.total_billings < 0:
            return Verdict("rejected", reason="total_billings is negative", code="invalid")
        if balance < 0:
            confirmed = self._held is not None and self._held.wallet_id == reading.wallet_id
            self._held = reading
            if not confirmed:
                return Verdict(
                    "held",
                    reason=f"balance_usd is negative ({balance:.2f}): held until the next reading confirms it",
                    code="negative_unconfirmed",
                )
            return Verdict("accepted", reason="a negative balance, confirmed by a second reading")
        dropped = self._held is not None
        self._held = None
        return Verdict("accepted", dropped_transient=dropped)
