"""Soak: the real daemon (`python -m monitor run --config ...`) watching simulated runs; its memory, CPU and API calls.

    .venv/bin/python bench/daemon_soak.py                      # the issue's figure: 100 runs x 5 min x 5 s
    .venv/bin/python bench/daemon_soak.py --runs 20 --minutes 1 --baseline-minutes 0.5   # a quick look

Two soaks, one after the other, each with its own simulator (`python -m monitor simulate`, separate process)
and its own daemon process on 127.0.0.1: a BASELINE watching `--baseline-runs` (10) runs for
`--baseline-minutes` (1), then the MAIN one watching `--runs` (100) runs for `--minutes` (5). Runs are found
by discovery from the wallet (as in production; `watch.wallet_rows` is set so every run is in the rows
read), polled every `--interval` (5 s), the wallet every 60 s, with three rules (a cost cap with warning
tiers, a burn-rate cap, a wallet floor) that no run breaches, and no notifier.

Every `--sample-seconds` (10) the daemon's RSS and CPU seconds are read from /proc/PID/status and
/proc/PID/stat. The window starts when /readyz first answers 200 (the first pass is done). Printed: RSS
at start / end / peak, CPU seconds in the window (per run poll and as % of one core), API calls counted
by the simulator, memory per watched run (main minus baseline RSS at the same elapsed time, divided by the
difference in runs), /metrics scrape time at the end, and the daemon's warnings. No asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from harness import (
    SimulatorProcess,
    count_of,
    cpu_seconds,
    free_port,
    load_average,
    memory_kib,
    simulator_process,
    sniffio_note,
    start_daemon,
)

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
SCRAPES = 10


@dataclass
class Sample:
    elapsed: float
    rss_kib: int
    hwm_kib: int
    cpu_seconds: float
    usage_calls: int


@dataclass
class Soak:
    runs: int
    minutes: float
    interval: float
    samples: list[Sample] = field(default_factory=list)
    counts_at_ready: dict[str, dict[str, int]] = field(default_factory=dict)
    counts_at_end: dict[str, dict[str, int]] = field(default_factory=dict)
    ready_after: float = 0.0
    scrape_ms: list[float] = field(default_factory=list)
    scrape_bytes: int = 0
    exit_code: int | None = None
    log_levels: Counter[str] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)
    # Lines that are not structlog JSON: stdlib logging from libraries (APScheduler, aiohttp), tracebacks.
    other_lines: Counter[str] = field(default_factory=Counter)

    def window_calls(self, endpoint: str) -> int:
        return count_of(self.counts_at_end, endpoint) - count_of(self.counts_at_ready, endpoint)

    @property
    def cpu_in_window(self) -> float:
        return self.samples[-1].cpu_seconds - self.samples[0].cpu_seconds

    @property
    def seconds(self) -> float:
        return self.samples[-1].elapsed - self.samples[0].elapsed

    def rss_near(self, elapsed: float) -> int:
        return min(self.samples, key=lambda s: abs(s.elapsed - elapsed)).rss_kib


def daemon_config(sim: SimulatorProcess, *, runs: int, interval: float, port: int, state: Path) -> dict[str, Any]:
    return {
        "api": {"base_url": sim.base_url, "timeout": "10s", "max_concurrency": 16},
        "watch": {"discover": True, "wallet_rows": runs + 10},
        # Every run every interval: these figures are the cost per read at a known rate, so polling by
        # time to limit (which reads runs far from their caps rarely) and the read budget are off.
        "poll": {
            "interval": interval,
            "min_interval": min(5.0, interval),
            "wallet_interval": 60,
            "adaptive": False,
            "max_requests_per_second": 0,
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


def wait_ready(proc: subprocess.Popen[bytes], base: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the daemon was not ready within {READY_TIMEOUT:.0f}s:\n{log_path.read_text()[-3000:]}")


def scrape(base: str, soak: Soak) -> None:
    with httpx.Client(timeout=10) as http:
        for _ in range(SCRAPES):
            started = time.perf_counter()
            response = http.get(f"{base}/metrics")
            soak.scrape_ms.append(1000 * (time.perf_counter() - started))
            soak.scrape_bytes = len(response.content)


def read_log(log_path: Path, soak: Soak) -> None:
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            soak.log_levels["(not json)"] += 1
            # Strip the job's next-run timestamp etc. so repeats of one message count together.
            soak.other_lines[line.split(" (trigger")[0][:160]] += 1
            continue
        level = str(event.get("level", "?"))
        soak.log_levels[level] += 1
        if level in ("warning", "error", "critical"):
            soak.problems[str(event.get("event"))] += 1


def run_soak(*, label: str, runs: int, minutes: float, interval: float, sample_seconds: float, workdir: Path) -> Soak:
    workdir.mkdir()
    soak = Soak(runs=runs, minutes=minutes, interval=interval)
    with simulator_process(runs=runs, workdir=workdir) as sim:
        port = free_port()
        config = daemon_config(sim, runs=runs, interval=interval, port=port, state=workdir / "state.db")
        base = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        proc, log_path = start_daemon(config, workdir=workdir)
        try:
            wait_ready(proc, base, log_path)
            ready = time.monotonic()
            soak.ready_after = ready - started
            soak.counts_at_ready = sim.request_counts()
            print(f"[{label}] {runs} runs, daemon pid {proc.pid}, ready after {soak.ready_after:.1f} s", flush=True)
            print(f"[{label}] {'t s':>6} {'RSS MiB':>8} {'CPU s':>7} {'usage calls':>11}", flush=True)
            deadline = ready + minutes * 60
            samples_left = int(minutes * 60 / sample_seconds) + 2  # bounds the loop whatever the clock does
            while samples_left > 0:
                samples_left -= 1
                now = time.monotonic()
                memory = memory_kib(proc.pid)
                sample = Sample(
                    elapsed=now - ready,
                    rss_kib=memory["VmRSS"],
                    hwm_kib=memory["VmHWM"],
                    cpu_seconds=cpu_seconds(proc.pid),
                    usage_calls=count_of(sim.request_counts(), "usage"),
                )
                soak.samples.append(sample)
                print(
                    f"[{label}] {sample.elapsed:>6.0f} {sample.rss_kib / 1024:>8.1f} {sample.cpu_seconds:>7.2f}"
                    f" {sample.usage_calls:>11}",
                    flush=True,
                )
                if now >= deadline or proc.poll() is not None:
                    break
                time.sleep(max(0.0, min(sample_seconds, deadline - time.monotonic())))
            soak.counts_at_end = sim.request_counts()
            scrape(base, soak)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    soak.exit_code = proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            else:
                soak.exit_code = proc.returncode
        read_log(log_path, soak)
    return soak


def report(main: Soak, baseline: Soak | None) -> None:
    first, last = main.samples[0], main.samples[-1]
    peak_rss = max(s.hwm_kib for s in main.samples)
    usage = main.window_calls("usage")
    wallet = main.window_calls("wallet")
    ticks = main.seconds / main.interval
    print(f"\n== daemon soak: {main.runs} runs, {main.seconds / 60:.1f} min window, poll every {main.interval:g} s ==")
    print(f"RSS at start (ready)   {first.rss_kib / 1024:8.1f} MiB")
    growth = (last.rss_kib - first.rss_kib) / 1024
    print(f"RSS at end             {last.rss_kib / 1024:8.1f} MiB   (growth {growth:+.1f} MiB)")
    print(f"RSS peak (VmHWM)       {peak_rss / 1024:8.1f} MiB")
    core_share = 100 * main.cpu_in_window / main.seconds
    print(f"CPU in window          {main.cpu_in_window:8.2f} s   ({core_share:.1f} % of one core)")
    if usage:
        print(f"CPU per run poll       {1000 * main.cpu_in_window / usage:8.2f} ms   (all daemon work / usage calls)")
    per_tick = 1000 * main.cpu_in_window / ticks
    print(f"CPU per poll tick      {per_tick:8.1f} ms   ({ticks:.0f} ticks of {main.interval:g} s)")
    expected = main.runs * main.seconds / main.interval
    print(
        f"API calls in window    usage {usage}, wallet {wallet}   (expected usage ~{expected:.0f} ="
        f" runs x window / interval; got {usage / expected:.2f} of it)"
    )
    total = sum(count_of(main.counts_at_end, ep) for ep in main.counts_at_end)
    print(f"API calls in total     {total} incl. start-up: {json.dumps(main.counts_at_end, sort_keys=True)}")
    print(
        f"/metrics scrape        median {statistics.median(main.scrape_ms):.1f} ms, max {max(main.scrape_ms):.1f} ms"
        f" over {len(main.scrape_ms)} scrapes, {main.scrape_bytes / 1024:.1f} KiB"
    )
    if baseline is not None and baseline.samples and main.runs != baseline.runs:
        at = baseline.samples[-1].elapsed
        per_run = (main.rss_near(at) - baseline.samples[-1].rss_kib) / (main.runs - baseline.runs)
        per_run_end = (last.rss_kib - baseline.samples[-1].rss_kib) / (main.runs - baseline.runs)
        print(
            f"memory per watched run {per_run:8.1f} KiB   (main RSS at t={at:.0f} s minus {baseline.runs}-run baseline"
            f" RSS at its end, / {main.runs - baseline.runs} runs)"
        )
        print(f"  same using main's end {per_run_end:7.1f} KiB   (includes {main.seconds - at:.0f} s more growth)")
        base_usage = baseline.window_calls("usage")
        if base_usage:
            print(
                f"baseline               {baseline.runs} runs, {baseline.seconds / 60:.1f} min: RSS"
                f" {baseline.samples[0].rss_kib / 1024:.1f} -> {baseline.samples[-1].rss_kib / 1024:.1f} MiB,"
                f" CPU {baseline.cpu_in_window:.2f} s, {1000 * baseline.cpu_in_window / base_usage:.2f} ms per run poll"
                f" (main / baseline: {(main.cpu_in_window / usage) / (baseline.cpu_in_window / base_usage):.2f})"
            )
    for soak, name in ((baseline, "baseline"), (main, "main")):
        if soak is None:
            continue
        print(
            f"{name} daemon: exit code {soak.exit_code}, ready after {soak.ready_after:.1f} s, log lines"
            f" {dict(soak.log_levels)}, warnings/errors {dict(soak.problems) or 'none'}"
        )
        for line, count in soak.other_lines.most_common(5):
            print(f"  {count:>4} x {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100, help="watched runs in the main soak (default 100)")
    parser.add_argument("--minutes", type=float, default=5.0, help="main soak window (default 5)")
    parser.add_argument("--interval", type=float, default=5.0, help="poll.interval in seconds (default 5)")
    parser.add_argument("--baseline-runs", type=int, default=10, help="runs in the baseline soak (default 10)")
    parser.add_argument("--baseline-minutes", type=float, default=1.0, help="baseline window; 0 skips it")
    parser.add_argument("--keep", type=Path, help="keep configs, state and logs in this new directory")
    parser.add_argument("--sample-seconds", type=float, default=10.0, help="how often RSS and CPU are read")
    args = parser.parse_args()
    if not 1 <= args.runs <= 5000 or not 1 <= args.baseline_runs <= 5000:
        parser.error("--runs and --baseline-runs 1..5000")
    if not 0 < args.minutes <= 120 or not 0 <= args.baseline_minutes <= 120:
        parser.error("--minutes 0..120 (above 0), --baseline-minutes 0..120")
    if not 1 <= args.interval <= 300 or not 1 <= args.sample_seconds <= 300:
        parser.error("--interval and --sample-seconds 1..300")

    print(
        f"daemon_soak: main {args.runs} runs x {args.minutes:g} min, baseline {args.baseline_runs} runs x"
        f" {args.baseline_minutes:g} min, poll every {args.interval:g} s, samples every {args.sample_seconds:g} s"
    )
    print(f"load average before: {load_average()}; cores: {os.cpu_count()}; {sniffio_note()}")
    if args.keep is not None:
        args.keep.mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        tmp = str(args.keep) if args.keep is not None else stack.enter_context(tempfile.TemporaryDirectory())
        baseline = None
        if args.baseline_minutes > 0:
            baseline = run_soak(
                label="baseline",
                runs=args.baseline_runs,
                minutes=args.baseline_minutes,
                interval=args.interval,
                sample_seconds=args.sample_seconds,
                workdir=Path(tmp) / "baseline",
            )
        main_soak = run_soak(
            label="main",
            runs=args.runs,
            minutes=args.minutes,
            interval=args.interval,
            sample_seconds=args.sample_seconds,
            workdir=Path(tmp) / "main",
        )
        report(main_soak, baseline)
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
