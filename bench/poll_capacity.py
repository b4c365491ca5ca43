"""Runs polled per second by the daemon's poll path, against wrk and bare clients at the same concurrency.

    .venv/bin/python bench/poll_capacity.py [--runs 100 500 1000] [--passes 3] [--profile 1000]

The simulator runs in a separate process (`python -m monitor simulate`, 127.0.0.1) with as many runs as the
largest size. For each number of watched runs N, every pass reads all N runs once, in these ways:

- `wrk`           wrk (Debian package) with 16 connections for --wrk-seconds, same endpoint and run ids:
                  the simulator's ceiling, baseline `x wrk` (left out if wrk is not installed);
- `bare aiohttp`  16 workers with aiohttp: what a lean Python client reaches;
- `bare httpx`    16 workers with a bare httpx.AsyncClient on httpx's own pool (httpcore), baseline `x httpx`;
- `PrimeClient`   asyncio.gather of N `get_run_usage` calls (the client bounds them at 16; its default
                  transport, aiohttp);
- `Poller`        `Poller.poll_due_runs()` with every run due: real PrimeClient, StateStore on a temp file,
                  RuntimeState; reads, validates and stores a snapshot per run;
- `daemon fresh`  `Daemon.poll_runs(all_runs=True)`: the poller plus the rules pipeline (two run rules, burn
                  rate from the stored history), exactly the daemon's poll job, no notifier configured, on a
                  store holding only this benchmark's few readings (a daemon in its first minutes);
- `daemon steady` the same on a store pre-filled with `--history` readings per run, 5 s apart, ending now:
                  a full burn window (900 s / 5 s = 180 by default), which the pipeline reads back each poll.

Printed: runs/s (median over passes), the ratios to wrk and to bare httpx, and CPU ms per run in this process
(where the poll path's own cost shows even when the simulator is the bottleneck). `--profile N` adds a cProfile
of one `daemon steady` pass at N runs (top functions by own time). No asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    API_KEY,
    SimulatorProcess,
    aiohttp_session,
    aiohttp_usage_call,
    bare_client,
    bare_usage_call,
    drive,
    load_average,
    run_ids,
    simulator_process,
    sniffio_note,
)
from pydantic import SecretStr
from wrk_runner import run_wrk, wrk_binary, wrk_note

from monitor.api.client import PrimeClient
from monitor.config.settings import Settings
from monitor.daemon import Daemon
from monitor.logs import configure_logging
from monitor.snapshots import RunSnapshot
from monitor.store.state_store import StateStore
from monitor.wiring import build

CONCURRENCY = 16  # api.max_concurrency's default
MODES = ("wrk", "bare aiohttp", "bare httpx", "PrimeClient", "Poller", "daemon fresh", "daemon steady")
POLL_INTERVAL = 5.0
RULES: list[dict[str, Any]] = [
    {"name": "run-cap", "scope": "run", "metric": "total_cost_usd", "threshold": 1_000_000, "warn_at": [0.5, 0.8]},
    {"name": "burn", "scope": "run", "metric": "burn_rate_usd_per_hour", "threshold": 1_000_000},
]


@dataclass
class Pass:
    runs: int
    seconds: float
    cpu_seconds: float
    polled: int  # runs that produced a good snapshot (or a 200)


@dataclass
class Cell:
    passes: list[Pass] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(p.runs / p.seconds for p in self.passes)

    @property
    def cpu_ms_per_run(self) -> float:
        return 1000 * sum(p.cpu_seconds for p in self.passes) / sum(p.runs for p in self.passes)

    @property
    def failed(self) -> int:
        return sum(p.runs - p.polled for p in self.passes)


def settings_for(base_url: str, ids: list[str], state_path: Path) -> Settings:
    return Settings(
        api={"base_url": base_url, "api_key": API_KEY, "max_concurrency": CONCURRENCY, "timeout": 30},
        watch={"runs": ids, "discover": False},
        # Every run on every pass: no polling by time to limit, no read budget (50/s by default).
        poll={
            "interval": POLL_INTERVAL,
            "min_interval": POLL_INTERVAL,
            "adaptive": False,
            "max_requests_per_second": 0,
        },
        rules=RULES,
        server={"enabled": False},
        state={"path": str(state_path)},
    )


async def timed(body: Callable[[], Awaitable[int]], *, runs: int) -> Pass:
    cpu = time.process_time()
    started = time.perf_counter()
    polled = await body()
    return Pass(runs=runs, seconds=time.perf_counter() - started, cpu_seconds=time.process_time() - cpu, polled=polled)


def seed_history(store: StateStore, ids: list[str], *, readings: int) -> None:
    """`readings` snapshots per run, POLL_INTERVAL apart, the newest one interval ago; costs below the live ones."""
    now = time.time()
    for run_id in ids:
        for index in range(readings):
            tokens = 10 * (index + 1)
            store.save_run_snapshot(
                RunSnapshot(
                    run_id=run_id,
                    taken_at=now - (readings - index) * POLL_INTERVAL,
                    run_name=f"exp-{run_id}",
                    base_model="Qwen/Qwen3.5-4B",
                    status="RUNNING",
                    training_tokens=tokens,
                    total_tokens=tokens,
                    training_cost_usd=tokens * 1e-9,
                    total_cost_usd=tokens * 1e-9,
                    record_count=index + 1,
                )
            )


class Bench:
    """Everything needed to poll one set of N runs in each mode, on one event loop."""

    def __init__(
        self, sim: SimulatorProcess, ids: list[str], workdir: Path, *, history: int, wrk_seconds: float = 3.0
    ) -> None:
        self.sim = sim
        self.ids = ids
        self.workdir = workdir
        self.wrk_seconds = wrk_seconds
        self.http = bare_client(sim.base_url, max_connections=CONCURRENCY)
        self.session = aiohttp_session(sim.base_url, max_connections=CONCURRENCY)
        self.client = PrimeClient(base_url=sim.base_url, api_key=SecretStr(API_KEY), max_concurrency=CONCURRENCY)
        # The poller alone (no rules, no outbox): the monitor's own wiring with nothing handed on.
        self.parts = build(settings_for(sim.base_url, ids, workdir / "poller.db"), notifiers=[])
        self.parts.poller.on_reading = None
        self.poller = self.parts.poller
        self.daemons = {
            mode: Daemon(
                settings=settings_for(sim.base_url, ids, workdir / f"{mode}.db"), notifiers=[], serve_http=False
            )
            for mode in ("daemon fresh", "daemon steady")
        }
        seed_history(self.daemons["daemon steady"].store, ids, readings=history)

    async def close(self) -> None:
        await self.http.aclose()
        await self.session.close()
        await self.client.aclose()
        await self.parts.aclose()
        for daemon in self.daemons.values():
            await daemon.shutdown()

    async def one_pass(self, mode: str) -> Pass:
        n = len(self.ids)
        if mode == "wrk":
            wrk = await asyncio.to_thread(
                run_wrk,
                self.sim.base_url,
                self.ids,
                concurrency=CONCURRENCY,
                seconds=self.wrk_seconds,
                server_pid=self.sim.pid,
                workdir=self.workdir,
            )
            return Pass(
                runs=wrk.requests,
                seconds=wrk.seconds,
                cpu_seconds=wrk.cpu_seconds,
                polled=wrk.requests - wrk.errors,
            )
        if mode in ("bare aiohttp", "bare httpx"):
            call = aiohttp_usage_call(self.session) if mode == "bare aiohttp" else bare_usage_call(self.http)
            result = await drive(call, self.ids, requests=n, concurrency=CONCURRENCY, server_pid=self.sim.pid)
            return Pass(runs=n, seconds=result.seconds, cpu_seconds=result.cpu_seconds, polled=n - result.errors)
        if mode == "PrimeClient":

            async def client_pass() -> int:
                results = await asyncio.gather(
                    *(self.client.get_run_usage(r) for r in self.ids), return_exceptions=True
                )
                return sum(not isinstance(r, BaseException) for r in results)

            return await timed(client_pass, runs=n)
        if mode == "Poller":

            async def poller_pass() -> int:
                self.poller.watch.make_all_due()
                return len(await self.poller.poll_due_runs())

            return await timed(poller_pass, runs=n)

        daemon = self.daemons[mode]

        async def daemon_pass() -> int:
            before = int(daemon.runtime.requests.count("usage", "200"))
            daemon.poller.watch.make_all_due()
            await daemon.poller.poll_due_runs()
            return int(daemon.runtime.requests.count("usage", "200")) - before

        return await timed(daemon_pass, runs=n)


async def measure(
    sim: SimulatorProcess, *, sizes: list[int], passes: int, history: int, workdir: Path, wrk_seconds: float
) -> dict[int, dict[str, Cell]]:
    table: dict[int, dict[str, Cell]] = {}
    modes = [mode for mode in MODES if mode != "wrk" or wrk_binary() is not None]
    for size in sizes:
        bench = Bench(sim, run_ids(size), workdir / f"n{size}", history=history, wrk_seconds=wrk_seconds)
        try:
            for mode in modes:  # warm-up: connections, first snapshots in the stores
                if mode != "wrk":
                    await bench.one_pass(mode)
            cells = {mode: Cell() for mode in modes}
            for index in range(passes):
                # Rotate the order so a neighbour's burst does not always land on the same mode.
                for mode in [*modes[index % len(modes) :], *modes[: index % len(modes)]]:
                    cells[mode].passes.append(await bench.one_pass(mode))
            table[size] = cells
        finally:
            await bench.close()
    return table


async def profile_pass(sim: SimulatorProcess, *, size: int, history: int, workdir: Path) -> str:
    bench = Bench(sim, run_ids(size), workdir / f"profile{size}", history=history)
    try:
        await bench.one_pass("daemon steady")
        profiler = cProfile.Profile()
        profiler.enable()
        await bench.one_pass("daemon steady")
        profiler.disable()
    finally:
        await bench.close()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(15)
    stats.sort_stats("cumulative").print_stats(r"monitor/", 15)
    return out.getvalue()


def print_table(table: dict[int, dict[str, Cell]]) -> None:
    print(f"{'runs':>5} {'mode':<13} {'runs/s':>7} {'x wrk':>6} {'x httpx':>7} {'CPU ms/run':>11} {'failed':>6}")
    for size, cells in table.items():
        baseline = cells["bare httpx"].rate
        wrk = f"{cells['wrk'].rate:.0f}" if "wrk" in cells else None
        for mode, cell in cells.items():
            x_wrk = f"{cell.rate / cells['wrk'].rate:.2f}" if wrk else "-"
            print(
                f"{size:>5} {mode:<13} {cell.rate:>7.0f} {x_wrk:>6} {cell.rate / baseline:>7.2f}"
                f" {cell.cpu_ms_per_run:>11.3f} {cell.failed:>6}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, nargs="+", default=[100, 500, 1000], help="watched runs per size")
    parser.add_argument("--passes", type=int, default=3, help="timed passes per mode; the median rate is shown")
    parser.add_argument(
        "--history", type=int, default=180, help="readings per run pre-filled for `daemon steady` (default 180)"
    )
    parser.add_argument("--profile", type=int, metavar="N", help="also profile one daemon pass at N runs")
    parser.add_argument("--wrk-seconds", type=float, default=3.0, help="how long each wrk pass runs (default 3)")
    args = parser.parse_args()
    if any(not 1 <= n <= 5000 for n in args.runs) or not 1 <= args.passes <= 20 or not 0 <= args.history <= 2000:
        parser.error("--runs values 1..5000, --passes 1..20, --history 0..2000")
    if args.profile is not None and not 1 <= args.profile <= 5000:
        parser.error("--profile 1..5000")
    # Env settings beat the ones built here: keep a developer's real key and URL out of it.
    for name in [k for k in os.environ if k.startswith(("PRIME_", "SLACK_"))]:
        del os.environ[name]
    configure_logging(fmt="json", level="warning")

    print(
        f"poll_capacity: sizes {args.runs}, {args.passes} passes per mode, concurrency {CONCURRENCY},"
        f" {args.history} readings per run pre-filled for `daemon steady`"
    )
    print(f"simulator: separate process on 127.0.0.1; load average before: {load_average()}; cores: {os.cpu_count()}")
    print(f"{sniffio_note()}; {wrk_note()}")
    with (
        tempfile.TemporaryDirectory(prefix="bench-poll-") as tmp,
        simulator_process(runs=max([*args.runs, args.profile or 0]), workdir=Path(tmp)) as sim,
    ):
        table = asyncio.run(
            measure(
                sim,
                sizes=args.runs,
                passes=args.passes,
                history=args.history,
                workdir=Path(tmp),
                wrk_seconds=args.wrk_seconds,
            )
        )
        print_table(table)
        if args.profile:
            print(f"\ncProfile of one `daemon steady` pass at {args.profile} runs ({args.history} readings per run):")
            print(asyncio.run(profile_pass(sim, size=args.profile, history=args.history, workdir=Path(tmp))))
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
