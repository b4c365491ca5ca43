"""Run ids in URL paths: every id the client sends arrives at the server as exactly one path segment.

Checked against the simulator over a loopback socket, on the RAW path the server received (the
request log's `raw_path`), for both methods the client uses on a run (GET usage, DELETE run). The
expected encodings are written out by hand, not computed with the function under test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from monitor.api.client import PrimeClient
from monitor.api.errors import ClientError, UnaddressableRunError
from tests.support.simulator import TEST_SCENARIO, SimulatorHandle, running_simulator

# id -> its path segment on the wire. '.' is encoded too, so no client, proxy or server that
# normalises paths can read a dot segment; '%' is encoded, so an id that looks encoded stays itself.
HOSTILE_IDS = {
    "x.": "x%2E",
    ".x": "%2Ex",
    "x..y": "x%2E%2Ey",
    "...x": "%2E%2E%2Ex",
    "%2e%2e": "%252e%252e",
    "%2E": "%252E",
    "%": "%25",
    "a%2Fb": "a%252Fb",
    "a?b": "a%3Fb",
    "a#b": "a%23b",
    "ü": "%C3%BC",
    "a b": "a%20b",
    "~": "~",
    "run-qwen4b_v2": "run-qwen4b_v2",
}
REFUSED_IDS = [".", "..", "...", "a/b", "a\\b", "", " x", "a\nb", "x" * 300]


def _run(run_id: str, n: int) -> dict[str, object]:
    return {
        "id": run_id,
        "name": f"hostile-{n}",
        "base_model": "Qwen/Qwen3.5-4B",
        "rates": {"training": 100, "inference_input": 60, "inference_output": 40},
        "queue_seconds": 0,
        "started_ago": 120,
    }


@pytest.fixture(scope="module")
def hostile_sim() -> Iterator[SimulatorHandle]:
    scenario = {**TEST_SCENARIO, "runs": [_run(run_id, n) for n, run_id in enumerate(HOSTILE_IDS)]}
    with running_simulator(scenario) as sim:
        yield sim


def _client(sim: SimulatorHandle) -> PrimeClient:
    return PrimeClient(base_url=sim.base_url, api_key=SecretStr(sim.api_key))


@pytest.mark.parametrize("run_id", list(HOSTILE_IDS))
async def test_each_id_reaches_its_own_run_by_get_and_delete(hostile_sim: SimulatorHandle, run_id: str) -> None:
    hostile_sim.reset_requests()
    async with _client(hostile_sim) as client:
        usage = await client.get_run_usage(run_id)
        deleted = await client.delete_run(run_id)
    # The server routed both to this run, not to another path.
    assert usage.run_id == run_id
    assert deleted.run_id == run_id and deleted.deleted
    assert hostile_sim.run_ledger(HOSTILE_IDS[run_id])["delete_count"] >= 1
    seen = [(entry["method"], entry["raw_path"]) for entry in hostile_sim.requests()["recent"]]
    segment = HOSTILE_IDS[run_id]
    assert seen == [
        ("GET", f"/api/v1/billing/runs/{segment}/usage"),
        ("DELETE", f"/api/v1/training/runs/{segment}"),
    ]


@pytest.mark.parametrize("run_id", REFUSED_IDS, ids=repr)
async def test_ids_that_could_address_another_path_are_refused_and_never_sent(
    simulator: SimulatorHandle, run_id: str
) -> None:
    simulator.reset_requests()
    async with _client(simulator) as client:
        for call in (client.get_run_usage, client.delete_run):
            with pytest.raises(UnaddressableRunError) as caught:
                await call(run_id)
            error = caught.value
            assert isinstance(error, ClientError)
            assert error.kind == "unaddressable"
            assert error.run_id == run_id
            assert error.problem and error.problem in str(error)
            assert "nothing was sent" in str(error)
    assert simulator.requests()["total"] == 0
