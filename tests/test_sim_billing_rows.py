"""`billing_rows: per_record`: one wallet row per landed usage record, paged newest first.

In TEST_SCENARIO at the manual clock's start, run-qwen4b has landed 10 records of 60 s each
(one every minute up to T0), and the personal wallet has one static compute row a day old.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.simulator import TEST_SCENARIO, SimulatorHandle, running_simulator

T0 = 1_800_000_000.0
PER_RECORD = {**TEST_SCENARIO, "billing_rows": "per_record"}
# run-qwen4b's cost per 60 s record: 60 x (1000 x .30 + 600 x .10 + 400 x .30) / 1e6.
QWEN4B_RECORD_USD = 60 * 480 / 1e6


def ts(row: dict[str, Any], key: str = "last_billed_at") -> str:
    return str(row[key])


def training_rows(rows: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    return [row for row in rows if row["resource_type"] == "training" and row["resource_id"] == run_id]


@pytest.fixture
def per_record() -> Any:
    with running_simulator(PER_RECORD, manual_clock=True) as sim:
        yield sim


def test_every_landed_record_is_a_row(per_record: SimulatorHandle) -> None:
    wallet = per_record.wallet()
    rows = per_record.wallet_rows()
    assert wallet["total_billings"] == len(rows) == 11
    qwen = training_rows(rows, "run-qwen4b")
    assert [row["id"] for row in qwen] == [f"bill_run-qwen4b_{n}" for n in range(10, 0, -1)]
    for row in qwen:
        assert row["amount_usd"] == pytest.approx(QWEN4B_RECORD_USD)
        assert ts(row) == ts(row, "created_at") == ts(row, "updated_at")
    assert qwen[0]["last_billed_at"].startswith("2027-01-15T08:00:00")  # T0
    assert sum(row["amount_usd"] for row in qwen) == pytest.approx(per_record.usage("run-qwen4b")["total_cost_usd"])
    assert rows[-1]["id"] == "bill-compute-1"  # a day old: at the bottom
    assert wallet["balance_usd"] == pytest.approx(1000 - per_record.usage("run-qwen4b")["total_cost_usd"])


def test_a_new_record_comes_out_on_top(per_record: SimulatorHandle) -> None:
    before = per_record.wallet_rows()
    per_record.advance(60)
    after = per_record.wallet_rows()
    assert [row["id"] for row in after[:1]] == ["bill_run-qwen4b_11"]
    # Everything seen before is still there, in order, one place further down.
    assert [row["id"] for row in after[1:]] == [row["id"] for row in before]
    assert per_record.wallet(limit=1)["total_billings"] == 12


def test_a_correction_is_its_own_negative_row(per_record: SimulatorHandle) -> None:
    per_record.advance(10)
    correction = per_record.correct_run("run-qwen4b", fraction=0.25)
    rows = per_record.wallet_rows()
    assert rows[0]["id"] == "bill_run-qwen4b_corr1"
    assert rows[0]["amount_usd"] == pytest.approx(correction["amount_usd"])
    assert rows[0]["amount_usd"] == pytest.approx(-0.25 * 10 * QWEN4B_RECORD_USD)
    per_record.advance(50)  # record 11 lands the corrected unbilled 10 s and 50 s more
    rows = per_record.wallet_rows()
    assert [row["id"] for row in rows[:2]] == ["bill_run-qwen4b_11", "bill_run-qwen4b_corr1"]
    billed = per_record.usage("run-qwen4b")["total_cost_usd"]
    assert sum(row["amount_usd"] for row in training_rows(rows, "run-qwen4b")) == pytest.approx(billed)
    assert per_record.wallet()["balance_usd"] == pytest.approx(1000 - billed)


def test_record_rows_follow_a_price_change(per_record: SimulatorHandle) -> None:
    per_record.set_pricing("run-qwen4b", training_per_mtok=3.0)
    per_record.advance(60)
    newest = per_record.wallet(limit=1)["recent_billings"][0]
    assert newest["id"] == "bill_run-qwen4b_11"
    assert newest["amount_usd"] == pytest.approx(60 * (1000 * 3.0 + 600 * 0.10 + 400 * 0.30) / 1e6)


def test_a_thousand_row_wallet_pages_exactly(per_record: SimulatorHandle) -> None:
    rates = {"training": 100, "inference_input": 50, "inference_output": 25}
    runs = [
        {
            "id": f"bulk-{n:02d}",
            "base_model": "Qwen/Qwen3.5-2B",
            "rates": rates,
            "queue_seconds": 0,
            "started_ago": 2880,
        }
        for n in range(25)
    ]
    per_record.add_runs(runs)
    rows = per_record.wallet_rows()
    total = per_record.wallet()["total_billings"]
    assert total == len(rows) == 25 * 48 + 10 + 1
    # Worked out from the runs' start times alone: record k of a run lands k minutes after it started.
    expected = [(T0 - 2880 + 60 * k, f"bill_bulk-{n:02d}_{k}") for n in range(25) for k in range(1, 49)]
    expected += [(T0 - 600 + 60 * k, f"bill_run-qwen4b_{k}") for k in range(1, 11)]
    ids = [row_id for _, row_id in sorted(expected, reverse=True)] + ["bill-compute-1"]
    assert [row["id"] for row in rows] == ids
    # Any page is the matching slice of the whole, whatever the limit and offset.
    for limit, offset in [(37, 0), (37, 37), (100, 600), (5, total - 3), (1, 1150), (100, total)]:
        page = per_record.wallet(limit=limit, offset=offset)["recent_billings"]
        assert [row["id"] for row in page] == ids[offset : offset + limit]
    for run in ("bulk-00", "bulk-24"):
        mine = training_rows(rows, run)
        assert len(mine) == 48
        assert sum(row["amount_usd"] for row in mine) == pytest.approx(per_record.usage(run)["total_cost_usd"])


def test_per_run_stays_the_default(manual_simulator: SimulatorHandle) -> None:
    rows = manual_simulator.wallet_rows()
    assert [row["id"] for row in rows] == ["bill_run-qwen4b", "bill-compute-1"]
