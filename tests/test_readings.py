"""The reading model on its own: corrections, implausible readings, the derived inference split, the wallet.

End to end through the daemon and /metrics against the simulator: test_trust_e2e.py.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.readings.model import ReadingModel, WalletModel, with_derived_split
from monitor.snapshots import RunSnapshot, WalletSnapshot

# Qwen3.5-4B prices: $0.10 in / $0.30 out / $0.30 training per Mtok.
PRICES = {
    "training_price_per_mtok": 0.30,
    "inference_input_price_per_mtok": 0.10,
    "inference_output_price_per_mtok": 0.30,
}


def reading(at: float, *, train: int, inp: int, out: int, records: int, **override: float) -> RunSnapshot:
    train_cost = train * 0.30 / 1e6
    inference_cost = inp * 0.10 / 1e6 + out * 0.30 / 1e6
    fields: dict[str, float] = {
        "training_cost_usd": train_cost,
        "inference_cost_usd": inference_cost,
        "total_cost_usd": train_cost + inference_cost,
        **override,
    }
    return RunSnapshot(
        run_id="run-1",
        taken_at=at,
        taken_mono=at,
        training_tokens=train,
        inference_input_tokens=inp,
        inference_output_tokens=out,
        total_tokens=train + inp + out,
        record_count=records,
        **PRICES,  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )


def judge(model: ReadingModel, new: RunSnapshot, base: RunSnapshot | None) -> str:
    return model.judge(new, requested_run_id="run-1", baseline=base).outcome


def test_a_decrease_is_held_then_accepted_as_a_correction_when_the_next_reading_agrees() -> None:
    model = ReadingModel()
    base = reading(0, train=10_000_000, inp=5_000_000, out=2_000_000, records=10)
    corrected = reading(10, train=8_000_000, inp=4_000_000, out=1_600_000, records=9)
    held = model.judge(corrected, requested_run_id="run-1", baseline=base)
    assert held.outcome == "held" and held.code == "decrease_unconfirmed"
    assert "total_cost_usd fell" in held.reason
    confirming = reading(20, train=8_100_000, inp=4_050_000, out=1_620_000, records=10)
    verdict = model.judge(confirming, requested_run_id="run-1", baseline=base)
    assert verdict.outcome == "accepted" and verdict.corrected
    assert verdict.snapshot is not None and verdict.snapshot.total_cost_usd == confirming.total_cost_usd
    assert model.held("run-1") is None


def test_a_decrease_the_next_reading_contradicts_is_dropped_and_the_old_baseline_holds() -> None:
    model = ReadingModel()
    base = reading(0, train=10_000_000, inp=5_000_000, out=2_000_000, records=10)
    glitch = reading(10, train=0, inp=0, out=0, records=0)
    assert judge(model, glitch, base) == "held"
    back = reading(20, train=10_100_000, inp=5_050_000, out=2_020_000, records=11)
    verdict = model.judge(back, requested_run_id="run-1", baseline=base)
    assert verdict.outcome == "accepted" and not verdict.corrected and verdict.dropped_transient


def test_an_absurd_cost_is_rejected_and_never_becomes_the_baseline() -> None:
    model = ReadingModel()
    base = reading(0, train=1_000_000, inp=500_000, out=200_000, records=5)
    absurd = replace(
        reading(10, train=1_001_000, inp=500_500, out=200_200, records=6),
        training_cost_usd=1e300,
        total_cost_usd=1e300 + 0.11,
    )
    verdict = model.judge(absurd, requested_run_id="run-1", baseline=base)
    assert verdict.outcome == "rejected" and verdict.code == "implausible"
    assert "training.cost_usd rose by" in verdict.reason
    # The next good reading is judged against the old baseline, not against 1e300: accepted at once.
    assert judge(model, reading(20, train=1_002_000, inp=501_000, out=200_400, records=7), base) == "accepted"


def test_a_first_reading_whose_cost_its_tokens_cannot_explain_is_rejected() -> None:
    model = ReadingModel()
    absurd = reading(0, train=100, inp=0, out=0, records=1, training_cost_usd=50.0, total_cost_usd=50.0)
    assert judge(model, absurd, None) == "rejected"
    assert judge(model, reading(0, train=100, inp=10, out=10, records=1), None) == "accepted"


def test_a_reading_broken_on_its_own_is_rejected_as_invalid() -> None:
    model = ReadingModel()
    broken = reading(0, train=100, inp=10, out=10, records=1, total_cost_usd=5.0)
    verdict = model.judge(broken, requested_run_id="run-1", baseline=None)
    assert (verdict.outcome, verdict.code) == ("rejected", "invalid")
    assert "not the sum of its meters" in verdict.reason
    nan = reading(0, train=100, inp=10, out=10, records=1, inference_cost_usd=math.nan)
    assert judge(model, nan, None) == "rejected"


def test_the_inference_split_follows_each_increment_at_the_price_of_its_moment() -> None:
    """After a price change mid-run, the split derived per increment stays right while tokens x the
    latest price (what the official CLI shows) is wrong for every token billed before the change."""
    first = with_derived_split(reading(0, train=0, inp=1_000_000, out=1_000_000, records=1), None)
    assert first.inference_input_cost_usd == pytest.approx(0.10)
    # The input price doubles: the next million input tokens cost $0.20, the output ones $0.30 as before.
    later_cost = first.inference_cost_usd + 0.20 + 0.30
    later = replace(
        first,
        taken_at=10,
        inference_input_tokens=2_000_000,
        inference_output_tokens=2_000_000,
        inference_cost_usd=later_cost,
        total_cost_usd=later_cost,
        inference_input_price_per_mtok=0.20,
        inference_input_cost_estimate_usd=None,
    )
    derived = with_derived_split(later, first)
    assert derived.inference_input_cost_usd == pytest.approx(0.10 + 0.20)
    assert derived.inference_output_cost_usd == pytest.approx(0.60)
    assert later.inference_input_cost_at_latest_price() == pytest.approx(0.40)  # the latest-price figure: wrong


@given(
    steps=st.lists(
        st.tuples(st.integers(0, 10**9), st.integers(0, 10**9), st.floats(0.01, 5.0), st.floats(0.01, 5.0)),
        min_size=1,
        max_size=20,
    )
)
def test_the_derived_split_always_adds_up_to_the_reported_inference_cost(
    steps: list[tuple[int, int, float, float]],
) -> None:
    current: RunSnapshot | None = None
    tokens_in = tokens_out = 0
    cost = 0.0
    for added_in, added_out, price_in, price_out in steps:
        tokens_in += added_in
        tokens_out += added_out
        cost += (added_in * price_in + added_out * price_out) / 1e6
        new = RunSnapshot(
            run_id="r",
            taken_at=0,
            inference_input_tokens=tokens_in,
            inference_output_tokens=tokens_out,
            inference_cost_usd=cost,
            total_cost_usd=cost,
            inference_input_price_per_mtok=price_in,
            inference_output_price_per_mtok=price_out,
        )
        current = with_derived_split(new, current)
        assert 0.0 <= current.inference_input_cost_usd <= current.inference_cost_usd + 1e-12
        assert current.inference_input_cost_usd + current.inference_output_cost_usd == pytest.approx(cost)


def test_a_negative_wallet_balance_is_held_until_a_second_reading_confirms_it() -> None:
    model = WalletModel()

    def wallet(balance: float) -> WalletSnapshot:
        return WalletSnapshot(wallet_id="w", taken_at=0, balance_usd=balance)

    assert model.judge(wallet(120.0)).outcome == "accepted"
    assert model.judge(wallet(-5.0)).outcome == "held"
    assert model.judge(wallet(119.0)).dropped_transient
    assert model.judge(wallet(-5.0)).outcome == "held"
    assert model.judge(wallet(-6.0)).outcome == "accepted"
    assert model.judge(wallet(math.inf)).outcome == "rejected"
