"""Each injected fault, seen the way a client sees it: over HTTP, with a plain httpx client."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from pydantic import ValidationError

from monitor.api.models import RunUsageResponse
from monitor.sim.scenario import ScenarioError, load_scenario
from tests.support.simulator import SimulatorHandle, running_simulator


def usage_url(sim: SimulatorHandle, run_id: str = "run-qwen4b") -> str:
    return f"{sim.base_url}/api/v1/billing/runs/{run_id}/usage"


def get_usage(sim: SimulatorHandle, run_id: str = "run-qwen4b", *, timeout: float = 10.0) -> httpx.Response:
    return httpx.get(usage_url(sim, run_id), headers=sim.auth_headers, timeout=timeout)


def test_latency_delays_the_answer(simulator: SimulatorHandle) -> None:
    simulator.add_fault(kind="latency", endpoint="usage", latency=0.3, jitter=0.1, count=1)
    started = time.monotonic()
    response = get_usage(simulator)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed >= 0.3
    assert simulator.requests()["recent"][-1]["fault"] == "latency"
    assert simulator.faults() == []  # count=1: used up


def test_error_applies_count_times_then_expires(simulator: SimulatorHandle) -> None:
    simulator.add_fault(kind="error", endpoint="usage", status=503, count=2)
    statuses = [get_usage(simulator).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert simulator.request_count("usage", 503) == 2
    assert simulator.faults() == []


def test_a_502_comes_back_as_a_proxy_html_page(simulator: SimulatorHandle) -> None:
    simulator.add_fault(kind="error", endpoint="wallet", status=502)
    response = httpx.get(f"{simulator.base_url}/api/v1/billing/wallet", headers=simulator.auth_headers)
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_an_error_before_effect_does_not_delete(simulator: SimulatorHandle) -> None:
    simulator.add_fault(kind="error", endpoint="delete", status=500, count=1)
    response = httpx.delete(f"{simulator.base_url}/api/v1/training/runs/run-qwen4b", headers=simulator.auth_headers)
    assert response.status_code == 500
    assert simulator.run_ledger("run-qwen4b")["delete_count"] == 0


def test_an_error_after_effect_deletes_but_answers_500(simulator: SimulatorHandle) -> None:
    simulator.add_fault(kind="error", endpoint="delete", status=500, after_effect=True, count=1)
    response = httpx.delete(f"{simulator.base_url}/api/v1/rft/runs/run-qwen4b", headers=simulator.auth_headers)
    assert response.status_code == 500
    entry = simulator.run_ledger("run-qwen4b")
    assert entry["delete_count"] == 1
    assert entry["status"] == "STOPPED"


def test_rate_limit_sends_retry_after(simulator: SimulatorHandle) -> None:
    simulator.add_fault(kind="rate_limit", endpoint="any", retry_after=7, count=1)
    response = httpx.get(f"{simulator.base_url}/api/v1/billing/wallet", headers=simulator.auth_headers)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert get_usage(simulator).status_code == 200


def test_hang_outlasts_the_client_timeout_without_blocking_others(simulator: SimulatorHandle) -> None:
    simulator.add_fault(kind="hang", endpoint="usage", run_id="run-qwen4b", hang_seconds=60, count=1)
    with pytest.raises(httpx.ReadTimeout):
        get_usage(simulator, timeout=0.5)
    # The server still answers other requests while one hangs.
    assert get_usage(simulator, "run-team-9b", timeout=5).status_code == 200


def test_malformed_json_is_not_json(simulator: SimulatorHandle) -> None:
    simulator.add_fault(kind="malformed", endpoint="usage")
    response = get_usage(simulator)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_drift_drops_a_required_field(simulator: SimulatorHandle) -> None:
    simulator.add_fault(kind="drift", endpoint="usage")
    body = get_usage(simulator).json()
    assert "total_cost_usd" not in body
    with pytest.raises(ValidationError, match="total_cost_usd"):
        RunUsageResponse.model_validate(body)


def test_drift_can_drop_a_nested_field(simulator: SimulatorHandle) -> None:
    simulator.add_fault(kind="drift", endpoint="wallet", field="recent_billings")
    body = httpx.get(f"{simulator.base_url}/api/v1/billing/wallet", headers=simulator.auth_headers).json()
    assert "recent_billings" not in body
    assert "balance_usd" in body


def test_unauthorized_fault_rejects_a_good_key(simulator: SimulatorHandle) -> None:
    simulator.add_fault(kind="unauthorized", endpoint="usage", count=1)
    assert get_usage(simulator).status_code == 401
    assert get_usage(simulator).status_code == 200


def test_run_filter_only_hits_that_run(simulator: SimulatorHandle) -> None:
    simulator.add_fault(kind="error", endpoint="usage", run_id="run-team-9b", status=503)
    assert get_usage(simulator, "run-qwen4b").status_code == 200
    assert get_usage(simulator, "run-team-9b").status_code == 503


def test_probability_is_drawn_from_the_seeded_rng(simulator: SimulatorHandle) -> None:
    url = usage_url(simulator)
    with httpx.Client(headers=simulator.auth_headers) as client:
        simulator.set_faults([{"kind": "error", "endpoint": "usage", "status": 503, "probability": 0.5}])
        statuses = [client.get(url).status_code for _ in range(40)]
        assert set(statuses) == {200, 503}
        simulator.set_faults([{"kind": "error", "endpoint": "usage", "status": 503, "probability": 0.0}])
        assert {client.get(url).status_code for _ in range(10)} == {200}


def test_same_seed_same_fault_sequence() -> None:
    scenario = {"seed": 42, "faults": [{"kind": "error", "endpoint": "wallet", "status": 503, "probability": 0.5}]}
    sequences = []
    for _ in range(2):
        with running_simulator(scenario) as sim, httpx.Client(headers=sim.auth_headers) as client:
            url = f"{sim.base_url}/api/v1/billing/wallet"
            sequences.append([client.get(url).status_code for _ in range(20)])
    assert sequences[0] == sequences[1]
    assert set(sequences[0]) == {200, 503}


def test_clear_faults_restores_normal_answers(simulator: SimulatorHandle) -> None:
    simulator.set_faults([{"kind": "error", "endpoint": "any", "status": 500}])
    assert get_usage(simulator).status_code == 500
    simulator.clear_faults()
    assert get_usage(simulator).status_code == 200


def test_bad_fault_specs_are_refused(simulator: SimulatorHandle) -> None:
    headers = {"X-Sim-Admin-Token": simulator.admin_token}
    for bad in (
        {"kind": "explode"},
        {"kind": "error", "status": 404},
        {"kind": "hang", "hang_seconds": 99999},
        {"kind": "latency"},
        {"kind": "error", "probability": 2},
    ):
        response = httpx.post(f"{simulator.base_url}/_sim/faults", headers=headers, json=bad)
        assert response.status_code == 422, bad
        assert response.json()["errors"]


def test_stopping_the_server_ends_a_hang() -> None:
    scenario = {"faults": [{"kind": "hang", "endpoint": "wallet", "hang_seconds": 600}]}
    with running_simulator(scenario) as sim, pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{sim.base_url}/api/v1/billing/wallet", headers=sim.auth_headers, timeout=0.3)
    # Stopping woke the hung handler, which answered 504 (instead of being cut off or holding on for 600 s).
    assert sim.server.requests.count("wallet", 504) == 1


# --- override: scripted answers ----------------------------------------------------------------


def test_override_set_merges_onto_the_real_answer(simulator: SimulatorHandle) -> None:
    real = get_usage(simulator).json()
    simulator.override_answer(endpoint="usage", set={"total_cost_usd": 1e300, "training": {"cost_usd": -1}}, count=1)
    scripted = get_usage(simulator).json()
    assert scripted["total_cost_usd"] == 1e300
    assert scripted["training"] == {**real["training"], "cost_usd": -1}
    assert scripted["inference"] == real["inference"]
    assert simulator.requests()["recent"][-1]["fault"] == "override"
    assert get_usage(simulator).json()["total_cost_usd"] == real["total_cost_usd"]  # count=1: used up


def test_override_can_null_a_field_and_patch_a_list_item(simulator: SimulatorHandle) -> None:
    simulator.override_answer(endpoint="usage", set={"pricing": None, "status": "EXPLODED"})
    body = get_usage(simulator).json()
    assert body["pricing"] is None
    assert body["status"] == "EXPLODED"
    simulator.override_answer(endpoint="wallet", set={"recent_billings": {"0": {"amount_usd": float("nan")}}})
    wallet = httpx.get(f"{simulator.base_url}/api/v1/billing/wallet", headers=simulator.auth_headers)
    assert '"amount_usd": NaN' in wallet.text
    rows = wallet.json()["recent_billings"]
    assert rows[0]["amount_usd"] != rows[0]["amount_usd"]  # NaN
    assert rows[0]["id"]  # the rest of the row is the real one


@pytest.mark.parametrize(
    "raw",
    [
        "this is not json",
        "[" * 100_000,
        '{"total_cost_usd": NaN, "total_tokens": Infinity}',
        '{"total_cost_usd": 1e999}',
        '{"total_tokens": ' + "9" * 5000 + "}",
    ],
    ids=["garbage", "deep-nesting", "nan-infinity", "1e999", "huge-int"],
)
def test_override_raw_body_is_sent_verbatim(simulator: SimulatorHandle, raw: str) -> None:
    simulator.override_answer(endpoint="usage", raw_body=raw, run_id="run-qwen4b")
    response = get_usage(simulator)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.text == raw
    assert get_usage(simulator, "run-team-9b").json()["run_id"] == "run-team-9b"  # run_id filter


def test_an_overridden_delete_still_deletes(simulator: SimulatorHandle) -> None:
    simulator.override_answer(endpoint="delete", raw_body="<html>oops</html>")
    response = httpx.delete(f"{simulator.base_url}/api/v1/training/runs/run-qwen4b", headers=simulator.auth_headers)
    assert (response.status_code, response.text) == (200, "<html>oops</html>")
    assert simulator.run_ledger("run-qwen4b")["status"] == "STOPPED"


def test_override_leaves_error_answers_alone(simulator: SimulatorHandle) -> None:
    simulator.override_answer(endpoint="usage", set={"total_cost_usd": 1})
    response = get_usage(simulator, "no-such-run")
    assert (response.status_code, response.json()) == (404, {"detail": "Run not found"})


@pytest.mark.parametrize(
    ("fault", "param"),
    [
        ({"kind": "override"}, "set"),
        ({"kind": "override", "set": {"a": 1}, "raw_body": "x"}, "set"),
        ({"kind": "override", "set": {}}, "set"),
        ({"kind": "override", "set": "not an object"}, "set"),
        ({"kind": "error", "set": {"a": 1}}, "set"),
        ({"kind": "drift", "raw_body": "x"}, "raw_body"),
    ],
)
def test_bad_override_specs_name_the_field(simulator: SimulatorHandle, fault: dict[str, object], param: str) -> None:
    response = httpx.post(
        f"{simulator.base_url}/_sim/faults", headers={"X-Sim-Admin-Token": simulator.admin_token}, json=fault
    )
    assert response.status_code == 422
    assert param in [error["param"] for error in response.json()["errors"]]
    assert simulator.faults() == []


def test_a_scenario_override_fault_loads_and_a_bad_one_names_the_field() -> None:
    scenario = {"faults": [{"kind": "override", "endpoint": "wallet", "set": {"balance_usd": -1e9}}]}
    with running_simulator(scenario) as sim:
        wallet = httpx.get(f"{sim.base_url}/api/v1/billing/wallet", headers=sim.auth_headers).json()
        assert wallet["balance_usd"] == -1e9
    with pytest.raises(ScenarioError, match=r"faults\[0\]\.raw_body: only an override fault takes it"):
        load_scenario({"faults": [{"kind": "error", "raw_body": "x"}]})
