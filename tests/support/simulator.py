"""Fixtures: the Prime API simulator on a real loopback socket, in a background thread.

Use in any test (sync or async; the simulator has its own thread and event loop):

    def test_x(simulator):                      # default test scenario, real clock
        httpx.get(f"{simulator.base_url}/api/v1/billing/wallet", headers=simulator.auth_headers)

    def test_y(manual_simulator):               # same scenario, time moves only by advance()
        manual_simulator.advance(60)            # one meter interval: a usage record lands

    with running_simulator({"runs": [...]}, manual_clock=True) as sim: ...

`running_simulator(scenario=None, *, manual_clock=False)`: scenario is a dict, a YAML path, or
None for TEST_SCENARIO. It yields a `SimulatorHandle`:

- `base_url`, `api_key`, `admin_token`, `auth_headers` ({"Authorization": "Bearer ..."}),
  `env()` (PRIME_API_BASE_URL / PRIME_API_KEY for a subprocess), `engine` (the Engine, for
  white-box assertions), `server` (the SimulatorServer).
- Admin helpers, over HTTP to /_sim/ (real sockets), all synchronous:
  `add_run(**fields) -> run id`, `set_faults(list_of_dicts)`, `add_fault(**fields) -> fault id`,
  `faults() -> list`, `clear_faults()`, `ledger() -> dict`, `run_ledger(run_id) -> dict`,
  `requests() -> dict`, `request_count(endpoint, status=None) -> int`, `reset_requests()`,
  `advance(seconds) -> new simulated now` (manual clock only), `now() -> float`.
- Billing extras (each acts at the simulated now, so on a manual clock: at the time advanced to):
  `add_runs(list_of_run_dicts) -> [run ids]` (one request, all or none: 1,000s of runs at once),
  `correct_run(run_id, *, fraction, records=0) -> correction entry` (a billing correction: the
  run's billed and accrued usage drop by `fraction` on every meter, record_count by `records`),
  `set_pricing(run_id, **prices) -> {"run_id", "at", "pricing", "price_segments"}` (any of
  training_per_mtok, inference_input_per_mtok, inference_output_per_mtok, from now on),
  `override_answer(*, endpoint="any", set=None, raw_body=None, **filters) -> fault id` (a
  scripted 2xx answer: `set` deep-merged onto the real JSON, or `raw_body` sent verbatim;
  filters: run_id, count, probability).
- Public API reads, for asserting what a client sees: `usage(run_id) -> dict`,
  `wallet(team_id=None, *, limit=20, offset=0) -> dict`, `wallet_rows(team_id=None) -> [rows]`
  (every row, paged 100 at a time, newest first).

TEST_SCENARIO (ids are stable; the manual clock starts at 1_800_000_000, a multiple of 60):
- `run-qwen4b` personal wallet, Qwen/Qwen3.5-4B, rates 1000/600/400 tok/s (train/in/out),
  running for 10 minutes already, no step limit.
- `run-team-9b` team `team-a`, Qwen/Qwen3.5-9B, rates 2000/1000/500 tok/s, 30 minutes in.
- `run-queued` personal, Llama-3.2-1B, created now, QUEUED for 120 s, 10 steps of 30 s.
Wallets: personal (`wallet-personal`, $1000, one static compute row) and `team-a`
(`wallet-team-a`, $5000). meter_interval 60 s, queue_seconds 30 s, step_seconds 30 s. No faults.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.sim.engine import Engine
from monitor.sim.server import SimulatorServer

TEST_SCENARIO: dict[str, Any] = {
    "api_keys": ["sim-key"],
    "admin_token": "sim-admin",
    "meter_interval": 60,
    "seed": 1,
    "defaults": {"step_seconds": 30, "queue_seconds": 30},
    "wallets": [
        {
            "wallet_id": "wallet-personal",
            "team_id": None,
            "starting_balance_usd": 1000,
            "billings": [{"id": "bill-compute-1", "resource_type": "compute", "amount_usd": 5.0, "billed_ago": 86400}],
        },
        {"wallet_id": "wallet-team-a", "team_id": "team-a", "starting_balance_usd": 5000},
    ],
    "runs": [
        {
            "id": "run-qwen4b",
            "name": "exp-qwen4b",
            "base_model": "Qwen/Qwen3.5-4B",
            "rates": {"training": 1000, "inference_input": 600, "inference_output": 400},
            "queue_seconds": 0,
            "started_ago": 600,
        },
        {
            "id": "run-team-9b",
            "name": "exp-team-9b",
            "base_model": "Qwen/Qwen3.5-9B",
            "team_id": "team-a",
            "rates": {"training": 2000, "inference_input": 1000, "inference_output": 500},
            "queue_seconds": 0,
            "started_ago": 1800,
        },
        {
            "id": "run-queued",
            "name": "prod-llama1b",
            "base_model": "meta-llama/Llama-3.2-1B",
            "rates": {"training": 100, "inference_input": 60, "inference_output": 40},
            "queue_seconds": 120,
            "max_steps": 10,
        },
    ],
}

ADMIN_TOKEN_HEADER = "X-Sim-Admin-Token"
_SAFETY_TIMEOUT = 15.0


class SimulatorHandle:
    """A running simulator: its address, secrets, engine, and synchronous admin helpers."""

    def __init__(self, server: SimulatorServer) -> None:
        assert server.base_url is not None
        self.server = server
        self.base_url: str = server.base_url
        self.api_key: str = server.api_key
        self.admin_token: str = server.admin_token
        self.engine: Engine = server.engine
        self._admin = httpx.Client(
            base_url=self.base_url, headers={ADMIN_TOKEN_HEADER: self.admin_token}, timeout=_SAFETY_TIMEOUT
        )
        # One client for public reads too: a client per call would build an SSL context each time.
        self._api = httpx.Client(base_url=self.base_url, headers=self.auth_headers, timeout=_SAFETY_TIMEOUT)

    def __repr__(self) -> str:
        return f"SimulatorHandle(base_url={self.base_url!r})"

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def env(self, **extra: str) -> dict[str, str]:
        """The environment the official CLI (and the daemon) read: base URL and key."""
        return {"PRIME_API_BASE_URL": self.base_url, "PRIME_API_KEY": self.api_key, **extra}

    def close(self) -> None:
        self._admin.close()
        self._api.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        # Encoded here, not by httpx, so a scripted answer may carry NaN or Infinity.
        content = None if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        response = self._admin.request(method, path, content=content, headers=headers)
        if response.status_code >= 400:
            raise AssertionError(f"admin {method} {path} -> {response.status_code}: {response.text}")
        return response.json()

    def add_run(self, **fields: Any) -> str:
        return str(self._call("POST", "/_sim/runs", fields)["run_id"])

    def set_faults(self, faults: list[dict[str, Any]]) -> list[str]:
        return list(self._call("PUT", "/_sim/faults", {"faults": faults})["ids"])

    def add_fault(self, **fields: Any) -> str:
        return str(self._call("POST", "/_sim/faults", fields)["id"])

    def faults(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/_sim/faults")["faults"])

    def clear_faults(self) -> None:
        self._call("DELETE", "/_sim/faults")

    def ledger(self) -> dict[str, Any]:
        return dict(self._call("GET", "/_sim/ledger"))

    def run_ledger(self, run_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/_sim/ledger/{run_id}"))

    def requests(self) -> dict[str, Any]:
        return dict(self._call("GET", "/_sim/requests"))

    def request_count(self, endpoint: str, status: int | None = None) -> int:
        counts: dict[str, int] = self.requests()["counts"].get(endpoint, {})
        return sum(n for code, n in counts.items() if status is None or int(code) == status)

    def reset_requests(self) -> None:
        self._call("DELETE", "/_sim/requests")

    def add_runs(self, runs: list[dict[str, Any]]) -> list[str]:
        return [str(run_id) for run_id in self._call("POST", "/_sim/runs/bulk", {"runs": runs})["run_ids"]]

    def correct_run(self, run_id: str, *, fraction: float, records: int = 0) -> dict[str, Any]:
        body = {"fraction": fraction, "records": records}
        return dict(self._call("POST", f"/_sim/runs/{run_id}/correction", body)["correction"])

    def set_pricing(self, run_id: str, **prices: float) -> dict[str, Any]:
        return dict(self._call("POST", f"/_sim/runs/{run_id}/pricing", prices))

    def override_answer(
        self,
        *,
        endpoint: str = "any",
        set: dict[str, Any] | None = None,
        raw_body: str | None = None,
        **filters: Any,
    ) -> str:
        fields = {"kind": "override", "endpoint": endpoint, **filters}
        if set is not None:
            fields["set"] = set
        if raw_body is not None:
            fields["raw_body"] = raw_body
        return self.add_fault(**fields)

    def _public(self, path: str, params: dict[str, Any] | None = None) -> Any:
        response = self._api.get(path, params=params)
        if response.status_code != 200:
            raise AssertionError(f"GET {path} -> {response.status_code}: {response.text}")
        return response.json()

    def usage(self, run_id: str) -> dict[str, Any]:
        return dict(self._public(f"/api/v1/billing/runs/{run_id}/usage"))

    def wallet(self, team_id: str | None = None, *, limit: int = 20, offset: int = 0) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if team_id is not None:
            params["teamId"] = team_id
        return dict(self._public("/api/v1/billing/wallet", params))

    def wallet_rows(self, team_id: str | None = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        while True:
            page = self.wallet(team_id, limit=100, offset=len(rows))
            rows.extend(page["recent_billings"])
            if not page["recent_billings"] or len(rows) >= page["total_billings"]:
                return rows

    def advance(self, seconds: float) -> float:
        return float(self._call("POST", "/_sim/clock/advance", {"seconds": seconds})["now"])

    def now(self) -> float:
        return float(self._call("GET", "/_sim/clock")["now"])


@contextmanager
def running_simulator(
    scenario: dict[str, Any] | str | Path | None = None, *, manual_clock: bool = False
) -> Iterator[SimulatorHandle]:
    """The simulator on a free 127.0.0.1 port, in a thread with its own event loop."""
    # Built here, so a bad scenario raises in the caller's thread.
    server = SimulatorServer(TEST_SCENARIO if scenario is None else scenario, manual_clock=manual_clock)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="prime-simulator", daemon=True)
    thread.start()
    handle: SimulatorHandle | None = None
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=_SAFETY_TIMEOUT)
        handle = SimulatorHandle(server)
        yield handle
    finally:
        if handle is not None:
            handle.close()
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=_SAFETY_TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=_SAFETY_TIMEOUT)
        loop.close()


@pytest.fixture
def simulator() -> Iterator[SimulatorHandle]:
    """The simulator with TEST_SCENARIO on the real clock."""
    with running_simulator() as sim:
        yield sim


@pytest.fixture
def manual_simulator() -> Iterator[SimulatorHandle]:
    """The simulator with TEST_SCENARIO on a manual clock (starts at 1_800_000_000)."""
    with running_simulator(manual_clock=True) as sim:
        yield sim
