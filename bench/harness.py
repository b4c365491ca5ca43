"""What the benchmarks share: the simulator as its own process, its admin API, the load driver, /proc readers.

Imported by client_throughput.py, poll_capacity.py, scale.py, daemon_soak.py and wrk.py (the scripts'
own directory is on sys.path when they run as files).

- `simulator_process(runs=N, workdir=...)` starts `python -m monitor simulate --port P --scenario FILE`
  on a free 127.0.0.1 port with N runs (all RUNNING, usage landed, burning until deleted) and stops it;
  `SimulatorProcess` reads and resets its request counts, adds runs in bulk and sets faults.
- `drive(call, ids, requests=, concurrency=, server_pid=)`: `concurrency` workers make `requests` calls,
  timing each; CPU of this process and of the simulator, from /proc, around the whole.
- `bare_client`, `aiohttp_session` and the `*_usage_call` builders: the clients the benchmarks compare.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import yaml

from monitor.api.client import PrimeClient
from monitor.api.errors import ApiError

API_KEY = "bench-key"
ADMIN_TOKEN = "bench-admin"
ADMIN_HEADER = "X-Sim-Admin-Token"
START_TIMEOUT = 30.0
MODELS = ("Qwen/Qwen3.5-4B", "Qwen/Qwen3.5-9B", "meta-llama/Llama-3.2-1B", "Qwen/Qwen3.5-35B-A3B")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the simulator as a separate process ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_ids(count: int) -> list[str]:
    return [f"bench-run-{index:05d}" for index in range(count)]


def bench_run(run_id: str, index: int) -> dict[str, Any]:
    """One simulated run: RUNNING from the start, 10 minutes of usage already landed, burning until deleted."""
    return {
        "id": run_id,
        "name": f"exp-{run_id}",
        "base_model": MODELS[index % len(MODELS)],
        "rates": {"training": 1000 + index, "inference_input": 600, "inference_output": 300},
        "queue_seconds": 0,
        "started_ago": 600,
    }


def scenario(*, runs: int, meter_interval: float = 60, request_log_size: int = 100) -> dict[str, Any]:
    """`runs` bench runs on the personal wallet (one billing row each); more can be added in bulk later."""
    return {
        "api_keys": [API_KEY],
        "admin_token": ADMIN_TOKEN,
        "meter_interval": meter_interval,
        "seed": 1,
        # Small by default: every GET /_sim/requests returns the whole recent log.
        "request_log_size": request_log_size,
        "wallets": [{"wallet_id": "wallet-bench", "team_id": None, "starting_balance_usd": 1_000_000}],
        "runs": [bench_run(run_id, index) for index, run_id in enumerate(run_ids(runs))],
    }


@dataclass
class SimulatorProcess:
    """A `python -m monitor simulate` child process on a free loopback port."""

    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def requests(self) -> dict[str, Any]:
        """`GET /_sim/requests`: {"total", "counts": {endpoint: {status: n}}, "recent": [{..., "at"}]}."""
        response = httpx.get(f"{self.base_url}/_sim/requests", headers={ADMIN_HEADER: ADMIN_TOKEN}, timeout=30)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def request_counts(self) -> dict[str, dict[str, int]]:
        """Public API requests the simulator answered, by endpoint and status (its admin API)."""
        counts: dict[str, dict[str, int]] = self.requests()["counts"]
        return counts

    def reset_request_counts(self) -> None:
        httpx.delete(f"{self.base_url}/_sim/requests", headers={ADMIN_HEADER: ADMIN_TOKEN}, timeout=10)

    def add_runs(self, runs: list[dict[str, Any]]) -> list[str]:
        """`POST /_sim/runs/bulk`: all or none; the run ids in order."""
        response = httpx.post(
            f"{self.base_url}/_sim/runs/bulk", json={"runs": runs}, headers={ADMIN_HEADER: ADMIN_TOKEN}, timeout=120
        )
        response.raise_for_status()
        added: list[str] = response.json()["run_ids"]
        return added

    def set_faults(self, faults: list[dict[str, Any]]) -> None:
        """`PUT /_sim/faults`: these faults replace any others ([] clears them)."""
        response = httpx.put(
            f"{self.base_url}/_sim/faults", json={"faults": faults}, headers={ADMIN_HEADER: ADMIN_TOKEN}, timeout=10
        )
        response.raise_for_status()


def count_of(counts: dict[str, dict[str, int]], endpoint: str, status: str | None = None) -> int:
    return sum(n for code, n in counts.get(endpoint, {}).items() if status is None or code == status)


@contextlib.contextmanager
def simulator_process(
    *, runs: int, workdir: Path, meter_interval: float = 60, request_log_size: int = 100
) -> Iterator[SimulatorProcess]:
    scenario_path = workdir / "scenario.yml"
    made = scenario(runs=runs, meter_interval=meter_interval, request_log_size=request_log_size)
    scenario_path.write_text(yaml.safe_dump(made), encoding="utf-8")
    port = free_port()
    log_path = workdir / "simulator.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIME_")}
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "simulate", "--port", str(port), "--scenario", str(scenario_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    sim = SimulatorProcess(proc=proc, base_url=f"http://127.0.0.1:{port}", log_path=log_path)
    try:
        _wait_until_up(sim)
        yield sim
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def start_daemon(config: dict[str, Any], *, workdir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """`python -m monitor run` on `config` (written to workdir/config.yml) as its own process, with the
    bench key and none of the caller's PRIME_ or SLACK_ variables; its log goes to workdir/daemon.log."""
    config_path = workdir / "config.yml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRIME_", "SLACK_"))}
    env["PRIME_API_KEY"] = API_KEY
    log_path = workdir / "daemon.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
    return proc, log_path


def _wait_until_up(sim: SimulatorProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if sim.proc.poll() is not None:
            raise RuntimeError(f"the simulator exited ({sim.proc.returncode}):\n{sim.log_path.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{sim.base_url}/_sim/health", headers={ADMIN_HEADER: ADMIN_TOKEN}, timeout=2).is_success:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the simulator did not answer within {START_TIMEOUT:.0f}s")


# --- /proc readers ----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat (fields 14 and 15, after the parenthesised name)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) in KiB, from /proc/PID/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def sniffio_note() -> str:
    """httpcore 1.0.x re-imports sniffio on every lock set-up; when it is absent each failed import walks sys.path."""
    if importlib.util.find_spec("sniffio") is None:
        return "sniffio: NOT installed (httpcore pays a failed import per lock set-up, several per request)"
    return "sniffio: installed"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- the load driver ---------------------------------------------------------------------------------


@dataclass
class LoadResult:
    requests: int
    seconds: float
    cpu_seconds: float  # this process
    server_cpu_seconds: float
    errors: int
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def drive(
    call: Callable[[str], Awaitable[bool]], ids: list[str], *, requests: int, concurrency: int, server_pid: int
) -> LoadResult:
    """`concurrency` workers share a counter until `requests` calls are made; `call` returns False on an error."""
    latencies: list[float] = []
    issued = 0
    errors = 0

    async def worker() -> None:
        nonlocal issued, errors
        while issued < requests:
            index = issued
            issued += 1
            started = time.perf_counter()
            ok = await call(ids[index % len(ids)])
            latencies.append(time.perf_counter() - started)
            errors += not ok

    server_cpu = cpu_seconds(server_pid)
    cpu = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return LoadResult(
        requests=requests,
        seconds=seconds,
        cpu_seconds=time.process_time() - cpu,
        server_cpu_seconds=cpu_seconds(server_pid) - server_cpu,
        errors=errors,
        latencies=latencies,
    )


def bare_client(
    base_url: str,
    *,
    max_connections: int | None = 16,
    max_keepalive: int | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """A plain httpx.AsyncClient: httpx's own pool (httpcore), or `transport` under it.

    `max_keepalive` defaults to `max_connections` (as PrimeClient sets it); 0 opens a connection per request.
    """
    keepalive = max_connections if max_keepalive is None else max_keepalive
    return httpx.AsyncClient(
        base_url=base_url + "/api/v1",
        headers={"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"},
        timeout=httpx.Timeout(10.0),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=keepalive),
        transport=transport,
    )


def bare_usage_call(http: httpx.AsyncClient) -> Callable[[str], Awaitable[bool]]:
    async def call(run_id: str) -> bool:
        response = await http.get(f"/billing/runs/{run_id}/usage")
        return response.status_code == 200

    return call


def aiohttp_usage_call(session: aiohttp.ClientSession) -> Callable[[str], Awaitable[bool]]:
    """A second, leaner load generator: shows how much of the ceiling is httpx's rather than the simulator's."""

    async def call(run_id: str) -> bool:
        async with session.get(f"/api/v1/billing/runs/{run_id}/usage") as response:
            await response.read()
            return response.status == 200

    return call


def aiohttp_session(base_url: str, *, max_connections: int = 16) -> aiohttp.ClientSession:
    """aiohttp as an application would use it (its defaults: keep-alive, decompression on)."""
    return aiohttp.ClientSession(
        base_url=base_url,
        headers={"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"},
        connector=aiohttp.TCPConnector(limit=max_connections),
        timeout=aiohttp.ClientTimeout(total=10.0),
    )


def client_usage_call(client: PrimeClient) -> Callable[[str], Awaitable[bool]]:
    async def call(run_id: str) -> bool:
        try:
            await client.get_run_usage(run_id)
        except ApiError:
            return False
        return True

    return call
