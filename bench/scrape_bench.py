"""How long a /metrics scrape takes to render (generate_latest) as the number of watched runs grows.

    .venv/bin/python bench/scrape_bench.py [--repeats 30]

Each state has N runs with two run rules each (a cost cap with warning tiers and a burn-rate
rule), a wallet with a floor rule, and some request statistics. Prints the median render time in
ms, the ratio against an empty state measured in the same process (so a slow machine shows up
in both), the body size, and the gzip size Prometheus would actually receive. No asserts.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import time

from prometheus_client import generate_latest

from monitor.exporter.collector import build_registry
from monitor.exporter.live import RunHealth, RuntimeState
from monitor.records import Evaluation
from monitor.snapshots import RunSnapshot, WalletSnapshot

T0 = 1_800_000_000.0
RUN_COUNTS = (10, 100, 1_000)


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


def build_state(run_count: int) -> RuntimeState:
    runtime = RuntimeState(started_at=T0 - 3600, config_loaded=True, last_poll_success_at=T0, heartbeat_at=T0)
    for index in range(run_count):
        run_id = f"run-{index:06d}"
        tokens = 1_000_000 * (index + 1)
        runtime.runs[run_id] = RunSnapshot(
            run_id=run_id,
            taken_at=T0,
            run_name=f"exp-{index}-qwen-grpo-lr3e-6",
            base_model="Qwen/Qwen3.5-9B",
            status="RUNNING",
            training_tokens=tokens,
            inference_input_tokens=2 * tokens,
            inference_output_tokens=tokens // 2,
            training_cost_usd=tokens * 0.6e-6,
            inference_cost_usd=tokens * 0.7e-6,
            total_tokens=3 * tokens + tokens // 2,
            total_cost_usd=tokens * 1.3e-6,
            training_price_per_mtok=0.6,
            inference_input_price_per_mtok=0.2,
            inference_output_price_per_mtok=0.6,
        )
        runtime.health[run_id] = RunHealth(last_success_at=T0)
        runtime.burn_rates[run_id] = 1.5
        for item in (
            _evaluation(rule="run-cap", subject=run_id, metric="total_cost_usd", value=tokens * 1.3e-6, limit=50.0),
            _evaluation(rule="burn", subject=run_id, metric="burn_rate_usd_per_hour", value=1.5, limit=10.0),
        ):
            runtime.evaluations[(item.subject, item.rule)] = item
    runtime.wallet = WalletSnapshot(wallet_id="wallet-1", taken_at=T0, balance_usd=1_000.0)
    runtime.wallet_runway_seconds = 86_400.0
    for endpoint in ("usage", "wallet"):
        for latency in (0.01, 0.02, 0.2):
            runtime.requests.observe(endpoint, "200", latency)
    return runtime


def median_render_seconds(runtime: RuntimeState, *, repeats: int) -> tuple[float, bytes]:
    registry = build_registry(runtime, include_process=False)
    body = generate_latest(registry)  # warm-up
    timings: list[float] = []
    for _ in range(repeats):
        started = time.perf_counter()
        body = generate_latest(registry)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings), body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=30, help="renders per size (median reported)")
    args = parser.parse_args()

    baseline, _ = median_render_seconds(RuntimeState(), repeats=args.repeats)
    print(f"empty-state baseline: {baseline * 1000:.3f} ms (median of {args.repeats})")
    print(f"{'runs':>6} {'median ms':>10} {'x baseline':>11} {'ms/run':>8} {'body KiB':>9} {'gzip KiB':>9}")
    for run_count in RUN_COUNTS:
        seconds, body = median_render_seconds(build_state(run_count), repeats=args.repeats)
        print(
            f"{run_count:>6} {seconds * 1000:>10.2f} {seconds / baseline:>11.1f} {seconds * 1000 / run_count:>8.3f}"
            f" {len(body) / 1024:>9.1f} {len(gzip.compress(body)) / 1024:>9.1f}"
        )


if __name__ == "__main__":
    main()
