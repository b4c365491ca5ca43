"""Billing corrections and mid-run price changes, seen through the public API and the ledger.

TEST_SCENARIO's run-qwen4b burns 1000 / 600 / 400 tokens a second (training / input / output)
at Qwen3.5-4B prices (.30 / .10 / .30 $ per Mtok); at the manual clock's start it has run
600 s and landed 10 records.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from monitor.api.models import RunUsageResponse
from tests.support.simulator import SimulatorHandle

T0 = 1_800_000_000.0
RUN = "run-qwen4b"
RATES = {"training": 1000, "input": 600, "output": 400}
PRICE = {"training": 0.30, "input": 0.10, "output": 0.30}


def usage(sim: SimulatorHandle, run_id: str = RUN) -> RunUsageResponse:
    return RunUsageResponse.model_validate(sim.usage(run_id))


def row_of(sim: SimulatorHandle, run_id: str = RUN) -> dict[str, Any]:
    return next(row for row in sim.wallet_rows() if row["resource_id"] == run_id)


def admin_post(sim: SimulatorHandle, path: str, body: Any) -> httpx.Response:
    headers = {"X-Sim-Admin-Token": sim.admin_token}
    if isinstance(body, bytes):
        return httpx.post(f"{sim.base_url}{path}", headers=headers, content=body)
    return httpx.post(f"{sim.base_url}{path}", headers=headers, json=body)


def assert_totals_add_up(figures: RunUsageResponse) -> None:
    assert figures.inference.tokens == figures.inference.input_tokens + figures.inference.output_tokens
    assert figures.total_tokens == figures.training.tokens + figures.inference.tokens
    assert figures.total_cost_usd == pytest.approx(figures.training.cost_usd + figures.inference.cost_usd)


# --- corrections -------------------------------------------------------------------------------


def test_a_correction_takes_its_fraction_off_every_meter(manual_simulator: SimulatorHandle) -> None:
    manual_simulator.advance(30)  # 630 s accrued, 600 s landed
    correction = manual_simulator.correct_run(RUN, fraction=0.25, records=1)

    after = usage(manual_simulator)
    assert (after.training.tokens, after.inference.input_tokens, after.inference.output_tokens) == (
        450_000,
        270_000,
        180_000,
    )
    assert after.training.cost_usd == pytest.approx(450_000 * PRICE["training"] / 1e6)
    input_cost, output_cost = 270_000 * PRICE["input"] / 1e6, 180_000 * PRICE["output"] / 1e6
    assert after.inference.cost_usd == pytest.approx(input_cost + output_cost)
    assert after.record_count == 9
    assert_totals_add_up(after)

    assert correction["at"] == T0 + 30
    assert (correction["records_requested"], correction["records_removed"]) == (1, 1)
    assert correction["billed_before"]["training_tokens"] == 600_000
    assert correction["billed_before"]["record_count"] == 10
    assert correction["billed_after"]["training_tokens"] == 450_000
    assert correction["billed_after"]["record_count"] == 9
    assert correction["amount_usd"] == pytest.approx(
        after.total_cost_usd - correction["billed_before"]["total_cost_usd"]
    )
    entry = manual_simulator.run_ledger(RUN)
    assert entry["corrections"] == [correction]
    # The true meter drops by the same fraction: 630 s of training tokens x 0.75.
    assert entry["accrued"]["training_tokens"] == 472_500
    assert entry["billed"]["total_cost_usd"] == pytest.approx(after.total_cost_usd)


def test_the_wallet_row_and_balance_follow_a_correction(manual_simulator: SimulatorHandle) -> None:
    before_balance = manual_simulator.wallet()["balance_usd"]
    before_row = row_of(manual_simulator)
    manual_simulator.advance(10)
    manual_simulator.correct_run(RUN, fraction=0.5)
    corrected = usage(manual_simulator)
    row = row_of(manual_simulator)
    assert row["amount_usd"] == pytest.approx(corrected.total_cost_usd)
    assert row["amount_usd"] == pytest.approx(before_row["amount_usd"] / 2)
    # The row moved now, though no record landed: updated_at says so, last_billed_at does not.
    assert row["last_billed_at"] == before_row["last_billed_at"]
    assert row["updated_at"] > before_row["updated_at"]
    assert manual_simulator.wallet()["balance_usd"] == pytest.approx(before_balance + before_row["amount_usd"] / 2)


def test_accrual_continues_on_top_of_the_corrected_figures(manual_simulator: SimulatorHandle) -> None:
    manual_simulator.advance(30)
    manual_simulator.correct_run(RUN, fraction=0.25, records=1)
    manual_simulator.advance(30)  # the next record lands the corrected unbilled 30 s too
    landed = usage(manual_simulator)
    assert landed.training.tokens == 472_500 + 30 * RATES["training"]
    assert landed.inference.output_tokens == 252_000 * 3 // 4 + 30 * RATES["output"]
    assert landed.record_count == 10  # 11 landed, one taken off
    assert_totals_add_up(landed)
    manual_simulator.advance(60)
    assert usage(manual_simulator).training.tokens == landed.training.tokens + 60 * RATES["training"]
    assert row_of(manual_simulator)["amount_usd"] == pytest.approx(usage(manual_simulator).total_cost_usd)


def test_record_count_never_drops_below_zero(manual_simulator: SimulatorHandle) -> None:
    correction = manual_simulator.correct_run(RUN, fraction=1.0, records=50)
    assert correction["records_removed"] == 10
    refunded = usage(manual_simulator)
    assert (refunded.record_count, refunded.total_tokens, refunded.total_cost_usd) == (0, 0, 0.0)
    manual_simulator.advance(60)
    assert usage(manual_simulator).record_count == 1
    assert usage(manual_simulator).training.tokens == 60 * RATES["training"]


def test_a_correction_before_anything_landed_changes_nothing_visible(manual_simulator: SimulatorHandle) -> None:
    correction = manual_simulator.correct_run("run-queued", fraction=0.5, records=3)
    assert correction["records_removed"] == 0
    assert correction["billed_after"]["total_cost_usd"] == 0
    manual_simulator.advance(120 + 60)  # out of the queue, then one record
    assert usage(manual_simulator, "run-queued").training.tokens == 60 * 100


def test_corrections_compound(manual_simulator: SimulatorHandle) -> None:
    manual_simulator.correct_run(RUN, fraction=0.5)
    manual_simulator.correct_run(RUN, fraction=0.5, records=2)
    twice = usage(manual_simulator)
    assert twice.training.tokens == 150_000
    assert twice.record_count == 8
    assert len(manual_simulator.run_ledger(RUN)["corrections"]) == 2


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "fraction"),
        ({"fraction": 0}, "fraction"),
        ({"fraction": 1.5}, "fraction"),
        ({"fraction": "a lot"}, "fraction"),
        ({"fraction": 0.1, "records": -1}, "records"),
        ({"fraction": 0.1, "records": 1.5}, "records"),
        ({"fraction": 0.1, "meters": ["training"]}, "meters"),
        (b"{not json", "body"),
    ],
)
def test_bad_correction_bodies_answer_422(simulator: SimulatorHandle, body: Any, param: str) -> None:
    response = admin_post(simulator, f"/_sim/runs/{RUN}/correction", body)
    assert response.status_code == 422
    assert param in [error["param"] for error in response.json()["errors"]]
    assert simulator.run_ledger(RUN)["corrections"] == []


def test_correcting_an_unknown_run_answers_404(simulator: SimulatorHandle) -> None:
    response = admin_post(simulator, "/_sim/runs/nope/correction", {"fraction": 0.1})
    assert response.status_code == 404


# --- price changes ---------------------------------------------------------------------------


def test_a_price_change_prices_only_the_tokens_after_it(manual_simulator: SimulatorHandle) -> None:
    new = {"inference_input_per_mtok": 0.20, "inference_output_per_mtok": 0.90}
    answer = manual_simulator.set_pricing(RUN, **new)
    assert answer["at"] == T0
    assert answer["pricing"] == {"training_per_mtok": PRICE["training"], **new}
    manual_simulator.advance(120)  # two records at the new prices

    shown = usage(manual_simulator)
    assert shown.pricing.inference_input_per_mtok == 0.20
    assert shown.pricing.inference_output_per_mtok == 0.90
    assert shown.pricing.training_per_mtok == PRICE["training"]
    true_input = (600 * 600 * PRICE["input"] + 120 * 600 * 0.20) / 1e6
    true_output = (600 * 400 * PRICE["output"] + 120 * 400 * 0.90) / 1e6
    assert shown.inference.cost_usd == pytest.approx(true_input + true_output)
    assert shown.training.cost_usd == pytest.approx(720 * 1000 * PRICE["training"] / 1e6)
    assert_totals_add_up(shown)

    billed = manual_simulator.run_ledger(RUN)["billed"]
    assert billed["inference_input_cost_usd"] == pytest.approx(true_input)
    assert billed["inference_output_cost_usd"] == pytest.approx(true_output)
    # A split derived from the latest prices is wrong after a change: that is the point.
    assert shown.inference.input_tokens * 0.20 / 1e6 != pytest.approx(true_input)


def test_the_ledger_shows_each_price_segment(manual_simulator: SimulatorHandle) -> None:
    manual_simulator.advance(30)
    manual_simulator.set_pricing(RUN, training_per_mtok=0.5)
    manual_simulator.advance(90)
    manual_simulator.set_pricing(RUN, training_per_mtok=0.7)
    manual_simulator.advance(60)
    segments = manual_simulator.run_ledger(RUN)["price_segments"]
    assert [(s["from"], s["until"], s["training_per_mtok"]) for s in segments] == [
        (T0 - 600, T0 + 30, 0.30),
        (T0 + 30, T0 + 120, 0.5),
        (T0 + 120, None, 0.7),
    ]
    assert [s["accrued"]["training_tokens"] for s in segments] == [630_000, 90_000, 60_000]
    assert segments[1]["accrued"]["training_cost_usd"] == pytest.approx(90_000 * 0.5 / 1e6)
    entry = manual_simulator.run_ledger(RUN)
    assert entry["accrued"]["training_cost_usd"] == pytest.approx(
        sum(s["accrued"]["training_cost_usd"] for s in segments)
    )
    assert entry["pricing"]["training_per_mtok"] == 0.7


def test_tokens_accrued_before_a_change_keep_their_price_until_they_land(manual_simulator: SimulatorHandle) -> None:
    manual_simulator.advance(30)
    manual_simulator.set_pricing(RUN, training_per_mtok=3.0)
    manual_simulator.advance(30)  # this record: 30 s at .30, then 30 s at 3.00
    landed = usage(manual_simulator)
    assert landed.training.cost_usd == pytest.approx((630_000 * 0.30 + 30_000 * 3.0) / 1e6)


def test_a_correction_after_a_price_change_takes_the_same_share_of_each_price(
    manual_simulator: SimulatorHandle,
) -> None:
    manual_simulator.set_pricing(RUN, inference_output_per_mtok=1.0)
    manual_simulator.advance(60)
    full = usage(manual_simulator)
    manual_simulator.correct_run(RUN, fraction=0.5)
    half = usage(manual_simulator)
    assert half.inference.output_tokens == full.inference.output_tokens // 2
    assert half.inference.cost_usd == pytest.approx(full.inference.cost_usd / 2)
    assert half.total_cost_usd == pytest.approx(full.total_cost_usd / 2)
    billed = manual_simulator.run_ledger(RUN)["billed"]
    assert billed["inference_output_cost_usd"] == pytest.approx((240_000 * 0.30 + 24_000 * 1.0) / 2 / 1e6)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "body"),
        ({"training_per_mtok": -1}, "training_per_mtok"),
        ({"inference_input_per_mtok": "cheap"}, "inference_input_per_mtok"),
        ({"training_per_mtok": 1, "colour": "red"}, "colour"),
        (b'{"training_per_mtok": NaN}', "training_per_mtok"),
    ],
)
def test_bad_pricing_bodies_answer_422(simulator: SimulatorHandle, body: Any, param: str) -> None:
    response = admin_post(simulator, f"/_sim/runs/{RUN}/pricing", body)
    assert response.status_code == 422
    assert param in [error["param"] for error in response.json()["errors"]]
    assert len(simulator.run_ledger(RUN)["price_segments"]) == 1


def test_repricing_an_unknown_run_answers_404(simulator: SimulatorHandle) -> None:
    assert admin_post(simulator, "/_sim/runs/nope/pricing", {"training_per_mtok": 1}).status_code == 404
