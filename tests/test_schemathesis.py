"""schemathesis against the vendored spec and the running simulator.

Generated cases (coverage and fuzzing phases, positive and negative data) run every check that
applies. Run ids are random strings there, so the simulator answers 404 `{"detail": "Run not
found"}`: the spec lists no 404, so only for that answer is the status-code conformance check
left out (the body is still checked to be the not-found answer). Known run ids are then
checked explicitly with every check, so the 200 bodies are validated against the schema too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis.specs.openapi.checks import status_code_conformance

import monitor
from tests.support.simulator import SimulatorHandle, running_simulator

SPEC = Path(monitor.__file__).parent / "api" / "spec" / "prime-training-api.openapi.yml"
RUN_NOT_FOUND = {"detail": "Run not found"}

API_KEY = "sim-key"  # TEST_SCENARIO's key

schema = schemathesis.openapi.from_path(SPEC)
# Auth through schemathesis's config (not per call), so its cases that drop the header really drop it.
schema.config.update(headers={"Authorization": f"Bearer {API_KEY}"})
# Bounded and reproducible; no example database written into the working tree.
schema.config.generation.update(max_examples=40, database="none", deterministic=True)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorHandle]:
    with running_simulator() as handle:
        assert handle.api_key == API_KEY
        yield handle


@schema.parametrize()
def test_generated_cases_conform(case: Any, sim: SimulatorHandle) -> None:
    response = case.call(base_url=sim.base_url)
    excluded = []
    if response.status_code == 404 and "{run_id}" in case.operation.path:
        assert response.json() == RUN_NOT_FOUND
        excluded.append(status_code_conformance)
    case.validate_response(response, excluded_checks=excluded)


def _call(sim: SimulatorHandle, path: str, method: str, **case_fields: Any) -> Any:
    # Cases built by hand do not pick up the config's headers: send the key explicitly.
    case = schema[path][method].Case(**case_fields)
    return case.call_and_validate(base_url=sim.base_url, headers=sim.auth_headers)


@pytest.mark.parametrize("run_id", ["run-qwen4b", "run-team-9b", "run-queued"])
def test_known_run_usage_conforms(sim: SimulatorHandle, run_id: str) -> None:
    response = _call(sim, "/api/v1/billing/runs/{run_id}/usage", "GET", path_parameters={"run_id": run_id})
    assert response.status_code == 200
    assert response.json()["run_id"] == run_id


@pytest.mark.parametrize("query", [{}, {"teamId": "team-a"}, {"limit": 1, "offset": 1}, {"limit": 100}])
def test_wallet_conforms(sim: SimulatorHandle, query: dict[str, Any]) -> None:
    response = _call(sim, "/api/v1/billing/wallet", "GET", query=query)
    assert response.status_code == 200
    assert response.json()["wallet_id"] in ("wallet-personal", "wallet-team-a")


def test_create_then_delete_twice_conforms(sim: SimulatorHandle) -> None:
    body = {
        "name": "st-run",
        "config": {"model": {"name": "Qwen/Qwen3.5-2B"}, "max_steps": 5, "orchestrator": {"batch_size": 4}},
        "wandbApiKey": "wandb-secret",
    }
    created = _call(sim, "/api/v1/training/runs", "POST", body=body, media_type="application/json")
    assert created.status_code == 201
    run_id = created.json()["runId"]
    for _ in range(2):
        deleted = _call(sim, "/api/v1/training/runs/{run_id}", "DELETE", path_parameters={"run_id": run_id})
        assert deleted.json() == {"runId": run_id, "deleted": True}
