"""Libraries' stdlib log records (APScheduler, asyncio, aiohttp, httpx) in the monitor's own log: one
JSON line each, with the logger's name and the level, secrets masked like every other line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path

import pytest
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

import monitor.logs
from monitor.config.settings import Settings
from monitor.daemon import Daemon
from monitor.exporter.collector import build_registry
from monitor.logs import REDACTED, configure_logging, register_secrets
from tests.support.simulator import running_simulator

API_KEY = "pk-live-0123456789abcdefSECRETKEY"
WEBHOOK = "https://hooks.slack.com/services/T0001/B0001/XXXXXXXXXXXXXXXXXXXXXXXX"


@pytest.fixture(autouse=True)
def _own_secret_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(monitor.logs, "_known_secrets", set())


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    lines = stream.getvalue().splitlines()
    assert all(line.startswith("{") for line in lines), f"a line that is not JSON:\n{stream.getvalue()}"
    return [json.loads(line) for line in lines]


async def test_apschedulers_skipped_run_warning_is_one_json_event() -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", level="info", stream=stream)
    scheduler = AsyncIOScheduler()
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_poll() -> None:
        started.set()
        await release.wait()

    # A job slower than its interval, one instance at a time: the daemon's poll under a slow API.
    scheduler.add_job(slow_poll, "interval", seconds=0.05, max_instances=1, id="poll_runs", name="poll_runs")
    scheduler.start()
    try:
        await asyncio.wait_for(started.wait(), timeout=5)
        for _ in range(100):
            if "maximum number of running instances" in stream.getvalue():
                break
            await asyncio.sleep(0.05)
    finally:
        scheduler.pause()
        release.set()
        await asyncio.sleep(0.05)  # the running instance ends on its own
        scheduler.shutdown(wait=False)
    skipped = [e for e in json_lines(stream) if "maximum number of running instances" in str(e["event"])]
    assert skipped, stream.getvalue()
    assert skipped[0]["level"] == "warning"
    assert skipped[0]["logger"] == "apscheduler.scheduler"
    assert "poll_runs" in str(skipped[0]["event"]) and "timestamp" in skipped[0]


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_stdlib_record_with_secrets_in_its_arguments_and_traceback_is_masked(fmt: str) -> None:
    stream = io.StringIO()
    configure_logging(fmt=fmt, level="info", stream=stream)
    register_secrets([SecretStr(API_KEY)])
    try:
        raise ConnectionError(f"POST {WEBHOOK} refused (Authorization: Bearer {API_KEY})")
    except ConnectionError:
        logging.getLogger("aiohttp.client").error("request to %s failed", WEBHOOK, exc_info=True)
    logging.getLogger("httpx").warning("HTTP Request: GET https://api.example.com/usage?token=%s", API_KEY)
    text = stream.getvalue()
    assert API_KEY not in text and "XXXXXXXXXXXXXXXXXXXXXXXX" not in text
    assert "https://hooks.slack.com/services/***/***/***" in text and REDACTED in text
    assert "ConnectionError" in text, "the traceback is kept, masked"
    if fmt == "json":
        failed, request = json_lines(stream)
        assert (failed["logger"], failed["level"]) == ("aiohttp.client", "error")
        assert failed["event"] == "request to https://hooks.slack.com/services/***/***/*** failed"
        assert "exception" in failed
        assert (request["logger"], request["level"]) == ("httpx", "warning")


def test_library_chatter_below_warning_is_not_written_and_our_info_is() -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", level="info", stream=stream)
    logging.getLogger("apscheduler.scheduler").info('Added job "poll_runs" to job store "default"')
    logging.getLogger("asyncio").debug("Using selector: EpollSelector")
    structlog.get_logger("monitor").info("poll_done", runs=3)
    logging.getLogger("asyncio").error("Task exception was never retrieved")
    events = json_lines(stream)
    assert [(e["event"], e["level"], e.get("logger")) for e in events] == [
        ("poll_done", "info", None),
        ("Task exception was never retrieved", "error", "asyncio"),
    ]


async def test_the_daemons_skipped_job_runs_are_counted_not_logged(tmp_path: Path) -> None:
    """The same APScheduler warning from the daemon's own scheduler (its 0.25 s enforce tick behind a
    slow tick): a counter per job on /metrics, no log line each time."""
    stream = io.StringIO()
    configure_logging(fmt="json", level="info", stream=stream)
    with running_simulator() as sim:
        settings = Settings(
            api={"base_url": sim.base_url, "api_key": sim.api_key},
            watch={"discover": False},
            server={"enabled": False},
            state={"path": str(tmp_path / "state.db")},
        )
        daemon = Daemon(settings=settings, notifiers=[], serve_http=False)
        release = asyncio.Event()

        async def slow_tick() -> None:
            await release.wait()

        daemon.parts.enforcer.tick = slow_tick  # type: ignore[method-assign]
        scheduler = daemon._schedule()
        scheduler.start()
        try:
            for _ in range(100):
                if daemon.parts.runtime.jobs_skipped["enforce"] >= 2:
                    break
                await asyncio.sleep(0.05)
        finally:
            scheduler.pause()
            release.set()
            await asyncio.sleep(0.05)
            scheduler.shutdown(wait=False)
            await daemon.parts.aclose()
            daemon.parts.store.close()
    exposition = generate_latest(build_registry(daemon.parts.runtime, include_process=False)).decode()
    skipped = {
        sample.labels["job"]: sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "prime_monitor_job_runs_skipped_total"
    }
    assert skipped["enforce"] >= 2
    assert set(skipped) == {"poll_runs", "poll_wallet", "deliver_outbox", "enforce", "housekeeping"}
    assert "maximum number of running instances" not in stream.getvalue()
