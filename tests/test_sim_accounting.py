"""The simulator's books, read over HTTP on a manual clock: meters, records, wallet, deletes, statuses."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from monitor.api.models import RunUsageResponse, WalletResponse
from tests.support.simulator import SimulatorHandle, running_simulator

T0 = 1_800_000_000.0  # the manual clock's start, a multiple of the 60 s meter interval
QWEN4B = {"train": 0.30, "input": 0.10, "output": 0.30}


def get_usage(sim: SimulatorHandle, run_id: str) -> RunUsageResponse:
    response = httpx.get(f"{sim.base_url}/api/v1/billing/runs/{run_id}/usage", headers=sim.auth_headers)
    assert response.status_code == 200, response.text
    return RunUsageResponse.model_validate(response.json())


def get_wallet(sim: SimulatorHandle, **params: Any) -> WalletResponse:
    response = httpx.get(f"{sim.base_url}/api/v1/billing/wallet", headers=sim.auth_headers, params=params)
    assert response.status_code == 200, response.text
    return WalletResponse.model_validate(response.json())


def delete(sim: SimulatorHandle, run_id: str, *, path: str = "/api/v1/training/runs") -> httpx.Response:
    return httpx.delete(f"{sim.base_url}{path}/{run_id}", headers=sim.auth_headers)


def test_cost_per_meter_is_tokens_times_price(manual_simulator: SimulatorHandle) -> None:
    # run-qwen4b has run 600 s at 1000/600/400 tokens per second on Qwen3.5-4B prices.
    usage = get_usage(manual_simulator, "run-qwen4b")
    assert usage.status == "RUNNING"
    assert usage.base_model == "Qwen/Qwen3.5-4B"
    assert usage.training.tokens == 600_000
    assert usage.inference.input_tokens == 360_000
    assert usage.inference.output_tokens == 240_000
    assert usage.inference.tokens == 600_000
    assert usage.training.cost_usd == pytest.approx(600_000 * QWEN4B["train"] / 1e6)
    input_cost = 360_000 * QWEN4B["input"] / 1e6
    output_cost = 240_000 * QWEN4B["output"] / 1e6
    assert usage.inference.cost_usd == pytest.approx(input_cost + output_cost)
    assert usage.total_tokens == usage.training.tokens + usage.inference.tokens
    assert usage.total_cost_usd == pytest.approx(usage.training.cost_usd + usage.inference.cost_usd)
    assert usage.pricing.training_per_mtok == QWEN4B["train"]
    assert usage.pricing.inference_input_per_mtok == QWEN4B["input"]
    assert usage.pricing.inference_output_per_mtok == QWEN4B["output"]
    assert usage.record_count == 10


def test_usage_moves_only_when_a_record_lands(manual_simulator: SimulatorHandle) -> None:
    before = get_usage(manual_simulator, "run-qwen4b")
    manual_simulator.advance(59)
    between = get_usage(manual_simulator, "run-qwen4b")
    assert between.total_tokens == before.total_tokens
    assert between.record_count == before.record_count
    # ...while the true meter has kept running.
    assert manual_simulator.run_ledger("run-qwen4b")["accrued"]["training_tokens"] == 659_000
    manual_simulator.advance(1)
    landed = get_usage(manual_simulator, "run-qwen4b")
    assert landed.record_count == before.record_count + 1
    assert landed.training.tokens == before.training.tokens + 60 * 1000
    assert landed.inference.input_tokens == before.inference.input_tokens + 60 * 600


def test_wallet_balance_is_start_minus_billed(manual_simulator: SimulatorHandle) -> None:
    manual_simulator.advance(150)
    wallet = get_wallet(manual_simulator)
    usage = get_usage(manual_simulator, "run-qwen4b")
    queued = get_usage(manual_simulator, "run-queued")
    assert wallet.wallet_id == "wallet-personal"
    assert wallet.balance_usd == pytest.approx(1000 - usage.total_cost_usd - queued.total_cost_usd)
    training_rows = {row.resource_id: row for row in wallet.recent_billings if row.resource_type == "training"}
    assert training_rows["run-qwen4b"].amount_usd == pytest.approx(usage.total_cost_usd)
    assert training_rows["run-qwen4b"].last_billed_at is not None
    assert training_rows["run-qwen4b"].last_billed_at.timestamp() == T0 + 120
    ledger = manual_simulator.ledger()["wallets"]["wallet-personal"]
    assert ledger["balance_usd"] == pytest.approx(wallet.balance_usd)
    # The ledger also knows what has accrued but not landed yet: 30 s of burn.
    assert ledger["accrued_usd"] > ledger["billed_usd"]


def test_delete_stops_accrual_and_lands_the_rest_at_the_next_boundary(manual_simulator: SimulatorHandle) -> None:
    manual_simulator.advance(90)  # mid-interval: 30 s accrued past the last record
    response = delete(manual_simulator, "run-qwen4b")
    assert response.status_code == 200
    assert response.json() == {"runId": "run-qwen4b", "deleted": True}
    entry = manual_simulator.run_ledger("run-qwen4b")
    assert entry["first_delete_at"] == T0 + 90
    assert entry["accrued"]["training_tokens"] == 690_000
    assert entry["billed"]["training_tokens"] == 660_000
    assert get_usage(manual_simulator, "run-qwen4b").status == "STOPPED"

    manual_simulator.advance(30)  # the next boundary: the last 30 s land
    usage = get_usage(manual_simulator, "run-qwen4b")
    assert usage.training.tokens == 690_000
    manual_simulator.advance(3600)
    later = get_usage(manual_simulator, "run-qwen4b")
    assert later.training.tokens == 690_000
    assert later.record_count == usage.record_count
    assert later.status == "STOPPED"
    assert manual_simulator.run_ledger("run-qwen4b")["accrued"]["training_tokens"] == 690_000


def test_delete_is_idempotent_on_both_paths(manual_simulator: SimulatorHandle) -> None:
    first = delete(manual_simulator, "run-team-9b")
    manual_simulator.advance(10)
    second = delete(manual_simulator, "run-team-9b", path="/api/v1/rft/runs")
    assert first.status_code == second.status_code == 200
    assert second.json() == {"runId": "run-team-9b", "deleted": True}
    entry = manual_simulator.run_ledger("run-team-9b")
    assert entry["delete_count"] == 2
    assert entry["first_delete_at"] == T0
    assert [d["path"] for d in entry["deletes"]] == [
        "/api/v1/training/runs/run-team-9b",
        "/api/v1/rft/runs/run-team-9b",
    ]


def test_status_moves_queued_running_completed(manual_simulator: SimulatorHandle) -> None:
    # run-queued: 120 s in the queue, then 10 steps of 30 s.
    assert get_usage(manual_simulator, "run-queued").status == "QUEUED"
    manual_simulator.advance(120)
    assert get_usage(manual_simulator, "run-queued").status == "RUNNING"
    manual_simulator.advance(299)
    assert get_usage(manual_simulator, "run-queued").status == "RUNNING"
    manual_simulator.advance(1)
    done = get_usage(manual_simulator, "run-queued")
    assert done.status == "COMPLETED"
    assert done.training.tokens == 100 * 300
    assert done.inference.output_tokens == 40 * 300
    assert manual_simulator.run_ledger("run-queued")["steps_done"] == 10
    manual_simulator.advance(600)
    assert get_usage(manual_simulator, "run-queued").total_tokens == done.total_tokens


def test_deleting_a_completed_run_keeps_it_completed(manual_simulator: SimulatorHandle) -> None:
    manual_simulator.advance(120 + 300 + 60)
    done = get_usage(manual_simulator, "run-queued")
    assert done.status == "COMPLETED"
    assert delete(manual_simulator, "run-queued").status_code == 200
    after = get_usage(manual_simulator, "run-queued")
    assert (after.status, after.total_tokens) == ("COMPLETED", done.total_tokens)
    assert manual_simulator.run_ledger("run-queued")["delete_count"] == 1


def test_a_run_deleted_while_queued_never_bills(manual_simulator: SimulatorHandle) -> None:
    assert delete(manual_simulator, "run-queued").status_code == 200
    manual_simulator.advance(1000)
    usage = get_usage(manual_simulator, "run-queued")
    assert (usage.status, usage.total_tokens, usage.record_count) == ("STOPPED", 0, 0)
    assert "run-queued" not in {row.resource_id for row in get_wallet(manual_simulator).recent_billings}
    assert manual_simulator.run_ledger("run-queued")["started_at"] is None


def test_a_run_can_fail() -> None:
    rates = {"training": 10, "inference_input": 0, "inference_output": 0}
    scenario = {"runs": [{"id": "r", "rates": rates, "queue_seconds": 0, "fail_after": 90}]}
    with running_simulator(scenario, manual_clock=True) as sim:
        sim.advance(120)
        usage = get_usage(sim, "r")
        assert usage.status == "FAILED"
        assert usage.training.tokens == 900
        assert sim.run_ledger("r")["end_reason"] == "failed"


def test_rates_derive_from_a_posted_prime_rl_config(manual_simulator: SimulatorHandle) -> None:
    body = {
        "name": "exp-derived",
        "config": {
            "max_steps": 4,
            "seq_len": 2048,
            "model": {"name": "qwen3.5-4b"},
            "orchestrator": {"batch_size": 8, "sampling": {"max_tokens": 512}},
        },
    }
    response = httpx.post(
        f"{manual_simulator.base_url}/api/v1/training/runs", headers=manual_simulator.auth_headers, json=body
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == {"runId", "jobId", "tokenValue"}
    run_id = created["runId"]
    entry = manual_simulator.run_ledger(run_id)
    assert entry["status"] == "QUEUED"
    assert entry["rates_per_second"] == {
        "training": pytest.approx(8 * 2048 / 30),
        "inference_input": pytest.approx(8 * (2048 - 512) / 30),
        "inference_output": pytest.approx(8 * 512 / 30),
    }
    assert entry["pricing"]["training_per_mtok"] == QWEN4B["train"]
    manual_simulator.advance(30 + 4 * 30 + 60)  # queue, four steps, then a record boundary
    usage = get_usage(manual_simulator, run_id)
    assert usage.status == "COMPLETED"
    assert usage.run_name == "exp-derived"
    assert usage.training.tokens == 4 * 8 * 2048
    assert usage.inference.output_tokens == 4 * 8 * 512
    assert usage.inference.input_tokens == 4 * 8 * 1536


def test_wallet_pages_newest_first_and_selects_teams(manual_simulator: SimulatorHandle) -> None:
    manual_simulator.advance(60)
    page_one = get_wallet(manual_simulator, limit=1, offset=0)
    page_two = get_wallet(manual_simulator, limit=1, offset=1)
    beyond = get_wallet(manual_simulator, limit=5, offset=5)
    assert page_one.total_billings == page_two.total_billings == 2
    assert [row.resource_id for row in page_one.recent_billings] == ["run-qwen4b"]
    assert [row.id for row in page_two.recent_billings] == ["bill-compute-1"]
    assert beyond.recent_billings == []
    team = get_wallet(manual_simulator, teamId="team-a")
    assert (team.wallet_id, team.team_id) == ("wallet-team-a", "team-a")
    assert [row.resource_id for row in team.recent_billings] == ["run-team-9b"]
    assert team.balance_usd == pytest.approx(5000 - get_usage(manual_simulator, "run-team-9b").total_cost_usd)
    unknown = httpx.get(
        f"{manual_simulator.base_url}/api/v1/billing/wallet",
        headers=manual_simulator.auth_headers,
        params={"teamId": "team-nope"},
    )
    assert unknown.status_code == 401


def test_auth_failures_answer_401(simulator: SimulatorHandle) -> None:
    url = f"{simulator.base_url}/api/v1/billing/runs/run-qwen4b/usage"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {simulator.api_key}"}):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 401
        assert "detail" in response.json()
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_unknown_runs_answer_404(simulator: SimulatorHandle) -> None:
    base, headers = simulator.base_url, simulator.auth_headers
    for response in (
        httpx.get(f"{base}/api/v1/billing/runs/nope/usage", headers=headers),
        httpx.delete(f"{base}/api/v1/training/runs/nope", headers=headers),
        httpx.delete(f"{base}/api/v1/rft/runs/nope", headers=headers),
    ):
        assert response.status_code == 404
        assert response.json() == {"detail": "Run not found"}


@pytest.mark.parametrize(
    ("params", "bad"),
    [
        ({"limit": 0}, ["limit"]),
        ({"limit": 101}, ["limit"]),
        ({"limit": "ten"}, ["limit"]),
        ({"limit": 1.5}, ["limit"]),
        ({"offset": -1}, ["offset"]),
        ({"limit": 0, "offset": "x"}, ["limit", "offset"]),
    ],
)
def test_bad_wallet_params_answer_422(simulator: SimulatorHandle, params: dict[str, Any], bad: list[str]) -> None:
    response = httpx.get(f"{simulator.base_url}/api/v1/billing/wallet", headers=simulator.auth_headers, params=params)
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [e["param"] for e in errors] == bad
    assert all(isinstance(e["details"], str) and e["details"] for e in errors)


@pytest.mark.parametrize(
    ("content", "param"),
    [
        (b"{not json", "body"),
        (b"", "body"),
        (b"[1, 2]", "body"),
        (b'{"name": "x"}', "config"),
        (b'{"config": "not an object"}', "config"),
        (b'{"config": {}, "teamId": 7}', "teamId"),
        (b'{"config": {"max_steps": -3}}', "config.max_steps"),
        (b'{"config": {"model": {"name": "no-such-model"}}}', "config.model.name"),
        (b'{"config": {"seq_len": 100, "max_completion_tokens": 200}}', "config.max_completion_tokens"),
    ],
)
def test_bad_create_bodies_answer_422(simulator: SimulatorHandle, content: bytes, param: str) -> None:
    headers = {**simulator.auth_headers, "Content-Type": "application/json"}
    response = httpx.post(f"{simulator.base_url}/api/v1/training/runs", headers=headers, content=content)
    assert response.status_code == 422
    assert param in [e["param"] for e in response.json()["errors"]]


def test_create_for_an_unknown_team_answers_401(simulator: SimulatorHandle) -> None:
    response = httpx.post(
        f"{simulator.base_url}/api/v1/training/runs",
        headers=simulator.auth_headers,
        json={"config": {}, "teamId": "team-nope"},
    )
    assert response.status_code == 401


def test_a_team_run_bills_the_team_wallet(manual_simulator: SimulatorHandle) -> None:
    response = httpx.post(
        f"{manual_simulator.base_url}/api/v1/training/runs",
        headers=manual_simulator.auth_headers,
        json={"config": {"model": {"name": "Qwen/Qwen3.5-0.8B"}}, "teamId": "team-a"},
    )
    run_id = response.json()["runId"]
    manual_simulator.advance(180)
    team = get_wallet(manual_simulator, teamId="team-a")
    assert run_id in {row.resource_id for row in team.recent_billings}
    assert run_id not in {row.resource_id for row in get_wallet(manual_simulator).recent_billings}
