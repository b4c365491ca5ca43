"""The simulator's admin API, request accounting, secrets hygiene and entry points."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest
import structlog

from monitor.sim.server import SimulatorServer, enable_manual_clock, serve
from tests.support.simulator import TEST_SCENARIO, SimulatorHandle, running_simulator


def test_admin_needs_its_own_token(simulator: SimulatorHandle) -> None:
    url = f"{simulator.base_url}/_sim/ledger"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"X-Sim-Admin-Token": "wrong"}).status_code == 401
    # The public API key is not an admin token.
    assert httpx.get(url, headers={"X-Sim-Admin-Token": simulator.api_key, **simulator.auth_headers}).status_code == 401
    assert httpx.get(url, headers={"X-Sim-Admin-Token": simulator.admin_token}).status_code == 200


def test_advancing_a_real_clock_is_refused(simulator: SimulatorHandle) -> None:
    response = httpx.post(
        f"{simulator.base_url}/_sim/clock/advance",
        headers={"X-Sim-Admin-Token": simulator.admin_token},
        json={"seconds": 10},
    )
    assert response.status_code == 409


def test_added_runs_burn_like_scenario_runs(manual_simulator: SimulatorHandle) -> None:
    rates = {"training": 500, "inference_input": 0, "inference_output": 0}
    run_id = manual_simulator.add_run(
        name="added", base_model="Qwen/Qwen3.5-9B", rates=rates, queue_seconds=0, started_ago=120
    )
    entry = manual_simulator.run_ledger(run_id)
    assert entry["source"] == "admin"
    assert entry["status"] == "RUNNING"
    assert entry["billed"]["training_tokens"] == 500 * 120
    assert entry["billed"]["training_cost_usd"] == pytest.approx(500 * 120 * 0.60 / 1e6)
    assert run_id in manual_simulator.ledger()["wallets"]["wallet-personal"]["run_ids"]


@pytest.mark.parametrize(
    ("fields", "status", "param"),
    [
        ({"base_model": "no-such-model"}, 422, "base_model"),
        ({"team_id": "team-nope"}, 422, "team_id"),
        ({"rates": {"training": -1, "inference_input": 0, "inference_output": 0}}, 422, "rates.training"),
        ({"colour": "red"}, 422, "colour"),
        ({"id": "run-qwen4b"}, 409, None),
    ],
)
def test_bad_added_runs_are_refused(
    simulator: SimulatorHandle, fields: dict[str, object], status: int, param: str | None
) -> None:
    response = httpx.post(
        f"{simulator.base_url}/_sim/runs", headers={"X-Sim-Admin-Token": simulator.admin_token}, json=fields
    )
    assert response.status_code == status
    if param is not None:
        assert param in [error["param"] for error in response.json()["errors"]]


def test_bulk_add_registers_a_thousand_runs_in_one_request(manual_simulator: SimulatorHandle) -> None:
    rates = {"training": 10, "inference_input": 5, "inference_output": 5}
    runs = [{"name": f"bulk-{n}", "rates": rates, "queue_seconds": 0} for n in range(999)]
    runs.append({"id": "bulk-named", "config": {"model": {"name": "Qwen/Qwen3.5-9B"}}, "team_id": "team-a"})
    ids = manual_simulator.add_runs(runs)
    assert len(ids) == len(set(ids)) == 1000
    assert ids[-1] == "bulk-named"
    assert all(run_id.startswith("rft_") for run_id in ids[:-1])
    manual_simulator.advance(60)
    # Every added run burns and bills: a row each on the personal wallet (plus run-qwen4b and the static row).
    assert manual_simulator.wallet(limit=1)["total_billings"] == 999 + 2
    assert manual_simulator.usage(ids[0])["training"]["tokens"] == 600
    named = manual_simulator.run_ledger("bulk-named")
    assert (named["base_model"], named["wallet_id"], named["status"]) == ("Qwen/Qwen3.5-9B", "wallet-team-a", "RUNNING")


@pytest.mark.parametrize(
    ("runs", "status", "where"),
    [
        ([{"id": "a"}, {"id": "b"}, {"id": "c", "base_model": "no-such-model"}], 422, "runs.2.base_model"),
        ([{"id": "a", "rates": {"training": -1, "inference_input": 0, "inference_output": 0}}], 422, "runs.0.rates"),
        ([{"id": "a"}, {"id": "b", "team_id": "team-nope"}], 422, "runs.1.team_id"),
        ([{"id": "a"}, {"id": "a"}], 409, "runs.1"),
        ([{"id": "b"}, {"id": "run-qwen4b"}], 409, "runs.1"),
        ([], 422, "runs"),
    ],
)
def test_a_bad_bulk_add_adds_nothing_and_names_the_run(
    simulator: SimulatorHandle, runs: list[dict[str, object]], status: int, where: str
) -> None:
    response = httpx.post(
        f"{simulator.base_url}/_sim/runs/bulk",
        headers={"X-Sim-Admin-Token": simulator.admin_token},
        json={"runs": runs},
    )
    assert response.status_code == status
    if status == 422:
        assert any(error["param"].startswith(where) for error in response.json()["errors"]), response.text
    else:
        assert where in response.json()["detail"]
    assert set(simulator.ledger()["runs"]) == {"run-qwen4b", "run-team-9b", "run-queued"}


def test_requests_are_counted_per_endpoint_and_status(simulator: SimulatorHandle) -> None:
    with httpx.Client(base_url=simulator.base_url, headers=simulator.auth_headers) as client:
        client.get("/api/v1/billing/runs/run-qwen4b/usage")
        client.get("/api/v1/billing/runs/nope/usage")
        client.get("/api/v1/billing/wallet", params={"teamId": "team-a"})
        client.delete("/api/v1/rft/runs/run-queued")
        client.delete("/api/v1/training/runs/run-queued")
        client.get("/api/v1/unknown")
    seen = simulator.requests()
    assert seen["counts"] == {
        "usage": {"200": 1, "404": 1},
        "wallet": {"200": 1},
        "delete": {"200": 2},
        "other": {"404": 1},
    }
    assert seen["total"] == 6
    last = seen["recent"][-1]
    assert (last["method"], last["path"], last["status"]) == ("GET", "/api/v1/unknown", 404)
    assert isinstance(last["at"], float)
    # Paths only: no query strings (and never headers) in the log.
    assert all("?" not in entry["path"] for entry in seen["recent"])
    simulator.reset_requests()
    assert simulator.requests() == {"total": 0, "counts": {}, "recent": []}


def test_the_request_log_is_bounded() -> None:
    with running_simulator({**TEST_SCENARIO, "request_log_size": 3}) as sim:
        with httpx.Client(base_url=sim.base_url, headers=sim.auth_headers) as client:
            for _ in range(5):
                client.get("/api/v1/billing/wallet")
        seen = sim.requests()
        assert seen["total"] == 5
        assert len(seen["recent"]) == 3


def test_secrets_never_reach_the_ledger_log_or_request_log(simulator: SimulatorHandle) -> None:
    body = {"config": {}, "wandbApiKey": "wandb-SECRET-1", "hfToken": "hf-SECRET-2"}
    with structlog.testing.capture_logs() as events:
        response = httpx.post(f"{simulator.base_url}/api/v1/training/runs", headers=simulator.auth_headers, json=body)
        assert response.status_code == 201
        token = response.json()["tokenValue"]
        assert len(token) >= 32
        run_id = response.json()["runId"]
        bad = httpx.post(
            f"{simulator.base_url}/api/v1/training/runs",
            headers=simulator.auth_headers,
            json={"config": {}, "wandbApiKey": 12345678},
        )
        assert bad.status_code == 422
    entry = simulator.run_ledger(run_id)
    assert entry["token_fingerprint"].startswith("sha256:")
    assert sorted(entry["secrets_received"]) == ["hfToken", "wandbApiKey"]
    everything = json.dumps([simulator.ledger(), simulator.requests(), events], default=str) + bad.text
    for secret in (token, "wandb-SECRET-1", "hf-SECRET-2", "12345678", simulator.api_key):
        assert secret not in everything
    assert any(event["event"] == "sim_run_created" for event in events)
    assert simulator.api_key not in repr(simulator.server) + repr(simulator.server.scenario)


def test_each_create_gets_a_fresh_token(simulator: SimulatorHandle) -> None:
    with httpx.Client(base_url=simulator.base_url, headers=simulator.auth_headers) as client:
        tokens = {client.post("/api/v1/training/runs", json={"config": {}}).json()["tokenValue"] for _ in range(3)}
    assert len(tokens) == 3


async def test_enable_manual_clock_freezes_time() -> None:
    server = SimulatorServer(TEST_SCENARIO)
    clock = enable_manual_clock(server)
    frozen = server.engine.now()
    await asyncio.sleep(0.01)
    assert server.engine.now() == frozen
    clock.advance(60)
    assert server.engine.now() == frozen + 60


async def test_serve_prints_where_it_listens(capsys: pytest.CaptureFixture[str]) -> None:
    task = asyncio.create_task(serve(host="127.0.0.1", port=0, scenario_path=None))
    url = None
    for _ in range(200):  # bounded wait for the start-up line
        match = re.search(r"^simulator listening on (http://127\.0\.0\.1:\d+)$", capsys.readouterr().out, re.M)
        if match:
            url = match.group(1)
            break
        await asyncio.sleep(0.02)
    try:
        assert url is not None
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.get("/api/v1/billing/wallet", headers={"Authorization": "Bearer sim-key"})
            assert response.status_code == 200
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
