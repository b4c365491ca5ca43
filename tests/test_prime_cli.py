"""The official `prime` CLI (0.18.0) as a second, independent client of the simulator.

Runs `.venv/bin/prime` as a subprocess with an isolated HOME (it writes ~/.prime/config.json on
every start), no update check (PRIME_DISABLE_VERSION_CHECK=1, else it calls PyPI), and only the
env it documents: PRIME_API_BASE_URL, PRIME_API_KEY, PRIME_TEAM_ID. The simulator runs on a
manual clock so the figures cannot move between the CLI's read and the ledger's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.simulator import SimulatorHandle, running_simulator

PRIME = Path(sys.executable).parent / "prime"

pytestmark = pytest.mark.skipif(not PRIME.exists(), reason="the official prime CLI is not installed in the venv")


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorHandle]:
    with running_simulator(manual_clock=True) as handle:
        handle.advance(90)
        yield handle


def run_prime(
    sim: SimulatorHandle, home: Path, *args: str, base_url: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PRIME_DISABLE_VERSION_CHECK": "1",
        "NO_COLOR": "1",
        "COLUMNS": "200",
        "PRIME_API_BASE_URL": base_url or sim.base_url,
        "PRIME_API_KEY": sim.api_key,
        **env,
    }
    return subprocess.run(
        [str(PRIME), *args], env=environ, capture_output=True, text=True, timeout=60, check=False, cwd=home
    )


def json_out(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return json.loads(result.stdout)


def test_train_usage_json_agrees_with_the_ledger(sim: SimulatorHandle, tmp_path: Path) -> None:
    usage = json_out(run_prime(sim, tmp_path, "train", "usage", "run-qwen4b", "-o", "json"))
    billed = sim.run_ledger("run-qwen4b")["billed"]
    assert usage["run_id"] == "run-qwen4b"
    assert usage["status"] == "RUNNING"
    assert usage["base_model"] == "Qwen/Qwen3.5-4B"
    assert usage["training"]["tokens"] == billed["training_tokens"]
    assert usage["inference"]["input_tokens"] == billed["inference_input_tokens"]
    assert usage["inference"]["output_tokens"] == billed["inference_output_tokens"]
    assert usage["total_tokens"] == billed["total_tokens"]
    assert usage["training"]["cost_usd"] == pytest.approx(billed["training_cost_usd"])
    assert usage["inference"]["cost_usd"] == pytest.approx(billed["inference_cost_usd"])
    assert usage["total_cost_usd"] == pytest.approx(billed["total_cost_usd"])
    assert usage["record_count"] == billed["record_count"]
    assert usage["pricing"] == {
        "training_per_mtok": 0.30,
        "inference_input_per_mtok": 0.10,
        "inference_output_per_mtok": 0.30,
    }


def test_wallet_json_agrees_with_the_ledger(sim: SimulatorHandle, tmp_path: Path) -> None:
    wallet = json_out(run_prime(sim, tmp_path, "wallet", "-o", "json"))
    ledger = sim.ledger()
    assert wallet["wallet_id"] == "wallet-personal"
    assert wallet["balance_usd"] == pytest.approx(ledger["wallets"]["wallet-personal"]["balance_usd"])
    rows = {row["resource_id"]: row for row in wallet["recent_billings"] if row["resource_type"] == "training"}
    assert rows["run-qwen4b"]["amount_usd"] == pytest.approx(ledger["runs"]["run-qwen4b"]["billed"]["total_cost_usd"])
    assert wallet["total_billings"] == len(wallet["recent_billings"])


def test_wallet_follows_prime_team_id(sim: SimulatorHandle, tmp_path: Path) -> None:
    wallet = json_out(run_prime(sim, tmp_path, "wallet", "-o", "json", PRIME_TEAM_ID="team-a"))
    assert (wallet["wallet_id"], wallet["team_id"]) == ("wallet-team-a", "team-a")
    assert [row["resource_id"] for row in wallet["recent_billings"]] == ["run-team-9b"]


def test_base_url_with_api_v1_suffix_works(sim: SimulatorHandle, tmp_path: Path) -> None:
    usage = json_out(
        run_prime(sim, tmp_path, "train", "usage", "run-qwen4b", "-o", "json", base_url=f"{sim.base_url}/api/v1/")
    )
    assert usage["run_id"] == "run-qwen4b"


def test_train_delete_lands_in_the_ledger(tmp_path: Path) -> None:
    with running_simulator(manual_clock=True) as fresh:
        fresh.advance(30)
        result = run_prime(fresh, tmp_path, "train", "delete", "run-team-9b", "-f")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "deleted successfully" in result.stdout
        entry = fresh.run_ledger("run-team-9b")
        assert entry["delete_count"] == 1
        assert entry["first_delete_at"] == fresh.now()
        assert [d["path"] for d in entry["deletes"]] == ["/api/v1/rft/runs/run-team-9b"]
        fresh.advance(60)
        usage = json_out(run_prime(fresh, tmp_path, "train", "usage", "run-team-9b", "-o", "json"))
        assert usage["status"] == "STOPPED"
        assert usage["total_tokens"] == fresh.run_ledger("run-team-9b")["accrued"]["total_tokens"]


def test_unknown_run_is_an_error(sim: SimulatorHandle, tmp_path: Path) -> None:
    usage = run_prime(sim, tmp_path, "train", "usage", "no-such-run", "-o", "json")
    assert usage.returncode == 1
    assert "Run not found" in usage.stderr
    delete = run_prime(sim, tmp_path, "train", "delete", "no-such-run", "-f")
    assert delete.returncode == 1
    assert "Run not found" in delete.stdout


def test_wrong_key_is_unauthorized(sim: SimulatorHandle, tmp_path: Path) -> None:
    result = run_prime(sim, tmp_path, "wallet", "-o", "json", PRIME_API_KEY="not-the-key")
    assert result.returncode == 1
    assert "unauthorized" in result.stderr.lower()
    assert "not-the-key" not in result.stderr


def test_the_cli_reads_a_dropped_total_as_zero(tmp_path: Path) -> None:
    # A finding about the official CLI, not the simulator: its model defaults total_cost_usd to 0,
    # so schema drift that drops the field shows a run as free instead of failing.
    scenario = {"faults": [{"kind": "drift", "endpoint": "usage", "field": "total_cost_usd"}]}
    with running_simulator(scenario, manual_clock=True) as drifting:
        drifting.add_run(
            id="r1", rates={"training": 1000, "inference_input": 0, "inference_output": 0}, started_ago=600
        )
        usage = json_out(run_prime(drifting, tmp_path, "train", "usage", "r1", "-o", "json"))
        assert drifting.run_ledger("r1")["billed"]["total_cost_usd"] > 0
        assert usage["total_cost_usd"] == 0.0
