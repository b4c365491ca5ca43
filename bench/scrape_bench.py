"""What a /metrics scrape costs at 100, 1,000 and 10,000 watched runs, cached against uncached, and
what a burst of scrapes does to the daemon's polls.

    .venv/bin/python bench/scrape_bench.py                        # 100, 1,000 and 10,000 runs
    .venv/bin/python bench/scrape_bench.py --runs 100 --quick     # seconds: the CI smoke run

1. Rendering, in this process (no sockets). Each state has N runs read through the runtime's methods,
   as the poller does it (a reading, a burn rate, two run rules: a cost cap with warning tiers and a
   burn-rate cap), a wallet and request statistics. Printed per N, in ms (median of `--repeats`):
   - `uncached`: prometheus_client's generate_latest over the registry, what every scrape cost before
     the cache (and `+gzip`: that body compressed as aiohttp did, zlib level 6) - THE BASELINE;
   - the server's ScrapeCache (with max_age 0: each scrape renders what changed; the server shares
     one rendering among the scrapes of a second): the first scrape (every run rendered), a scrape with
     nothing changed, plain and gzip, and a gzip scrape after 1 %, 10 % and 100 % of the runs got a new
     reading;
   - `refreshed`: a gzip scrape after 100 % changed once the daemon's background refresh has rendered
     the changes (what a scrape costs in the steady state: assembly and gzip);
   - body sizes, plain and gzip; every cached figure also as a ratio: uncached / cached.
2. Polls during a scrape burst: the real daemon (`python -m monitor run`) watching N runs of the
   simulator (`python -m monitor simulate`, runs added in one bulk request), both separate processes
   on 127.0.0.1, polled every max(5 s, N / 250 s). Five windows of `--window` seconds each (rounded
   up to whole intervals), alternated quiet, burst, quiet, burst, quiet so that the machine's drift
   hits both kinds; in a burst `--scrapers` clients (8) each scrape /metrics every `--scrape-every`
   seconds (1; 0: back to back), gzip and OpenMetrics as Prometheus asks. Printed: usage calls the
   simulator answered per window, the burst's as a ratio of the quiet windows' (1.00: no drop), the
   daemon's CPU, the scrapes made and their latency over HTTP. `--no-daemon` skips this part.

The machines are shared and noisy: compare ratios, not milliseconds. No asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import math
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import daemon_soak
import httpx
from harness import (
    ADMIN_HEADER,
    ADMIN_TOKEN,
    count_of,
    cpu_seconds,
    free_port,
    load_average,
    scenario,
    simulator_process,
    start_daemon,
)
from prometheus_client import generate_latest

from monitor.exporter.collector import build_registry
from monitor.exporter.live import RuntimeState
from monitor.exporter.scrape_cache import ScrapeCache
from monitor.records import Evaluation
from monitor.snapshots import RunSnapshot, WalletSnapshot

T0 = 1_800_000_000.0
RUN_COUNTS = (100, 1_000, 10_000)
CHANGED_FRACTIONS = (0.01, 0.10, 1.00)
PROMETHEUS_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"


# -- 1. rendering ---------------------------------------------------------------------------------


def _evaluation(*, rule: str, subject: str, metric: str, value: float, limit: float) -> Evaluation:
    tier = 3 if value >= limit else 0
    return Evaluation(
        rule=rule,
        scope="run",
        subject=subject,
        subject_name=subject,
        metric=metric,
        value=value,
        limit=limit,
        breaches_below=False,
        tier=tier,
        tier_count=3,
        tier_label="breached" if tier else "ok",
        tier_threshold=limit,
        severity="critical",
        action="alert",
        utilisation=value / limit,
        clear=tier == 0,
        taken_at=T0,
        time_to_limit_seconds=3600.0 if tier == 0 else None,
    )


def read_run(runtime: RuntimeState, index: int, *, step: int = 0) -> None:
    """Run `index` gets a reading (`step` later), its burn rate and its two rules, as a poll does it."""
    run_id = f"run-{index:06d}"
    tokens = 1_000_000 * (index + 1) + 7_919 * step
    cost = tokens * 1.3e-6
    reading = RunSnapshot(
        run_id=run_id,
        taken_at=T0 + step,
        run_name=f"exp-{index}-qwen-grpo-lr3e-6",
        base_model="Qwen/Qwen3.5-9B",
        status="RUNNING",
        team_id="team-bench",
        training_tokens=tokens,
        inference_input_tokens=2 * tokens,
        inference_output_tokens=tokens // 2,
        training_cost_usd=tokens * 0.6e-6,
        inference_cost_usd=tokens * 0.7e-6,
        total_tokens=3 * tokens + tokens // 2,
        total_cost_usd=cost,
        training_price_per_mtok=0.6,
        inference_input_price_per_mtok=0.2,
        inference_output_price_per_mtok=0.6,
    )
    burn = 1.5 + step / 1000
    runtime.run_read(run_id, reading, mono=T0 + step)
    runtime.burn_rate_measured(run_id, burn)
    runtime.evaluated(_evaluation(rule="run-cap", subject=run_id, metric="total_cost_usd", value=cost, limit=50.0))
    runtime.evaluated(_evaluation(rule="burn", subject=run_id, metric="burn_rate_usd_per_hour", value=burn, limit=10))


def build_state(run_count: int) -> RuntimeState:
    runtime = RuntimeState(started_at=T0 - 3600, config_loaded=True, heartbeat_at=T0)
    for index in range(run_count):
        read_run(runtime, index)
    runtime.wallet = WalletSnapshot(wallet_id="wallet-1", taken_at=T0, balance_usd=1_000.0)
    runtime.wallet_runway_seconds = 86_400.0
    for endpoint in ("usage", "wallet"):
        for latency in (0.01, 0.02, 0.2):
            runtime.requests.observe(endpoint, "200", latency)
    return runtime


def median_ms(body: Callable[[], object], *, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        body()
        timings.append(time.perf_counter() - started)
    return 1000 * statistics.median(timings)


async def amedian_ms(body: Callable[[], Awaitable[object]], *, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        await body()
        timings.append(time.perf_counter() - started)
    return 1000 * statistics.median(timings)


@dataclass
class Rendering:
    runs: int
    ms: dict[str, float] = field(default_factory=dict)
    plain_bytes: int = 0
    gzip_bytes: int = 0
    uncached_gzip_bytes: int = 0


async def measure_rendering(run_count: int, *, repeats: int) -> Rendering:
    runtime = build_state(run_count)
    registry = build_registry(runtime)
    result = Rendering(run_count)
    body = generate_latest(registry)
    result.ms["uncached"] = median_ms(lambda: generate_latest(registry), repeats=repeats)
    result.ms["uncached+gzip"] = median_ms(lambda: gzip.compress(generate_latest(registry), 6), repeats=repeats)
    result.plain_bytes, result.uncached_gzip_bytes = len(body), len(gzip.compress(body, 6))

    cache = ScrapeCache(registry, max_age=0.0)  # every scrape renders what changed: no sharing within a second
    started = time.perf_counter()
    await cache.scrape(accept=PROMETHEUS_ACCEPT)
    result.ms["first"] = 1000 * (time.perf_counter() - started)
    result.ms["cached"] = await amedian_ms(lambda: cache.scrape(accept=PROMETHEUS_ACCEPT), repeats=repeats)
    started = time.perf_counter()
    zipped = await cache.scrape(accept=PROMETHEUS_ACCEPT, accept_encoding="gzip")
    result.ms["first gzip"] = 1000 * (time.perf_counter() - started)
    result.gzip_bytes = zipped.size

    async def gzip_scrape() -> object:
        return await cache.scrape(accept=PROMETHEUS_ACCEPT, accept_encoding="gzip")

    result.ms["cached gzip"] = await amedian_ms(gzip_scrape, repeats=repeats)
    step = 0
    for fraction in CHANGED_FRACTIONS:
        changed = max(1, int(run_count * fraction))
        timings = []
        for _ in range(repeats):
            step += 1
            first = (step * changed) % run_count
            for offset in range(changed):
                read_run(runtime, (first + offset) % run_count, step=step)
            timings.append(await amedian_ms(gzip_scrape, repeats=1))
        result.ms[f"{fraction:.0%} changed gzip"] = statistics.median(timings)
    timings = []
    for _ in range(repeats):
        step += 1
        for index in range(run_count):
            read_run(runtime, index, step=step)
        await cache.refresh()  # what the daemon's keep_fresh does within a second of the changes
        timings.append(await amedian_ms(gzip_scrape, repeats=1))
    result.ms["refreshed gzip"] = statistics.median(timings)
    return result


def print_renderings(results: list[Rendering]) -> None:
    print("\n== 1. rendering a scrape, in this process (ms, median; x = uncached / cached, same run) ==")
    print(f"{'runs':>6} {'uncached':>9} {'+gzip':>8} {'plain KiB':>10} {'gzip KiB':>9} {'gzip KiB (lvl 6)':>17}")
    for r in results:
        print(
            f"{r.runs:>6} {r.ms['uncached']:>9.1f} {r.ms['uncached+gzip']:>8.1f} {r.plain_bytes / 1024:>10.1f}"
            f" {r.gzip_bytes / 1024:>9.1f} {r.uncached_gzip_bytes / 1024:>17.1f}"
        )
    columns = [c for c in results[0].ms if not c.startswith("uncached")]
    print(f"{'runs':>6} " + " ".join(f"{c:>22}" for c in columns))
    for r in results:
        cells = []
        for column in columns:
            baseline = r.ms["uncached+gzip" if "gzip" in column else "uncached"]
            cells.append(f"{r.ms[column]:>9.1f} ms {baseline / r.ms[column]:>7.1f}x")
        print(f"{r.runs:>6} " + " ".join(f"{c:>22}" for c in cells))


# -- 2. polls during a scrape burst -----------------------------------------------------------------


WINDOWS = ("quiet", "burst", "quiet", "burst", "quiet")  # alternated: the machine's drift hits both


@dataclass
class Burst:
    runs: int
    interval: float
    window: float
    # Per kind of window: usage calls the simulator answered, CPU seconds of the daemon.
    calls: dict[str, list[int]] = field(default_factory=lambda: {"quiet": [], "burst": []})
    cpu: dict[str, list[float]] = field(default_factory=lambda: {"quiet": [], "burst": []})
    scrape_ms: list[float] = field(default_factory=list)
    scrape_bytes: int = 0
    errors: int = 0

    def per_window(self, kind: str) -> float:
        return statistics.mean(self.calls[kind])

    def cpu_share(self, kind: str) -> float:
        """The daemon's CPU as a share of one core."""
        return statistics.mean(self.cpu[kind]) / self.window

    def in_order(self) -> list[int]:
        left = {kind: iter(calls) for kind, calls in self.calls.items()}
        return [next(left[kind]) for kind in WINDOWS]

    @property
    def ratio(self) -> float:
        quiet = self.per_window("quiet")
        return self.per_window("burst") / quiet if quiet else float("nan")


async def scrape_burst(base: str, *, scrapers: int, every: float, seconds: float, burst: Burst) -> None:
    deadline = time.monotonic() + seconds
    headers = {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}

    async def scraper(http: httpx.AsyncClient, offset: float) -> None:
        await asyncio.sleep(offset)
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                async with http.stream("GET", f"{base}/metrics", headers=headers) as response:
                    size = sum([len(chunk) async for chunk in response.aiter_raw()])  # not decompressed
                burst.scrape_bytes = size
                burst.errors += response.status_code != 200
            except httpx.HTTPError:
                burst.errors += 1
            took = time.perf_counter() - started
            burst.scrape_ms.append(1000 * took)
            await asyncio.sleep(max(0.0, min(every - took, deadline - time.monotonic())))

    async with httpx.AsyncClient(timeout=60) as http:
        # Spread over the first interval, as several Prometheus servers' scrapes are.
        await asyncio.gather(*(scraper(http, every * index / scrapers) for index in range(scrapers)))


def measure_burst(run_count: int, *, window: float, scrapers: int, every: float, workdir: Path) -> Burst:
    # A poll interval the daemon keeps up with on a small machine: about 250 run reads a second.
    interval = max(2.0 if window < 10 else 5.0, run_count / 250)
    window = interval * math.ceil(window / interval)  # whole poll intervals: no pass cut in two
    burst = Burst(run_count, interval, window)
    daemon_soak.READY_TIMEOUT = 60 + run_count / 50  # discovery and the first pass of every run
    workdir.mkdir()
    with simulator_process(runs=0, workdir=workdir) as sim:
        # In one bulk request: a scenario file of 10,000 runs is more than the simulator reads.
        added = httpx.post(
            f"{sim.base_url}/_sim/runs/bulk",
            json={"runs": scenario(runs=run_count)["runs"]},
            headers={ADMIN_HEADER: ADMIN_TOKEN},
            timeout=120,
        )
        added.raise_for_status()
        port = free_port()
        config = daemon_soak.daemon_config(sim, runs=run_count, interval=interval, port=port, state=workdir / "s.db")
        config["log"]["level"] = "warning"
        base = f"http://127.0.0.1:{port}"
        proc, log_path = start_daemon(config, workdir=workdir)
        try:
            daemon_soak.wait_ready(proc, base, log_path)
            time.sleep(interval)  # one more pass: the schedule settles
            for kind in WINDOWS:
                calls, cpu = count_of(sim.request_counts(), "usage"), cpu_seconds(proc.pid)
                if kind == "burst":
                    asyncio.run(scrape_burst(base, scrapers=scrapers, every=every, seconds=window, burst=burst))
                else:
                    time.sleep(window)
                burst.calls[kind].append(count_of(sim.request_counts(), "usage") - calls)
                burst.cpu[kind].append(cpu_seconds(proc.pid) - cpu)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=daemon_soak.STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    return burst


def print_burst_header(*, scrapers: int, every: float) -> None:
    pace = f"each every {every:g} s" if every > 0 else "back to back"
    print(f"\n== 2. usage calls of the daemon, quiet vs during a burst: {scrapers} scrapers, {pace} (gzip) ==")
    print(
        "(usage calls per window: mean of the windows of each kind, alternated quiet, burst, quiet, burst, quiet;"
        " CPU: the daemon's, as a share of one core)"
    )
    print(
        f"{'runs':>6} {'interval s':>10} {'window s':>8} {'expected':>8} {'quiet':>7} {'burst':>7}"
        f" {'burst/quiet':>11} {'CPU quiet':>9} {'CPU burst':>9} {'scrapes':>7} {'median ms':>9} {'p95 ms':>7}"
        f" {'gzip KiB':>8} {'errors':>6}",
        flush=True,
    )


def print_burst(b: Burst) -> None:
    latencies = sorted(b.scrape_ms) or [float("nan")]
    print(
        f"{b.runs:>6} {b.interval:>10.1f} {b.window:>8.0f} {b.runs * b.window / b.interval:>8.0f}"
        f" {b.per_window('quiet'):>7.0f} {b.per_window('burst'):>7.0f} {b.ratio:>11.2f}"
        f" {b.cpu_share('quiet'):>9.0%} {b.cpu_share('burst'):>9.0%} {len(b.scrape_ms):>7}"
        f" {statistics.median(latencies):>9.1f}"
        f" {latencies[int(0.95 * (len(latencies) - 1))]:>7.1f} {b.scrape_bytes / 1024:>8.1f} {b.errors:>6}",
        flush=True,
    )
    windows = ", ".join(f"{kind} {calls}" for kind, calls in zip(WINDOWS, b.in_order(), strict=True))
    print(f"{'':>6} usage calls per window, in order: {windows}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, nargs="+", default=list(RUN_COUNTS), help="watched runs (100 1000 10000)")
    parser.add_argument("--quick", action="store_true", help="few repeats, short windows: the CI smoke run")
    parser.add_argument("--repeats", type=int, help="renders per figure, median reported (default 5; 2 quick)")
    parser.add_argument("--window", type=float, help="seconds per poll window (default 30; 3 quick)")
    parser.add_argument("--scrapers", type=int, default=8, help="clients scraping /metrics in the burst (8)")
    parser.add_argument(
        "--scrape-every", type=float, default=1.0, help="seconds between one client's scrapes (1; 0: back to back)"
    )
    parser.add_argument("--no-daemon", action="store_true", help="only part 1, in this process")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    window = args.window or (3.0 if args.quick else 30.0)
    if not all(1 <= runs <= 20_000 for runs in args.runs) or not 1 <= repeats <= 100 or not 1 <= window <= 600:
        parser.error("--runs 1..20000, --repeats 1..100, --window 1..600")
    if not 1 <= args.scrapers <= 32 or not 0 <= args.scrape_every <= 60:
        parser.error("--scrapers 1..32, --scrape-every 0..60")
    print(f"scrape_bench: runs {args.runs}, repeats {repeats}; load average before: {load_average()}")

    renderings = [asyncio.run(measure_rendering(runs, repeats=repeats)) for runs in args.runs]
    print_renderings(renderings)
    if not args.no_daemon:
        print_burst_header(scrapers=args.scrapers, every=args.scrape_every)
        with tempfile.TemporaryDirectory() as tmp:
            for runs in args.runs:
                workdir = Path(tmp) / f"runs-{runs}"
                burst = measure_burst(
                    runs, window=window, scrapers=args.scrapers, every=args.scrape_every, workdir=workdir
                )
                print_burst(burst)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
