"""Requests per second of `PrimeClient.get_run_usage` against the simulator, next to wrk, bare aiohttp and bare httpx.

    .venv/bin/python bench/client_throughput.py [--requests 2000] [--concurrency 1 4 16 64] [--rounds 3]
        [--latency 0] [--pools] [--modes MODE ...] [--wrk-seconds 3] [--runs 100]

The simulator runs in a SEPARATE PROCESS (`python -m monitor simulate`, 127.0.0.1), so client and server share
neither an event loop nor a GIL; on 2 cores each gets about one. At each concurrency (requests in flight, and
connections), every round measures each mode once, rotating which goes first:

- `wrk`               the C load generator (Debian `wrk`, one thread), same endpoint, same run ids, same
                      concurrency, for --wrk-seconds: the SERVER'S CEILING, baseline `x wrk`;
- `aiohttp`           a bare aiohttp.ClientSession, GET + body read: what a lean Python client reaches,
                      baseline `x aiohttp`;
- `httpx/httpcore`    a bare httpx.AsyncClient on httpx's own pool, GET + body read, baseline `x httpx`;
- `httpx/aiohttp`     the same httpx.AsyncClient on the monitor's aiohttp transport (monitor/api/transport.py);
- `httpx/h-aiohttp`   the same on the PyPI package httpx-aiohttp's transport, if it is installed (context only:
                      it does not keep the client's guarantees, see bench/README.md);
- `Prime/httpcore`    PrimeClient.get_run_usage with `api.transport: httpcore`: GET + size-capped body + JSON
                      checks + pydantic model + request stats + the retry wrapper;
- `Prime/aiohttp`     the same with `api.transport: aiohttp`, the default.

`--pools` adds httpx pool settings: httpx's default limits (100 connections, 20 kept alive) and keep-alive off
(max_keepalive_connections=0: a new connection per request). `--latency S` makes the simulator answer every
usage request S seconds late (a fault), as a remote API would: throughput is then bounded by concurrency /
latency, which is what `api.max_concurrency` is for.

Printed per mode: requests/s (median over rounds) and its ratios, p50/p99 latency (all rounds pooled; wrk's
own percentiles, median over rounds), CPU per request in the client process (wrk's from its rusage) and its
ratios, and the simulator's CPU per request. No asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import statistics
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
from harness import (
    API_KEY,
    LoadResult,
    SimulatorProcess,
    aiohttp_session,
    aiohttp_usage_call,
    bare_client,
    bare_usage_call,
    client_usage_call,
    drive,
    load_average,
    percentile,
    run_ids,
    simulator_process,
    sniffio_note,
)
from pydantic import SecretStr
from wrk_runner import WrkResult, run_wrk, wrk_binary, wrk_note

from monitor.api.client import PrimeClient
from monitor.api.transport import AiohttpTransport, TransportName

BASE_MODES = ("wrk", "aiohttp", "httpx/httpcore", "httpx/aiohttp", "httpx/h-aiohttp", "Prime/httpcore", "Prime/aiohttp")
POOL_MODES = ("httpx 100/20", "httpx no-keepalive")
Call = Callable[[str], Awaitable[bool]]


def pypi_httpx_aiohttp() -> Callable[..., httpx.AsyncBaseTransport] | None:
    """The PyPI package's transport class, if it is installed (it is not a dependency)."""
    try:
        module = importlib.import_module("httpx_aiohttp")
    except ImportError:
        return None
    transport: Callable[..., httpx.AsyncBaseTransport] = module.AiohttpTransport
    return transport


def prime_client(base_url: str, concurrency: int, *, transport: TransportName) -> PrimeClient:
    return PrimeClient(base_url=base_url, api_key=SecretStr(API_KEY), max_concurrency=concurrency, transport=transport)


@dataclass
class Cell:
    """All rounds of one (mode, concurrency)."""

    results: list[LoadResult | WrkResult] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(r.rate for r in self.results)

    def latency_ms(self, fraction: float) -> float:
        wrk = [r for r in self.results if isinstance(r, WrkResult)]
        if wrk:  # wrk reports its own percentiles: the median over rounds
            return statistics.median(r.p50_ms if fraction == 0.5 else r.p99_ms for r in wrk)
        return 1000 * percentile([x for r in self.results if isinstance(r, LoadResult) for x in r.latencies], fraction)

    def cpu_us_per_request(self, *, server: bool = False) -> float:
        total = sum(r.server_cpu_seconds if server else r.cpu_seconds for r in self.results)
        return 1e6 * total / sum(r.requests for r in self.results)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.results)


async def measure_level(
    sim: SimulatorProcess, *, ids: list[str], level: int, modes: list[str], args: argparse.Namespace, workdir: Path
) -> dict[str, Cell]:
    """Every mode at one concurrency, `args.rounds` times, with fresh clients sized to that concurrency."""
    pypi = pypi_httpx_aiohttp()
    async with contextlib.AsyncExitStack() as stack:
        enter = stack.enter_async_context
        limits = httpx.Limits(max_connections=level, max_keepalive_connections=level)
        clients: dict[str, object] = {
            "aiohttp": await enter(aiohttp_session(sim.base_url, max_connections=level)),
            "httpx/httpcore": await enter(bare_client(sim.base_url, max_connections=level)),
            "httpx/aiohttp": await enter(bare_client(sim.base_url, transport=AiohttpTransport(max_connections=level))),
            "Prime/httpcore": await enter(prime_client(sim.base_url, level, transport="httpcore")),
            "Prime/aiohttp": await enter(prime_client(sim.base_url, level, transport="aiohttp")),
            "httpx 100/20": await enter(bare_client(sim.base_url, max_connections=100, max_keepalive=20)),
            "httpx no-keepalive": await enter(bare_client(sim.base_url, max_connections=level, max_keepalive=0)),
        }
        if pypi is not None:
            clients["httpx/h-aiohttp"] = await enter(bare_client(sim.base_url, transport=pypi(limits=limits)))
        calls: dict[str, Call] = {}
        for mode, client in clients.items():
            if isinstance(client, PrimeClient):
                calls[mode] = client_usage_call(client)
            elif isinstance(client, httpx.AsyncClient):
                calls[mode] = bare_usage_call(client)
            elif isinstance(client, aiohttp.ClientSession):
                calls[mode] = aiohttp_usage_call(client)
        present = [m for m in modes if m in calls or (m == "wrk" and wrk_binary() is not None)]
        for mode in present:  # warm-up: open the connections, import lazily-loaded code paths
            if mode != "wrk":
                await drive(calls[mode], ids, requests=min(200, args.requests), concurrency=level, server_pid=sim.pid)
        cells: dict[str, Cell] = {mode: Cell() for mode in present}
        for round_index in range(args.rounds):
            # Rotate who goes first, so a neighbour's burst does not always hit the same mode.
            shift = round_index % len(present)
            for mode in [*present[shift:], *present[:shift]]:
                if mode == "wrk":
                    result: LoadResult | WrkResult = await asyncio.to_thread(
                        run_wrk,
                        sim.base_url,
                        ids,
                        concurrency=level,
                        seconds=args.wrk_seconds,
                        server_pid=sim.pid,
                        workdir=workdir,
                    )
                else:
                    result = await drive(
                        calls[mode], ids, requests=args.requests, concurrency=level, server_pid=sim.pid
                    )
                cells[mode].results.append(result)
    return cells


def ratio(cells: dict[str, Cell], value: float, base: str, *, cpu: bool = False) -> str:
    """value / the base mode's figure at the same concurrency ('-' when that mode was not measured)."""
    if base not in cells:
        return "-"
    reference = cells[base].cpu_us_per_request() if cpu else cells[base].rate
    return f"{value / reference:.2f}"


def print_table(table: dict[int, dict[str, Cell]]) -> None:
    print(
        f"{'conc':>4} {'mode':<18} {'req/s':>7} {'x wrk':>6} {'x aiohttp':>9} {'x httpx':>7} {'p50 ms':>7}"
        f" {'p99 ms':>7} {'CPU us/req':>10} {'x aiohttp':>9} {'x httpx':>7} {'sim us/req':>10} {'errors':>6}"
    )
    for level, cells in table.items():
        for mode, cell in cells.items():
            cpu = cell.cpu_us_per_request()
            print(
                f"{level:>4} {mode:<18} {cell.rate:>7.0f} {ratio(cells, cell.rate, 'wrk'):>6}"
                f" {ratio(cells, cell.rate, 'aiohttp'):>9} {ratio(cells, cell.rate, 'httpx/httpcore'):>7}"
                f" {cell.latency_ms(0.5):>7.2f} {cell.latency_ms(0.99):>7.2f} {cpu:>10.0f}"
                f" {ratio(cells, cpu, 'aiohttp', cpu=True):>9} {ratio(cells, cpu, 'httpx/httpcore', cpu=True):>7}"
                f" {cell.cpu_us_per_request(server=True):>10.0f} {cell.errors:>6}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per measurement (default 2000)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64], help="in flight at once")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per cell; the median rate is shown")
    parser.add_argument("--runs", type=int, default=100, help="simulated runs the requests cycle through")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds the simulator waits before answering")
    parser.add_argument("--wrk-seconds", type=float, default=3.0, help="how long each wrk measurement runs")
    parser.add_argument("--pools", action="store_true", help="also measure httpx pool settings")
    parser.add_argument("--modes", nargs="+", choices=[*BASE_MODES, *POOL_MODES], help="only these modes")
    args = parser.parse_args()
    if not 1 <= args.requests <= 100_000 or not 1 <= args.rounds <= 20 or not 1 <= args.runs <= 10_000:
        parser.error("--requests 1..100000, --rounds 1..20, --runs 1..10000")
    if any(not 1 <= c <= 256 for c in args.concurrency):
        parser.error("--concurrency values 1..256 (api.max_concurrency's range)")
    if not 0 <= args.latency <= 5 or not 1 <= args.wrk_seconds <= 60:
        parser.error("--latency 0..5, --wrk-seconds 1..60")
    modes = args.modes or [*BASE_MODES, *(POOL_MODES if args.pools else ())]

    print(
        f"client_throughput: {args.requests} requests x {args.rounds} rounds per cell, {args.runs} runs,"
        f" latency {args.latency:g} s, concurrency {args.concurrency}"
    )
    print(f"simulator: separate process on 127.0.0.1; load average before: {load_average()}; cores: {os.cpu_count()}")
    print(f"{sniffio_note()}; {wrk_note()}")
    if pypi_httpx_aiohttp() is None:
        print("httpx-aiohttp (PyPI): not installed, its row is left out")
    table: dict[int, dict[str, Cell]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-client-") as tmp,
        simulator_process(runs=args.runs, workdir=Path(tmp)) as sim,
    ):
        if args.latency:
            sim.set_faults([{"kind": "latency", "endpoint": "usage", "latency": args.latency}])
        for level in args.concurrency:
            table[level] = asyncio.run(
                measure_level(sim, ids=run_ids(args.runs), level=level, modes=modes, args=args, workdir=Path(tmp))
            )
    print_table(table)
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
