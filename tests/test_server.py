"""The HTTP endpoints over real loopback sockets, and a real Prometheus scraping them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from monitor.clock import ManualClock
from monitor.config.settings import Settings
from monitor.exporter.collector import build_registry
from monitor.exporter.health import MonitorHealth
from monitor.exporter.live import RuntimeState
from monitor.exporter.server import MonitorHttpServer
from monitor.snapshots import WalletSnapshot
from tests.support.prometheus import PrometheusFactory
from tests.test_metrics import HOSTILE_NAME_LABEL, T0, sample_runtime

OPENMETRICS_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"


def health_of(runtime: RuntimeState, clock: ManualClock, *, active: list[str] | None = None) -> MonitorHealth:
    settings = Settings()
    return MonitorHealth(
        settings=lambda: settings,
        runtime=runtime,
        clock=clock,
        active_runs=lambda: list(active or []),
        heartbeat_max_age=120.0,
    )


async def started(runtime: RuntimeState, *, clock: ManualClock | None = None) -> MonitorHttpServer:
    clock = clock or ManualClock(T0)
    server = MonitorHttpServer(
        registry=build_registry(runtime, clock=clock),
        health=health_of(runtime, clock),
        host="127.0.0.1",
        port=0,
    )
    await server.start()
    return server


@pytest.fixture
async def served() -> AsyncIterator[tuple[MonitorHttpServer, RuntimeState, ManualClock]]:
    clock = ManualClock(T0)
    runtime = RuntimeState(started_at=clock.now(), started_mono=clock.monotonic())
    server = await started(runtime, clock=clock)
    yield server, runtime, clock
    await server.stop()


async def get(server: MonitorHttpServer, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=5.0) as client:
        return await client.get(path, headers=headers)


async def test_start_binds_a_free_port_and_stop_releases_it() -> None:
    server = await started(RuntimeState())
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert (await get(server, "/")).text.splitlines()[1].startswith("/metrics")
    await server.stop()
    with pytest.raises(httpx.ConnectError):
        await get(server, "/")
    await server.stop()  # idempotent


async def test_metrics_text_format_by_default() -> None:
    server = await started(sample_runtime())
    try:
        response = await get(server, "/metrics")
    finally:
        await server.stop()
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    costs = {(s.labels["run_id"], s.labels["usage_type"]): s.value for s in families["prime_run_cost_usd"].samples}
    assert costs[("run-a1", "training")] == 6.0
    assert "process_resident_memory_bytes" in families or "process_cpu_seconds" in families


async def test_metrics_openmetrics_and_gzip_when_asked() -> None:
    server = await started(sample_runtime())
    try:
        response = await get(server, "/metrics", {"Accept": OPENMETRICS_ACCEPT, "Accept-Encoding": "gzip"})
    finally:
        await server.stop()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert response.headers["content-encoding"] == "gzip"
    assert response.text.endswith("# EOF\n")
    families = {family.name: family for family in openmetrics_families(response.text)}  # type: ignore[no-untyped-call]
    names = {s.labels["run_id"]: s.labels["run_name"] for s in families["prime_run_info"].samples}
    assert names["run-b2"] == HOSTILE_NAME_LABEL


async def test_healthz_follows_the_heartbeat(served: tuple[MonitorHttpServer, RuntimeState, ManualClock]) -> None:
    server, runtime, clock = served
    # Just started, no job has run yet: still healthy during the start-up grace.
    response = await get(server, "/healthz")
    assert (response.status_code, response.text) == (200, "ok\n")
    clock.advance(121)
    response = await get(server, "/healthz")
    assert response.status_code == 503
    assert "no scheduler heartbeat since start-up 121s ago" in response.text
    runtime.beat(at=clock.now(), mono=clock.monotonic())
    assert (await get(server, "/healthz")).status_code == 200
    clock.advance(120)
    assert (await get(server, "/healthz")).status_code == 200  # exactly at the limit still counts
    clock.advance(30)
    response = await get(server, "/healthz")
    assert response.status_code == 503
    assert "scheduler heartbeat is 150s old (max 120s)" in response.text


async def test_healthz_fails_when_every_job_has_failed_too_long(
    served: tuple[MonitorHttpServer, RuntimeState, ManualClock],
) -> None:
    server, runtime, clock = served
    for job in ("poll_runs", "poll_wallet", "housekeeping"):
        runtime.job_finished(job, ok=True, mono=clock.monotonic())
    clock.advance(5)
    for job in ("poll_runs", "poll_wallet"):
        runtime.job_finished(job, ok=False, mono=clock.monotonic())
    runtime.beat(at=clock.now(), mono=clock.monotonic())
    clock.advance(700)
    runtime.beat(at=clock.now(), mono=clock.monotonic())
    assert (await get(server, "/healthz")).status_code == 200, "one job still succeeds: a restart would not help"
    runtime.job_finished("housekeeping", ok=False, mono=clock.monotonic())
    clock.advance(601)
    runtime.beat(at=clock.now(), mono=clock.monotonic())
    response = await get(server, "/healthz")
    assert response.status_code == 503
    assert "every job has failed for" in response.text
    runtime.job_finished("poll_wallet", ok=True, mono=clock.monotonic())
    assert (await get(server, "/healthz")).status_code == 200


async def test_readyz_needs_config_and_fresh_data(
    served: tuple[MonitorHttpServer, RuntimeState, ManualClock],
) -> None:
    server, runtime, clock = served
    response = await get(server, "/readyz")
    assert response.status_code == 503
    assert response.text == "not ready: config not loaded; no read has succeeded yet\n"
    runtime.config_loaded = True
    response = await get(server, "/readyz")
    assert (response.status_code, response.text) == (503, "not ready: no read has succeeded yet\n")
    runtime.wallet_read(WalletSnapshot(wallet_id="w", taken_at=clock.now(), balance_usd=10.0), mono=clock.monotonic())
    response = await get(server, "/readyz")
    assert (response.status_code, response.text) == (200, "ready\n")
    # Defaults: no runs watched, so the wallet interval (60 s) x health.stale_intervals (3) is the limit.
    clock.advance(181)
    response = await get(server, "/readyz")
    assert response.status_code == 503
    assert "data stale" in response.text and "limit 3m" in response.text


async def test_readyz_says_when_the_key_is_refused_and_store_fails(
    served: tuple[MonitorHttpServer, RuntimeState, ManualClock],
) -> None:
    server, runtime, clock = served
    runtime.config_loaded = True
    runtime.wallet_read(WalletSnapshot(wallet_id="w", taken_at=clock.now(), balance_usd=10.0), mono=clock.monotonic())
    clock.advance(1)
    runtime.wallet_read_failed(kind="unauthorized", error="wallet: HTTP 401", at=clock.now(), mono=clock.monotonic())
    response = await get(server, "/readyz")
    assert response.status_code == 503 and "key refused" in response.text and "HTTP 401" in response.text
    runtime.wallet_read(WalletSnapshot(wallet_id="w", taken_at=clock.now(), balance_usd=10.0), mono=clock.monotonic())
    assert (await get(server, "/readyz")).status_code == 200
    runtime.store_failed("state store /x.db: disk I/O error", at=clock.now(), mono=clock.monotonic())
    response = await get(server, "/readyz")
    assert response.status_code == 503 and "store failing" in response.text and "disk I/O error" in response.text


async def test_readyz_lists_a_failing_run_without_going_unready(
    served: tuple[MonitorHttpServer, RuntimeState, ManualClock],
) -> None:
    server, runtime, clock = served
    runtime.config_loaded = True
    runtime.wallet_read(WalletSnapshot(wallet_id="w", taken_at=clock.now(), balance_usd=10.0), mono=clock.monotonic())
    runtime.run_read_failed("run-x", kind="not_found", error="404", at=clock.now(), mono=clock.monotonic())
    server._health = health_of(runtime, clock, active=["run-x"])
    response = await get(server, "/readyz")
    assert response.status_code == 200
    assert response.text == "ready\nwarning: run run-x: not_found (1 in a row)\n"


async def test_unknown_path_is_404(served: tuple[MonitorHttpServer, RuntimeState, ManualClock]) -> None:
    server, _, _ = served
    assert (await get(server, "/nope")).status_code == 404


async def test_real_prometheus_scrapes_the_run_cost(prometheus_factory: PrometheusFactory) -> None:
    runtime = sample_runtime()
    server = await started(runtime)
    try:
        prometheus = await prometheus_factory(targets=[f"127.0.0.1:{server.port}"])
        samples = await prometheus.wait_for_query('prime_run_cost_usd_total{run_id="run-a1",usage_type="training"}')
        assert [s.value for s in samples] == [runtime.runs["run-a1"].training_cost_usd]
        total = await prometheus.query('sum by (run_id) (prime_run_cost_usd_total{run_id="run-b2"})')
        assert [s.value for s in total] == [runtime.runs["run-b2"].total_cost_usd]
        # The hostile name arrives intact (escaped on the wire, decoded by Prometheus).
        info = await prometheus.query('prime_run_info{run_id="run-b2"}')
        assert [s.labels["run_name"] for s in info] == [HOSTILE_NAME_LABEL]
        targets = await prometheus.targets()
        assert [(t["health"], t["lastError"]) for t in targets] == [("up", "")]
    finally:
        await server.stop()
