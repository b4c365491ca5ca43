"""Scale: the real daemon (`python -m monitor run --config ...`) watching 100, 1,000 and 10,000 simulated runs.

    .venv/bin/python bench/scale.py                                # 100, 1,000 and 10,000 runs (~25 min)
    .venv/bin/python bench/scale.py --runs 100 --quick             # the CI smoke size (~25 s)
    .venv/bin/python bench/scale.py --runs 10000 --window-readings 10 --keep /tmp/scale   # shorter, keep logs

For each size, in this order, each step bounded in time:
1. A simulator process (`python -m monitor simulate`, 127.0.0.1) gets the runs in one bulk add (all RUNNING,
   usage landed, burning until deleted; one billing row each on one wallet).
2. `wrk` (Debian package) reads the same usage endpoint over the same run ids at the daemon's concurrency
   (`api.max_concurrency`) for --wrk-seconds: the server's ceiling, against which the poll path is a ratio.
3. The daemon starts with a state file of its own, finds the runs by discovery from the wallet (as in
   production) and reads each once: the FIRST PASS. `first pass` is from process start to the last run read;
   `poll phase` from its first usage request to its last, timed by the simulator's request log; runs / poll
   phase is the poll path's rate, `x wrk` its ratio to wrk's.
4. It goes on polling every --interval (not adaptive unless --adaptive; no read budget unless --budget)
   until the burn window (--window-readings x interval) is full; /proc gives RSS and CPU, the file system the
   SQLite file (with its WAL), the simulator the API calls, every --sample-seconds. `steady` is CPU per usage
   call from the end of the first pass on.
5. /metrics scraped --scrapes times alone (alternating plain and gzip: time, bytes on the wire); then a
   window without scrapes and one of the same length with --scrapers threads scraping back to back: the
   usage calls in each (a scrape must not cost polls: `burst / quiet` near 1.00).
6. SIGTERM; the exit code and the daemon's warnings and non-JSON lines.

Printed: the samples as they come, a block per size and a table of all sizes at the end (KiB per run is
the RSS difference from the smallest size). No asserts. The rules are daemon_soak's: a cost cap with warning
tiers, a burn-rate cap and a wallet floor, none breached.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from harness import (
    SimulatorProcess,
    bench_run,
    count_of,
    cpu_seconds,
    free_port,
    load_average,
    memory_kib,
    run_ids,
    simulator_process,
    sniffio_note,
    start_daemon,
)
from wrk_runner import WrkResult, run_wrk, wrk_binary, wrk_note

LOG_SIZE = 2000  # the simulator's recent-request log: enough to time the first and last read of a pass
STOP_TIMEOUT = 20.0
SCRAPE_TIMEOUT = 60.0


@dataclass
class Sample:
    elapsed: float  # since the daemon process started
    rss_kib: int
    hwm_kib: int
    cpu_seconds: float
    usage_calls: int
    db_bytes: int  # the SQLite file
    wal_bytes: int  # its write-ahead log (and shared-memory index)


@dataclass
class Scrape:
    encoding: str  # "identity" or "gzip"
    ms: float
    wire_bytes: int
    plain_bytes: int


@dataclass
class SizeFigures:
    runs: int
    concurrency: int
    interval: float
    window: float
    wrk: WrkResult | None = None
    first_pass: float | None = None  # process start -> every run read once
    poll_phase: float | None = None  # first usage request -> the runs-th
    samples: list[Sample] = field(default_factory=list)
    steady_from: int = 0  # samples[steady_from:steady_to + 1]: from the end of the first pass to the window full,
    steady_to: int = 0  # before any scrape
    alone: list[Scrape] = field(default_factory=list)
    burst: list[Scrape] = field(default_factory=list)
    quiet_calls: int = 0
    burst_calls: int = 0
    calls: dict[str, dict[str, int]] = field(default_factory=dict)
    exit_code: int | None = None
    log_levels: Counter[str] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)
    other_lines: Counter[str] = field(default_factory=Counter)

    @property
    def poll_rate(self) -> float | None:
        return self.runs / self.poll_phase if self.poll_phase else None

    def steady(self) -> tuple[float, float] | None:
        """(CPU ms per usage call, usage calls per second) from the end of the first pass to the window full."""
        first, last = self.samples[self.steady_from], self.samples[self.steady_to]
        calls = last.usage_calls - first.usage_calls
        if calls <= 0 or last.elapsed <= first.elapsed:
            return None
        return 1000 * (last.cpu_seconds - first.cpu_seconds) / calls, calls / (last.elapsed - first.elapsed)


def file_bytes(*paths: Path) -> int:
    return sum(path.stat().st_size for path in paths if path.exists())


def daemon_config(sim: SimulatorProcess, figures: SizeFigures, *, port: int, state: Path, args: Any) -> dict[str, Any]:
    return {
        "api": {"base_url": sim.base_url, "timeout": "10s", "max_concurrency": figures.concurrency},
        "watch": {"discover": True, "wallet_rows": figures.runs + 100},
        "poll": {
            "interval": figures.interval,
            "min_interval": min(5.0, figures.interval),
            "wallet_interval": 60,
            "adaptive": args.adaptive,
            "burn_window": figures.window,
            "max_requests_per_second": args.budget,
        },
        "rules": [
            {"name": "run-cap", "scope": "run", "metric": "total_cost_usd", "threshold": 10_000, "warn_at": [0.5, 0.8]},
            {"name": "burn", "scope": "run", "metric": "burn_rate_usd_per_hour", "threshold": 10_000},
            {"name": "wallet-floor", "scope": "wallet", "metric": "balance_usd", "below": 100},
        ],
        "server": {"listen": f"127.0.0.1:{port}"},
        "state": {"path": str(state)},
        "log": {"format": "json", "level": "info"},
    }


def scrape(base: str, encoding: str) -> Scrape:
    with httpx.Client(timeout=SCRAPE_TIMEOUT) as http:
        started = time.perf_counter()
        response = http.get(f"{base}/metrics", headers={"Accept-Encoding": encoding})
        ms = 1000 * (time.perf_counter() - started)
    return Scrape(encoding=encoding, ms=ms, wire_bytes=response.num_bytes_downloaded, plain_bytes=len(response.content))


def usage_calls_while(
    sim: SimulatorProcess, seconds: float, *, scrape_base: str | None, scrapers: int
) -> tuple[int, list[Scrape]]:
    """Usage calls the simulator answers in the next `seconds`; with `scrape_base`, while `scrapers` threads
    scrape it back to back (alternating plain and gzip). The count is taken at the deadline, not after the
    last scrape in flight."""
    done: list[Scrape] = []
    stop = threading.Event()

    def scraper(offset: int) -> None:
        for index in range(100_000):
            if stop.is_set():
                return
            done.append(scrape(scrape_base or "", "gzip" if (index + offset) % 2 else "identity"))

    threads = [threading.Thread(target=scraper, args=(n,)) for n in range(scrapers if scrape_base else 0)]
    before = count_of(sim.request_counts(), "usage")
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    calls = count_of(sim.request_counts(), "usage") - before
    stop.set()
    for thread in threads:
        thread.join(timeout=SCRAPE_TIMEOUT)
    return calls, done


class DaemonRun:
    """The daemon process for one size, and the bookkeeping of its samples."""

    def __init__(self, sim: SimulatorProcess, figures: SizeFigures, workdir: Path, args: Any) -> None:
        self.sim, self.figures, self.args = sim, figures, args
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.state = workdir / "state.db"
        config = daemon_config(sim, figures, port=self.port, state=self.state, args=args)
        self.started_wall = time.time()
        self.started = time.monotonic()
        self.proc, self.log_path = start_daemon(config, workdir=workdir)

    def sample(self, *, echo: bool = True) -> Sample:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the daemon exited ({self.proc.returncode}):\n{self.log_path.read_text()[-3000:]}")
        memory = memory_kib(self.proc.pid)
        taken = Sample(
            elapsed=time.monotonic() - self.started,
            rss_kib=memory["VmRSS"],
            hwm_kib=memory["VmHWM"],
            cpu_seconds=cpu_seconds(self.proc.pid),
            usage_calls=count_of(self.sim.request_counts(), "usage"),
            db_bytes=file_bytes(self.state),
            wal_bytes=file_bytes(
                self.state.with_name(self.state.name + "-wal"), self.state.with_name(self.state.name + "-shm")
            ),
        )
        self.figures.samples.append(taken)
        if echo:
            print(
                f"[{self.figures.runs}] {taken.elapsed:>7.1f} {taken.rss_kib / 1024:>8.1f} {taken.cpu_seconds:>7.2f}"
                f" {taken.usage_calls:>11} {taken.db_bytes / 2**20:>8.2f} {taken.wal_bytes / 2**20:>8.2f}",
                flush=True,
            )
        return taken

    def first_pass(self) -> None:
        """Wait until every run has been read once; time it from the simulator's request log."""
        runs = self.figures.runs
        deadline = time.monotonic() + max(60.0, runs / 20)
        first_at: float | None = None
        next_sample = time.monotonic() + self.args.sample_seconds
        while time.monotonic() < deadline:
            snapshot = self.sim.requests()
            count = count_of(snapshot["counts"], "usage")
            times = [entry["at"] for entry in snapshot["recent"] if entry["endpoint"] == "usage"]
            if first_at is None and count:
                first_at = times[0] if len(times) == count else time.time()
            if count >= runs:
                # The recent log holds the last len(times) usage requests: overall numbers count-len .. count-1.
                index = runs - 1 - (count - len(times))
                done_at = times[index] if index >= 0 else time.time()
                self.figures.first_pass = done_at - self.started_wall
                self.figures.poll_phase = done_at - first_at if first_at is not None else None
                self.figures.steady_from = len(self.figures.samples)
                self.sample()
                return
            if self.proc.poll() is not None:
                break
            if time.monotonic() >= next_sample:
                self.sample()
                next_sample += self.args.sample_seconds
            time.sleep(0.2)
        self.sample()
        print(f"[{runs}] the first pass did not finish: {count_of(self.sim.request_counts(), 'usage')} runs read")

    def until(self, elapsed: float) -> None:
        """Sample every --sample-seconds until `elapsed` seconds after the process started."""
        for _ in range(100_000):
            left = self.started + elapsed - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(self.args.sample_seconds, left))
            self.sample()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.figures.exit_code = self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        else:
            self.figures.exit_code = self.proc.returncode
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                self.figures.log_levels["(not json)"] += 1
                self.figures.other_lines[line[:140]] += 1
                continue
            level = str(event.get("level", "?"))
            self.figures.log_levels[level] += 1
            if level in ("warning", "error", "critical"):
                # A library's message carries its own times (APScheduler's "next run at ..."): group
                # by what comes before them, so one kind of warning is one row.
                self.figures.problems[str(event.get("event")).split(" (trigger:")[0]] += 1


def measure_size(runs: int, args: Any, workdir: Path) -> SizeFigures:
    interval = args.interval or min(30.0, max(5.0, runs / 333))  # ~333 usage calls/s at 10,000 runs
    window = max(2 * interval, args.window_readings * interval)
    figures = SizeFigures(runs=runs, concurrency=args.concurrency, interval=interval, window=window)
    workdir.mkdir(parents=True)
    print(f"\n== {runs} runs: interval {interval:g} s, burn window {window:g} s, concurrency {args.concurrency} ==")
    with simulator_process(runs=0, workdir=workdir, request_log_size=LOG_SIZE) as sim:
        ids = sim.add_runs([bench_run(run_id, index) for index, run_id in enumerate(run_ids(runs))])
        if wrk_binary() is not None:
            figures.wrk = run_wrk(
                sim.base_url,
                ids,
                concurrency=args.concurrency,
                seconds=args.wrk_seconds,
                server_pid=sim.pid,
                workdir=workdir,
            )
        sim.reset_request_counts()
        print(
            f"[{runs}] {'t s':>7} {'RSS MiB':>8} {'CPU s':>7} {'usage calls':>11} {'DB MiB':>8} {'WAL MiB':>8}",
            flush=True,
        )
        daemon = DaemonRun(sim, figures, workdir, args)
        try:
            daemon.first_pass()
            daemon.until(daemon.figures.samples[-1].elapsed + window + interval)
            figures.steady_to = len(figures.samples) - 1
            figures.alone = [scrape(daemon.base, ("identity", "gzip")[n % 2]) for n in range(args.scrapes)]
            # Whole intervals, back to back: both windows hold the same number of poll ticks.
            burst_seconds = interval * max(args.burst_intervals, math.ceil(args.min_window / interval))
            figures.quiet_calls, _ = usage_calls_while(sim, burst_seconds, scrape_base=None, scrapers=0)
            figures.burst_calls, figures.burst = usage_calls_while(
                sim, burst_seconds, scrape_base=daemon.base, scrapers=args.scrapers
            )
            daemon.sample()
            figures.calls = sim.request_counts()
        finally:
            daemon.stop()
    report_size(figures)
    return figures


def scrape_line(scrapes: list[Scrape], encoding: str) -> str:
    chosen = [s for s in scrapes if s.encoding == encoding]
    if not chosen:
        return f"{encoding}: none"
    times = [s.ms for s in chosen]
    return (
        f"{encoding}: median {statistics.median(times):.0f} ms, max {max(times):.0f} ms over {len(chosen)},"
        f" {chosen[-1].wire_bytes / 1024:.0f} KiB on the wire ({chosen[-1].plain_bytes / 1024:.0f} KiB plain)"
    )


def ratio_to(value: float | None, base: float | None) -> float:
    return value / base if value and base else math.nan


def report_size(f: SizeFigures) -> None:
    last, steady, wrk_rate = f.samples[-1], f.steady(), f.wrk.rate if f.wrk else None
    print(f"-- {f.runs} runs --")
    if f.wrk is not None:
        print(f"wrk                 {f.wrk.rate:8.0f} req/s at concurrency {f.concurrency} (errors {f.wrk.errors})")
    if f.first_pass is not None and f.poll_phase:
        print(
            f"first pass          {f.first_pass:8.2f} s from process start; poll phase {f.poll_phase:.2f} s:"
            f" {f.poll_rate:.0f} runs/s = {ratio_to(f.poll_rate, wrk_rate):.2f} x wrk"
        )
    if steady:
        capacity = 1000 / steady[0]
        print(
            f"steady              {steady[0]:8.2f} ms CPU per usage call (all the daemon's work): {capacity:.0f}"
            f" runs/s on one core = {ratio_to(capacity, wrk_rate):.2f} x wrk; {steady[1]:.1f} calls/s"
            f" = {steady[1] * f.interval / f.runs:.2f} of runs / interval"
        )
    full = f.samples[f.steady_to]
    print(f"RSS, window full    {full.rss_kib / 1024:8.1f} MiB (peak by the end {last.hwm_kib / 1024:.1f} MiB)")
    print(f"scrape alone        {scrape_line(f.alone, 'identity')}; {scrape_line(f.alone, 'gzip')}")
    print(f"scrape in burst     {scrape_line(f.burst, 'identity')}; {scrape_line(f.burst, 'gzip')}")
    print(
        f"usage calls         {f.quiet_calls} without scrapes, {f.burst_calls} with {len(f.burst)} scrapes in as long"
        f" (burst / quiet {ratio_to(f.burst_calls, f.quiet_calls):.2f})"
    )
    first = f.samples[f.steady_from]
    minutes = (full.elapsed - first.elapsed) / 60
    growth = (full.db_bytes - first.db_bytes) / 2**20 / minutes if minutes else math.nan
    print(
        f"SQLite              {last.db_bytes / 2**20:8.2f} MiB file ({last.db_bytes / f.runs / 1024:.1f} KiB per run)"
        f" + {last.wal_bytes / 2**20:.2f} MiB WAL; file {growth:+.2f} MiB/min while the window filled"
    )
    print(f"API calls           {json.dumps(f.calls, sort_keys=True)}")
    print(f"daemon              exit {f.exit_code}, log {dict(f.log_levels)}, warnings {dict(f.problems) or 'none'}")
    for line, count in f.other_lines.most_common(3):
        print(f"  {count:>4} x {line}")


def median_ms(scrapes: list[Scrape], encoding: str) -> float:
    times = [s.ms for s in scrapes if s.encoding == encoding]
    return statistics.median(times) if times else math.nan


def wire_kib(scrapes: list[Scrape], encoding: str) -> float:
    sizes = [s.wire_bytes for s in scrapes if s.encoding == encoding]
    return sizes[-1] / 1024 if sizes else math.nan


def print_summary(sizes: list[SizeFigures]) -> None:
    base = sizes[0]
    print("\n== scale summary ==")
    print(
        f"{'runs':>6} {'1st pass s':>10} {'runs/s':>6} {'x wrk':>6} {'ms/poll':>7} {'cap/s':>6} {'x wrk':>6}"
        f" {'RSS MiB':>7} {'KiB/run':>7} {'scrape ms':>9} {'gz ms':>6} {'KiB':>6} {'KiB gz':>6} {'burst ms':>8}"
        f" {'burst/quiet':>11} {'DB MiB':>7}"
    )
    for f in sizes:
        full, steady = f.samples[f.steady_to], f.steady()
        wrk_rate = f.wrk.rate if f.wrk else None
        per_run = (
            (full.rss_kib - base.samples[base.steady_to].rss_kib) / (f.runs - base.runs)
            if f.runs > base.runs
            else math.nan
        )
        capacity = 1000 / steady[0] if steady else math.nan
        burst = median_ms(f.burst, "identity")
        print(
            f"{f.runs:>6} {f.first_pass or math.nan:>10.2f} {f.poll_rate or math.nan:>6.0f}"
            f" {ratio_to(f.poll_rate, wrk_rate):>6.2f} {steady[0] if steady else math.nan:>7.2f} {capacity:>6.0f}"
            f" {ratio_to(capacity, wrk_rate):>6.2f} {full.rss_kib / 1024:>7.1f} {per_run:>7.1f}"
            f" {median_ms(f.alone, 'identity'):>9.0f} {median_ms(f.alone, 'gzip'):>6.0f}"
            f" {wire_kib(f.alone, 'identity'):>6.0f} {wire_kib(f.alone, 'gzip'):>6.0f} {burst:>8.0f}"
            f" {ratio_to(f.burst_calls, f.quiet_calls):>11.2f} {f.samples[-1].db_bytes / 2**20:>7.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, nargs="+", help="sizes (default 100 1000 10000; --quick: 100)")
    parser.add_argument("--quick", action="store_true", help="short windows: a smoke test in well under a minute")
    parser.add_argument("--interval", type=float, help="poll.interval (default runs/333 within 5..30 s; quick 2)")
    parser.add_argument("--window-readings", type=int, help="burn window in intervals (default 30, quick 3)")
    parser.add_argument("--concurrency", type=int, default=16, help="api.max_concurrency and wrk's (default 16)")
    parser.add_argument("--budget", type=float, default=0.0, help="poll.max_requests_per_second (default 0: none)")
    parser.add_argument("--adaptive", action="store_true", help="poll.adaptive on (default off: every interval)")
    parser.add_argument("--wrk-seconds", type=float, help="how long wrk runs (default 5, quick 1)")
    parser.add_argument("--sample-seconds", type=float, help="RSS/CPU/calls/DB sampling (default 10, quick 1)")
    parser.add_argument("--scrapes", type=int, default=6, help="scrapes alone, alternating plain and gzip")
    parser.add_argument("--scrapers", type=int, default=2, help="threads scraping back to back in the burst")
    parser.add_argument(
        "--burst-intervals", type=int, default=3, help="quiet and burst windows, in intervals (>= 10 s)"
    )
    parser.add_argument("--keep", type=Path, help="keep configs, state files and logs in this new directory")
    args = parser.parse_args()
    args.runs = args.runs or ([100] if args.quick else [100, 1000, 10_000])
    args.interval = args.interval or (2.0 if args.quick else None)
    args.window_readings = args.window_readings or (3 if args.quick else 30)
    args.wrk_seconds = args.wrk_seconds or (1.0 if args.quick else 5.0)
    args.sample_seconds = args.sample_seconds or (1.0 if args.quick else 10.0)
    args.min_window = 4.0 if args.quick else 10.0
    if any(not 1 <= n <= 100_000 for n in args.runs) or not 1 <= args.concurrency <= 256:
        parser.error("--runs values 1..100000, --concurrency 1..256")
    if not 2 <= args.window_readings <= 1000 or not 1 <= args.scrapers <= 16 or not 0 <= args.scrapes <= 1000:
        parser.error("--window-readings 2..1000, --scrapers 1..16, --scrapes 0..1000")
    if (args.interval is not None and not 1 <= args.interval <= 300) or not 0.2 <= args.sample_seconds <= 300:
        parser.error("--interval 1..300, --sample-seconds 0.2..300")

    print(f"scale: sizes {args.runs}, concurrency {args.concurrency}, read budget {args.budget or 'none'}")
    print(f"load average before: {load_average()}; cores: {os.cpu_count()}; {sniffio_note()}; {wrk_note()}")
    if args.keep is not None:
        args.keep.mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        tmp = args.keep if args.keep is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        sizes = [measure_size(runs, args, tmp / f"runs-{runs}") for runs in sorted(args.runs)]
    print_summary(sizes)
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
