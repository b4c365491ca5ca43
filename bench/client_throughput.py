"""Requests per second of `PrimeClient.get_run_usage` against the simulator, as a ratio of a bare httpx client.

    .venv/bin/python bench/client_throughput.py [--requests 2000] [--concurrency 1 4 16] [--rounds 3]

The simulator runs in a SEPARATE PROCESS (`python -m monitor simulate --port P --scenario FILE`, started
and stopped by this script on 127.0.0.1), so client and server share neither an event loop nor a GIL; on a
2-core machine each gets roughly one core. For every concurrency level, each round drives N requests
(cycling over `--runs` run ids) three ways, rotating which goes first:

- `bare aiohttp`  aiohttp.ClientSession, GET + body read: the simulator's own ceiling (aiohttp's client is
                  much cheaper than httpx's, so this is the figure that is bounded by the server);
- `bare httpx`    httpx.AsyncClient built as PrimeClient builds it, GET + body read: THE BASELINE, the
                  ceiling of the transport PrimeClient sits on;
- `PrimeClient`   get_run_usage: GET + JSON + pydantic model + request stats + the retry wrapper.

Printed: requests/second (median over rounds) and its ratio to bare httpx, p50/p99 latency (all rounds
pooled), CPU time per request in this process (the client's real cost, which the req/s ratio hides when the
other side is the bottleneck) and its ratio, and CPU per request in the simulator process. No asserts.

The helpers here (simulator process, load driver, /proc readers) are also used by poll_capacity.py and
daemon_soak.py, which import this file as a module (run them from the repository root or anywhere: the
scripts' own directory is on sys.path).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import yaml
from pydantic import SecretStr

from monitor.api.client import PrimeClient
from monitor.api.errors import ApiError

API_KEY = "bench-key"
ADMIN_TOKEN = "bench-admin"
ADMIN_HEADER = "X-Sim-Admin-Token"
START_TIMEOUT = 30.0
MODELS = ("Qwen/Qwen3.5-4B", "Qwen/Qwen3.5-9B", "meta-llama/Llama-3.2-1B", "Qwen/Qwen3.5-35B-A3B")
CLK_TCK = os.sysconf("SC_CLK_TCK")
MODES = ("bare aiohttp", "bare httpx", "PrimeClient")


# --- the simulator as a separate process ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_ids(count: int) -> list[str]:
    return [f"bench-run-{index:05d}" for index in range(count)]


def scenario(*, runs: int) -> dict[str, Any]:
    """`runs` runs on the personal wallet, all RUNNING with usage already landed, burning until deleted."""
    return {
        "api_keys": [API_KEY],
        "admin_token": ADMIN_TOKEN,
        "meter_interval": 60,
        "seed": 1,
        # Every run has one billing row; the recent-request log is kept small on purpose.
        "request_log_size": 100,
        "wallets": [{"wallet_id": "wallet-bench", "team_id": None, "starting_balance_usd": 1_000_000}],
        "runs": [
            {
                "id": run_id,
                "name": f"exp-{run_id}",
                "base_model": MODELS[index % len(MODELS)],
                "rates": {"training": 1000 + index, "inference_input": 600, "inference_output": 300},
                "queue_seconds": 0,
                "started_ago": 600,
            }
            for index, run_id in enumerate(run_ids(runs))
        ],
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

    def request_counts(self) -> dict[str, dict[str, int]]:
        """Public API requests the simulator answered, by endpoint and status (its admin API)."""
        response = httpx.get(f"{self.base_url}/_sim/requests", headers={ADMIN_HEADER: ADMIN_TOKEN}, timeout=10)
        response.raise_for_status()
        counts: dict[str, dict[str, int]] = response.json()["counts"]
        return counts

    def reset_request_counts(self) -> None:
        httpx.delete(f"{self.base_url}/_sim/requests", headers={ADMIN_HEADER: ADMIN_TOKEN}, timeout=10)


def count_of(counts: dict[str, dict[str, int]], endpoint: str, status: str | None = None) -> int:
    return sum(n for code, n in counts.get(endpoint, {}).items() if status is None or code == status)


@contextlib.contextmanager
def simulator_process(*, runs: int, workdir: Path) -> Iterator[SimulatorProcess]:
    scenario_path = workdir / "scenario.yml"
    scenario_path.write_text(yaml.safe_dump(scenario(runs=runs)), encoding="utf-8")
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


def bare_client(base_url: str, *, max_connections: int = 16) -> httpx.AsyncClient:
    """What PrimeClient builds underneath, minus everything PrimeClient adds on top."""
    return httpx.AsyncClient(
        base_url=base_url + "/api/v1",
        headers={"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"},
        timeout=httpx.Timeout(10.0),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
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


# --- this benchmark -----------------------------------------------------------------------------------


@dataclass
class Cell:
    """All rounds of one (mode, concurrency)."""

    results: list[LoadResult] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(r.rate for r in self.results)

    def latency_ms(self, fraction: float) -> float:
        return 1000 * percentile([x for r in self.results for x in r.latencies], fraction)

    def cpu_us_per_request(self, *, server: bool = False) -> float:
        total = sum(r.server_cpu_seconds if server else r.cpu_seconds for r in self.results)
        return 1e6 * total / sum(r.requests for r in self.results)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.results)


async def measure(sim: SimulatorProcess, *, ids: list[str], args: argparse.Namespace) -> dict[tuple[str, int], Cell]:
    cells: dict[tuple[str, int], Cell] = {}
    async with (
        bare_client(sim.base_url) as http,
        aiohttp_session(sim.base_url) as session,
        PrimeClient(base_url=sim.base_url, api_key=SecretStr(API_KEY), max_concurrency=16) as client,
    ):
        calls = {
            "bare aiohttp": aiohttp_usage_call(session),
            "bare httpx": bare_usage_call(http),
            "PrimeClient": client_usage_call(client),
        }
        # Warm-up: open the connections, import lazily-loaded code paths, fill caches.
        for call in calls.values():
            await drive(call, ids, requests=200, concurrency=16, server_pid=sim.pid)
        for concurrency in args.concurrency:
            for round_index in range(args.rounds):
                # Rotate who goes first, so a neighbour's burst does not always hit the same mode.
                order = [*MODES[round_index % 3 :], *MODES[: round_index % 3]]
                for mode in order:
                    result = await drive(
                        calls[mode], ids, requests=args.requests, concurrency=concurrency, server_pid=sim.pid
                    )
                    cells.setdefault((mode, concurrency), Cell()).results.append(result)
    return cells


def print_table(cells: dict[tuple[str, int], Cell], *, concurrency: list[int]) -> None:
    print(
        f"{'conc':>4} {'mode':<12} {'req/s':>7} {'x bare':>7} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'client CPU us/req':>18} {'x bare':>7} {'sim CPU us/req':>15} {'errors':>6}"
    )
    for level in concurrency:
        bare = cells[("bare httpx", level)]
        for mode in MODES:
            cell = cells[(mode, level)]
            print(
                f"{level:>4} {mode:<12} {cell.rate:>7.0f} {cell.rate / bare.rate:>7.2f}"
                f" {cell.latency_ms(0.5):>7.2f} {cell.latency_ms(0.99):>7.2f}"
                f" {cell.cpu_us_per_request():>18.0f} {cell.cpu_us_per_request() / bare.cpu_us_per_request():>7.2f}"
                f" {cell.cpu_us_per_request(server=True):>15.0f} {cell.errors:>6}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per measurement (default 2000)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16], help="in-flight requests")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per cell; the median rate is shown")
    parser.add_argument("--runs", type=int, default=100, help="simulated runs the requests cycle through")
    args = parser.parse_args()
    if not 1 <= args.requests <= 100_000 or not 1 <= args.rounds <= 20 or not 1 <= args.runs <= 10_000:
        parser.error("--requests 1..100000, --rounds 1..20, --runs 1..10000")
    if any(not 1 <= c <= 16 for c in args.concurrency):
        parser.error("--concurrency values 1..16 (PrimeClient's default pool is 16 connections)")

    print(f"client_throughput: {args.requests} requests x {args.rounds} rounds per cell, {args.runs} runs")
    print(f"simulator: separate process on 127.0.0.1; load average before: {load_average()}; cores: {os.cpu_count()}")
    print(sniffio_note())
    with (
        tempfile.TemporaryDirectory(prefix="bench-client-") as tmp,
        simulator_process(runs=args.runs, workdir=Path(tmp)) as sim,
    ):
        cells = asyncio.run(measure(sim, ids=run_ids(args.runs), args=args))
    print_table(cells, concurrency=args.concurrency)
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
