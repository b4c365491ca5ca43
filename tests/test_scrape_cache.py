"""The /metrics cache: what it answers is what a fresh render of the same state gives, after any
sequence of changes, in every format; and rendering lets the polls run."""

from __future__ import annotations

import asyncio
import gzip
import math
from collections.abc import Callable

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from monitor.clock import ManualClock
from monitor.exporter.collector import build_registry
from monitor.exporter.live import RuntimeState
from monitor.exporter.scrape_cache import ScrapeCache, accepts_gzip
from monitor.exporter.server import MonitorHttpServer
from monitor.records import Evaluation
from monitor.snapshots import RunSnapshot
from tests.test_metrics import HOSTILE_NAME, T0, evaluation, sample_runtime
from tests.test_server import OPENMETRICS_ACCEPT, health_of

# A few run ids (one a label escaping must handle) and a wallet subject: collisions are the point.
RUN_IDS = ("run-a", "run-b", "run-c", 'run-"q"\\d', "run-e")
SUBJECTS = (*RUN_IDS, "wallet-1")
RULES = ("run-cap", "burn-fast", "training-cap", "wallet-floor")
FAILURE_KINDS = ("timeout", "not_found", "internal_error", "rejected", "unauthorized")
# What a scrape may ask for: text 0.0.4, OpenMetrics, and OpenMetrics with names spelled the `dots` way.
ACCEPTS = (
    "",
    OPENMETRICS_ACCEPT,
    "application/openmetrics-text;version=1.0.0;escaping=dots",
    "text/plain;version=1.0.0;escaping=allow-utf-8",
)

floats = st.one_of(
    st.floats(min_value=0, max_value=1e7, allow_nan=False),
    st.sampled_from([0.0, 1e-7, 999_999.9, 1_000_000.0, 12_345_678.9, 1e21, math.inf, math.nan]),
)


def snapshot(run_id: str, *, cost: float, tokens: int, name: str | None, status: str | None) -> RunSnapshot:
    return RunSnapshot(
        run_id=run_id,
        taken_at=T0,
        run_name=name,
        base_model="Qwen/Qwen3.5-4B",
        status=status,
        training_tokens=tokens,
        inference_input_tokens=2 * tokens,
        inference_output_tokens=tokens // 3,
        training_cost_usd=cost / 2,
        inference_cost_usd=cost / 2,
        total_tokens=3 * tokens + tokens // 3,
        total_cost_usd=cost,
        inference_input_price_per_mtok=0.1 if tokens % 2 else None,
    )


def an_evaluation(subject: str, rule: str, *, tier: int, utilisation: float | None, ttl: float | None) -> Evaluation:
    wallet = subject == "wallet-1"
    return evaluation(
        rule=rule,
        subject=subject,
        scope="wallet" if wallet else "run",
        metric="balance_usd" if wallet else ("burn_rate_usd_per_hour" if rule == "burn-fast" else "total_cost_usd"),
        value=1.0,
        limit=50.0,
        tier=tier,
        tier_count=3,
        utilisation=utilisation,
        time_to_limit_seconds=ttl,
    )


Change = Callable[[RuntimeState], None]


@st.composite
def changes(draw: st.DrawFn) -> Change:
    """One thing that happens to the runtime, through its methods, as the poller and pipeline do it."""
    kind = draw(st.sampled_from(["read", "read", "failed", "processed", "burn", "evaluated", "forget", "restored"]))
    run_id = draw(st.sampled_from(RUN_IDS))
    if kind in ("read", "restored"):
        reading = snapshot(
            run_id,
            cost=draw(floats),
            tokens=draw(st.integers(0, 10**12)),
            name=draw(st.sampled_from([None, "exp", HOSTILE_NAME, "bad \ud800 nul\x00"])),
            status=draw(st.sampled_from([None, "RUNNING", "COMPLETED"])),
        )
        if kind == "read":
            return lambda runtime: (runtime.run_read(run_id, reading, mono=T0), None)[1]
        return lambda runtime: runtime.restored(run_id, reading)
    if kind == "failed":
        failure = draw(st.sampled_from(FAILURE_KINDS))
        return lambda runtime: (runtime.run_read_failed(run_id, kind=failure, error="x", at=T0, mono=T0), None)[1]
    if kind == "processed":
        return lambda runtime: runtime.run_processed(run_id)
    if kind == "burn":
        rate = draw(st.none() | floats)
        return lambda runtime: runtime.burn_rate_measured(run_id, rate)
    if kind == "evaluated":
        judged = an_evaluation(
            draw(st.sampled_from(SUBJECTS)),
            draw(st.sampled_from(RULES)),
            tier=draw(st.integers(0, 3)),
            utilisation=draw(st.none() | floats),
            ttl=draw(st.none() | floats),
        )
        return lambda runtime: runtime.evaluated(judged)
    return lambda runtime: runtime.forget_run(run_id)


def fresh(runtime: RuntimeState, accept: str) -> bytes:
    """What prometheus_client renders from the state as it is now, without any cache."""
    encoder, _ = choose_encoder(accept)
    return encoder(build_registry(runtime, include_process=False))


async def check(cache: ScrapeCache, runtime: RuntimeState, accept: str) -> None:
    expected = fresh(runtime, accept)
    # gzip first (the text is then let go), plain (assembled again), gzip again.
    for encoding in ("gzip", "", "gzip"):
        answer = await cache.scrape(accept=accept, accept_encoding=encoding)
        body = gzip.decompress(answer.body) if answer.content_encoding == "gzip" else answer.body
        assert (answer.content_encoding, body) == (encoding or None, expected)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.lists(changes(), max_size=6), st.sampled_from(ACCEPTS)), min_size=1, max_size=8))
def test_the_cached_scrape_equals_a_fresh_render_after_any_changes(steps: list[tuple[list[Change], str]]) -> None:
    async def body() -> None:
        runtime = RuntimeState(started_at=T0, config_loaded=True)
        cache = ScrapeCache(build_registry(runtime, include_process=False), max_age=0.0, slice_seconds=0.0)
        for batch, accept in steps:
            for change in batch:
                change(runtime)
            await check(cache, runtime, accept)

    asyncio.run(body())


def many_runs(count: int) -> RuntimeState:
    runtime = RuntimeState(started_at=T0, config_loaded=True)
    for index in range(count):
        run_id = f"run-{index:05d}"
        runtime.run_read(run_id, snapshot(run_id, cost=index / 7, tokens=index * 1000, name=None, status=None), mono=T0)
        runtime.burn_rate_measured(run_id, index / 3)
        runtime.evaluated(an_evaluation(run_id, "run-cap", tier=0, utilisation=index / 1000, ttl=3600.0))
    return runtime


async def test_polls_run_while_a_scrape_renders_and_their_changes_show_in_the_next() -> None:
    runtime = many_runs(2_000)
    cache = ScrapeCache(build_registry(runtime, include_process=False), max_age=0.0, slice_seconds=0.0)
    scrape = asyncio.ensure_future(cache.scrape())
    polls_during_scrape = 0
    while not scrape.done():
        # What a poll does between two awaits: a reading accepted, an evaluation recorded.
        run_id = f"run-{polls_during_scrape % 2_000:05d}"
        runtime.run_read(run_id, snapshot(run_id, cost=1e6, tokens=1, name="polled", status="RUNNING"), mono=T0)
        runtime.evaluated(an_evaluation(run_id, "burn-fast", tier=3, utilisation=2.0, ttl=None))
        polls_during_scrape += 1
        await asyncio.sleep(0)
    assert polls_during_scrape > 10, "the render held the event loop: polls could not run"
    await scrape
    # Nothing changes now: the next scrape shows every change, including those made mid-render.
    again = await cache.scrape()
    assert again.body == fresh(runtime, "")
    assert again.body.count(b'run_name="polled"') == min(polls_during_scrape, 2_000)


async def test_the_background_refresh_keeps_up_with_polls_and_never_shows_a_half_state() -> None:
    runtime = many_runs(300)
    cache = ScrapeCache(build_registry(runtime, include_process=False), max_age=0.0, slice_seconds=0.0)
    await cache.scrape()  # a format is refreshed once someone scraped it
    refresher = asyncio.ensure_future(cache.keep_fresh(every=0.001))
    try:
        for step in range(200):
            run_id = f"run-{(7 * step) % 300:05d}"
            runtime.run_read(run_id, snapshot(run_id, cost=step, tokens=step, name="n", status="RUNNING"), mono=T0)
            if step % 3 == 0:
                runtime.forget_run(f"run-{(11 * step) % 300:05d}")
            await asyncio.sleep(0)
        await cache.refresh()
    finally:
        refresher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await refresher
    await check(cache, runtime, "")


async def test_an_unchanged_state_is_answered_from_the_cache_and_the_small_families_stay_fresh() -> None:
    runtime = sample_runtime()
    cache = ScrapeCache(build_registry(runtime, include_process=False), max_age=0.0)
    first = await cache.scrape(accept_encoding="gzip")
    runtime.requests.observe("usage", "200", 0.01)  # no run changed, the request counters did
    second = await cache.scrape(accept_encoding="gzip")
    assert second.parts[0] is first.parts[0], "the per-run part was rendered again with nothing changed"
    assert gzip.decompress(second.body) == fresh(runtime, "")
    assert b'prime_monitor_api_requests_total{code="200",endpoint="usage"} 3.0' in gzip.decompress(second.body)


async def test_a_burst_of_scrapes_shares_one_rendering_at_most_max_age_old() -> None:
    runtime = sample_runtime()
    clock = ManualClock(T0)
    cache = ScrapeCache(build_registry(runtime, include_process=False), max_age=1.0, clock=clock)
    before = await cache.scrape(accept_encoding="gzip")
    runtime.run_read("run-a1", snapshot("run-a1", cost=99.0, tokens=1, name="exp-alpha", status="RUNNING"), mono=T0)
    runtime.requests.observe("wallet", "503", 0.01)
    clock.advance(0.9)
    during = gzip.decompress((await cache.scrape(accept_encoding="gzip")).body).decode()
    # Within the second: the runs' series as they were, the monitor's own families as they are.
    assert 'prime_run_total_cost_usd{run_id="run-a1"} 13.0' in during
    assert 'prime_monitor_api_requests_total{code="503",endpoint="wallet"} 1.0' in during
    assert during.startswith(gzip.decompress(before.body).decode().partition("# HELP prime_wallet")[0])
    clock.advance(0.1)
    after = await cache.scrape(accept_encoding="gzip")
    assert gzip.decompress(after.body) == fresh(runtime, "")


async def test_concurrent_scrapes_over_http_get_whole_identical_answers() -> None:
    runtime = many_runs(500)
    registry = build_registry(runtime, include_process=False)
    server = MonitorHttpServer(
        registry=registry, health=health_of(runtime, ManualClock(T0)), host="127.0.0.1", port=0, metrics_max_age=0.0
    )
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as client:
            answers = await asyncio.gather(
                *(client.get("/metrics", headers={"Accept-Encoding": "gzip"}) for _ in range(4)),
                client.get("/metrics", headers={"Accept": OPENMETRICS_ACCEPT, "Accept-Encoding": "identity"}),
            )
    finally:
        await server.stop()
    expected = generate_latest(registry)
    for answer in answers[:4]:
        assert answer.headers["content-encoding"] == "gzip"
        assert answer.content == expected  # httpx decodes the gzip
    openmetrics = answers[4]
    assert "content-encoding" not in openmetrics.headers
    assert openmetrics.content == openmetrics_latest(registry)  # type: ignore[no-untyped-call]
    assert int(openmetrics.headers["content-length"]) == len(openmetrics.content)


@pytest.mark.parametrize(
    ("header", "gzip_ok"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("deflate;q=1.0, GZIP;q=0.5", True),
        ("*", True),
        ("gzip;q=0", False),
        ("gzip;q=0.0, identity", False),
        ("identity", False),
        ("", False),
        ("gzip;q=nonsense", False),
    ],
)
def test_gzip_only_when_the_client_takes_it(header: str, gzip_ok: bool) -> None:
    assert accepts_gzip(header) is gzip_ok
