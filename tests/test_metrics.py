"""The Prometheus exposition of a hand-built RuntimeState: golden file, promtool, hostile labels."""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from monitor import __version__
from monitor.clock import ManualClock
from monitor.exporter.collector import MAX_NAME_LABEL_CHARS, build_registry, label_value
from monitor.exporter.live import RuntimeState
from monitor.exporter.scrape_cache import ScrapeCache
from monitor.records import Evaluation
from monitor.snapshots import RunSnapshot, WalletSnapshot

GOLDEN = Path(__file__).parent / "golden" / "metrics.txt"
T0 = 1_800_000_000.0
# Quotes, a backslash, a newline, an emoji, and 1 KB more: what a user may call a run.
HOSTILE_NAME = 'evil "quoted" \\ back\nslash 🚀 ' + "x" * 1024
HOSTILE_NAME_LABEL = ('evil "quoted" \\ back slash 🚀 ' + "x" * 1024)[:MAX_NAME_LABEL_CHARS]


def evaluation(
    *,
    rule: str,
    subject: str,
    metric: str,
    value: float,
    limit: float,
    tier: int,
    tier_count: int,
    utilisation: float | None,
    scope: str = "run",
    time_to_limit_seconds: float | None = None,
) -> Evaluation:
    return Evaluation(
        rule=rule,
        scope="run" if scope == "run" else "wallet",
        subject=subject,
        subject_name=subject,
        metric=metric,
        value=value,
        limit=limit,
        breaches_below=metric == "balance_usd",
        tier=tier,
        tier_count=tier_count,
        tier_label="breached" if tier == tier_count else "ok",
        tier_threshold=limit,
        severity="critical",
        action="alert",
        utilisation=utilisation,
        clear=tier == 0,
        taken_at=T0 - 10,
        time_to_limit_seconds=time_to_limit_seconds,
    )


def sample_runtime() -> RuntimeState:
    """Two runs (one with a hostile name, failing its last two reads), a wallet, evaluations, request
    stats, alerts, deletions. Runs change through the runtime's methods, as in the daemon: the scrape
    cache follows only those."""
    runtime = RuntimeState(started_at=T0 - 3600, config_loaded=True)
    run_a1 = RunSnapshot(
        run_id="run-a1",
        taken_at=T0 - 10,
        run_name="exp-alpha",
        base_model="Qwen/Qwen3.5-9B",
        status="RUNNING",
        training_tokens=10_000_000,
        inference_input_tokens=20_000_000,
        inference_output_tokens=5_000_000,
        training_cost_usd=6.0,
        inference_cost_usd=7.0,  # 20 Mtok x $0.20 in + 5 Mtok x $0.60 out
        total_tokens=35_000_000,
        total_cost_usd=13.0,
        training_price_per_mtok=0.60,
        inference_input_price_per_mtok=0.20,
        inference_output_price_per_mtok=0.60,
        record_count=12,
    )
    run_b2 = RunSnapshot(
        run_id="run-b2",
        taken_at=T0 - 30,
        run_name=HOSTILE_NAME,
        base_model=None,
        status="PAUSED",
        training_tokens=1_000_000,
        inference_input_tokens=3_000_000,
        inference_output_tokens=1_000_000,
        training_cost_usd=0.5,
        inference_cost_usd=2.0,  # no prices: split by tokens, 1.5 in / 0.5 out
        total_tokens=5_000_000,
        total_cost_usd=2.5,
    )
    runtime.run_read("run-a1", run_a1, mono=T0 - 10)
    runtime.run_read("run-b2", run_b2, mono=T0 - 30)
    for _ in range(2):
        runtime.run_read_failed("run-b2", kind="timeout", error="timeout", at=T0 - 20, mono=T0 - 20)
    runtime.burn_rate_measured("run-a1", 4.5)
    for item in (
        evaluation(
            rule="run-cap",
            subject="run-a1",
            metric="total_cost_usd",
            value=13.0,
            limit=50.0,
            tier=0,
            tier_count=3,
            utilisation=0.26,
            time_to_limit_seconds=29_600.0,
        ),
        evaluation(
            rule="burn-fast",
            subject="run-a1",
            metric="burn_rate_usd_per_hour",
            value=4.5,
            limit=4.0,
            tier=1,
            tier_count=1,
            utilisation=1.125,
        ),
        evaluation(
            rule="run-cap",
            subject="run-b2",
            metric="total_cost_usd",
            value=2.5,
            limit=50.0,
            tier=0,
            tier_count=3,
            utilisation=0.05,
        ),
        evaluation(
            rule="training-cap",
            subject="run-b2",
            metric="training_cost_usd",
            value=0.5,
            limit=0.4,
            tier=3,
            tier_count=3,
            utilisation=1.25,
        ),
        evaluation(
            rule="wallet-floor",
            subject="wallet-1",
            scope="wallet",
            metric="balance_usd",
            value=250.0,
            limit=100.0,
            tier=0,
            tier_count=2,
            utilisation=0.4,
        ),
    ):
        runtime.evaluated(item)
    runtime.wallet = WalletSnapshot(wallet_id="wallet-1", taken_at=T0 - 20, balance_usd=250.0)
    runtime.wallet_runway_seconds = 200_000.0
    runtime.wallet_spend_usd["daily-spend"] = 42.25
    runtime.alerts_sent[("burn-fast", "warning")] += 1
    runtime.alerts_sent[("training-cap", "critical")] += 2
    runtime.deletions[("training-cap", "would_delete")] += 1
    runtime.invalid_responses["usage"] += 1
    runtime.notifications_failed["slack"] += 3
    # Binary-exact latencies so the histogram sum is exact: 2^-8 s, 2^-6 s, 0.25 s (on a bucket edge), 40 s.
    runtime.requests.observe("usage", "200", 0.00390625)
    runtime.requests.observe("usage", "200", 0.015625)
    runtime.requests.observe("usage", "503", 0.25)
    runtime.requests.observe("wallet", "200", 40.0)
    runtime.requests.observe_retry("usage")
    runtime.last_poll_success_at = T0 - 10
    runtime.last_wallet_success_at = T0 - 20
    runtime.heartbeat_at = T0 - 5
    runtime.jobs_scheduled(["poll_runs", "enforce"])
    runtime.job_skipped("enforce")
    return runtime


def render(runtime: RuntimeState) -> str:
    """The exposition as a fresh render gives it, checked equal to what the server's cache answers."""
    registry = build_registry(runtime, include_process=False)
    text = generate_latest(registry).decode("utf-8")
    assert asyncio.run(ScrapeCache(registry).scrape()).body.decode("utf-8") == text
    return text


def samples_of(text: str) -> dict[str, list[Sample]]:
    by_name: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            by_name.setdefault(sample.name, []).append(sample)
    return by_name


def value_of(samples: dict[str, list[Sample]], name: str, **labels: str) -> float:
    matches = [s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matches) == 1, f"{name}{labels}: {matches}"
    return matches[0]


def test_exposition_matches_golden_file() -> None:
    text = render(sample_runtime())
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8"), "exposition changed; rerun with UPDATE_GOLDEN=1 and review"


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool missing: install the Debian package `prometheus`"
)
def test_promtool_check_metrics_is_silent() -> None:
    # The production registry, process collector included.
    exposition = generate_latest(build_registry(sample_runtime()))
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=exposition, capture_output=True, timeout=30, check=False
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_run_costs_and_tokens_by_usage_type() -> None:
    samples = samples_of(render(sample_runtime()))
    cost = "prime_run_cost_usd_total"
    assert value_of(samples, cost, run_id="run-a1", usage_type="training") == 6.0
    assert value_of(samples, cost, run_id="run-a1", usage_type="inference_input") == pytest.approx(4.0)
    assert value_of(samples, cost, run_id="run-a1", usage_type="inference_output") == pytest.approx(3.0)
    assert value_of(samples, cost, run_id="run-b2", usage_type="inference_input") == 1.5
    assert value_of(samples, cost, run_id="run-b2", usage_type="inference_output") == 0.5
    assert value_of(samples, "prime_run_tokens_total", run_id="run-a1", usage_type="inference_input") == 20_000_000
    assert value_of(samples, "prime_run_total_cost_usd", run_id="run-b2") == 2.5


def test_each_run_says_how_its_last_read_ended() -> None:
    samples = samples_of(render(sample_runtime()))
    states = {s.labels["run_id"]: s.labels["state"] for s in samples["prime_run_read_state"]}
    assert states == {"run-a1": "ok", "run-b2": "timeout"}


def test_series_nobody_queries_are_not_exported() -> None:
    # Per-run families the dashboard, the rules and the README do not use: prices (constant per
    # model), the reading's timestamp and the failure count (prime_run_read_state says which runs fail).
    text = render(sample_runtime())
    for dropped in (
        "prime_run_price_usd_per_mtok",
        "prime_run_last_reading_timestamp_seconds",
        "prime_run_poll_consecutive_failures",
    ):
        assert dropped not in text


def test_budgets_only_for_run_cost_rules() -> None:
    samples = samples_of(render(sample_runtime()))
    budgets = {(s.labels["run_id"], s.labels["rule"]): s.value for s in samples["prime_run_budget_usd"]}
    assert budgets == {("run-a1", "run-cap"): 50.0, ("run-b2", "run-cap"): 50.0, ("run-b2", "training-cap"): 0.4}
    breached = {(s.labels["subject"], s.labels["rule"]) for s in samples["prime_rule_breached"] if s.value == 1}
    assert breached == {("run-a1", "burn-fast"), ("run-b2", "training-cap")}
    assert value_of(samples, "prime_run_time_to_budget_seconds", run_id="run-a1", rule="run-cap") == 29_600.0
    assert len(samples["prime_run_time_to_budget_seconds"]) == 1


def test_hostile_run_name_survives_and_is_truncated() -> None:
    runtime = sample_runtime()
    # A lone surrogate (valid in JSON, unencodable in UTF-8) and control characters.
    hostile = RunSnapshot(run_id="run-c3", taken_at=T0, run_name="bad \ud800 nul\x00 cr\r tab\t end")
    runtime.run_read("run-c3", hostile, mono=T0)
    samples = samples_of(render(runtime))
    names = {s.labels["run_id"]: s.labels["run_name"] for s in samples["prime_run_info"]}
    assert names == {"run-a1": "exp-alpha", "run-b2": HOSTILE_NAME_LABEL, "run-c3": "bad \ufffd nul  cr  tab  end"}
    assert len(names["run-b2"]) == MAX_NAME_LABEL_CHARS
    # The hostile run's other series are intact.
    assert value_of(samples, "prime_run_cost_usd_total", run_id="run-b2", usage_type="training") == 0.5


def test_label_value_rules() -> None:
    assert label_value(None) == ""
    assert label_value("plain-id") == "plain-id"
    assert label_value("é" * 300, max_chars=200) == "é" * 200
    assert label_value("a\nb\x7fc") == "a b c"
    assert label_value("\udcff") == "\ufffd"


def test_latency_histogram_is_cumulative_with_inf_equal_to_count() -> None:
    samples = samples_of(render(sample_runtime()))
    usage = {
        s.labels["le"]: s.value
        for s in samples["prime_monitor_api_request_duration_seconds_bucket"]
        if s.labels["endpoint"] == "usage"
    }
    # 0.0039 s, 0.0156 s and 0.25 s (a bucket edge is inclusive).
    assert (usage["0.005"], usage["0.01"], usage["0.025"], usage["0.1"], usage["0.25"], usage["30.0"]) == (
        1,
        1,
        2,
        2,
        3,
        3,
    )
    assert usage["+Inf"] == 3
    counts = list(usage.values())
    assert counts == sorted(counts)
    wallet = {
        s.labels["le"]: s.value
        for s in samples["prime_monitor_api_request_duration_seconds_bucket"]
        if s.labels["endpoint"] == "wallet"
    }
    assert wallet["30.0"] == 0 and wallet["+Inf"] == 1  # 40 s: slower than every bound
    assert value_of(samples, "prime_monitor_api_request_duration_seconds_count", endpoint="usage") == 3
    assert value_of(samples, "prime_monitor_api_request_duration_seconds_sum", endpoint="usage") == 0.26953125


def test_empty_runtime_before_the_first_poll() -> None:
    samples = samples_of(render(RuntimeState()))
    assert value_of(samples, "prime_monitor_last_poll_success_timestamp_seconds") == 0.0
    assert value_of(samples, "prime_monitor_ready") == 0.0
    assert value_of(samples, "prime_monitor_build_info", version=__version__) == 1.0
    assert "prime_run_cost_usd_total" not in samples
    assert "prime_wallet_balance_usd" not in samples
    assert "prime_wallet_runway_seconds" not in samples


def test_runway_infinite_is_exported_and_unknown_is_omitted() -> None:
    runtime = sample_runtime()
    runtime.wallet_runway_seconds = math.inf
    assert 'prime_wallet_runway_seconds{wallet_id="wallet-1"} +Inf' in render(runtime)
    runtime.wallet_runway_seconds = None
    assert "prime_wallet_runway_seconds{" not in render(runtime)
    runtime.wallet_runway_seconds = math.nan
    assert "prime_wallet_runway_seconds{" not in render(runtime)


async def test_each_scrape_renders_the_latest_state() -> None:
    runtime = sample_runtime()
    registry = build_registry(runtime, include_process=False)
    clock = ManualClock(T0)
    cache = ScrapeCache(registry, clock=clock)
    first = samples_of((await cache.scrape()).body.decode())
    assert value_of(first, "prime_run_total_cost_usd", run_id="run-a1") == 13.0
    runtime.run_read("run-a1", RunSnapshot(run_id="run-a1", taken_at=T0, total_cost_usd=20.0), mono=T0)
    runtime.forget_run("run-b2")
    clock.advance(15)  # Prometheus' next scrape
    second = samples_of((await cache.scrape()).body.decode())
    assert value_of(second, "prime_run_total_cost_usd", run_id="run-a1") == 20.0
    # A run the daemon stopped watching leaves no series behind.
    assert {s.labels["run_id"] for s in second["prime_run_info"]} == {"run-a1"}
    assert {s.labels["subject"] for s in second["prime_rule_tier"]} == {"run-a1", "wallet-1"}


def test_default_registry_includes_process_metrics() -> None:
    text = generate_latest(build_registry(RuntimeState())).decode()
    if Path("/proc/self/stat").exists():
        assert "process_resident_memory_bytes" in text
    assert "prime_monitor_build_info" in text


def test_every_family_in_the_golden_file_is_documented_in_the_readme() -> None:
    """A user reads the README's table to build a query: no family may be missing from it."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    families = {line.split()[2] for line in GOLDEN.read_text().splitlines() if line.startswith("# TYPE ")}
    missing = sorted(f for f in families if f"`{f}" not in readme and f"`{f.removesuffix('_total')}" not in readme)
    assert not missing, f"families missing from README 'Metrics and endpoints': {missing}"
