"""End to end: the daemon as a process, the simulator and a fake Slack over loopback sockets.

A run that burns $0.10/s against a $1.00 cap crosses 50%, 80% and 100% on separate polls
(records land every second, the daemon polls every second).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.daemon import DaemonFactory, DaemonProcess
from tests.support.fake_slack import FakeSlack
from tests.support.simulator import SimulatorHandle, running_simulator

SECRET_KEY = "sim-e2e-key-0123456789abcdef"
FAST_RUN = {
    "id": "run-fast",
    "name": "exp-fast",
    "base_model": "Qwen/Qwen3.5-35B-A3B",  # $/Mtok in .25 / out .75 / train 1.00
    "rates": {"training": 60000, "inference_input": 40000, "inference_output": 40000},  # $0.10/s
    "queue_seconds": 0,
}
SLOW_RUN = {
    "id": "run-slow",
    "name": "exp-slow",
    "base_model": "Qwen/Qwen3.5-4B",
    "rates": {"training": 1000, "inference_input": 500, "inference_output": 500},
    "queue_seconds": 0,
}
RUN_CAP = {
    "name": "run-cap",
    "scope": "run",
    "match": {"run_id": ["run-fast"]},
    "metric": "total_cost_usd",
    "threshold": 1.0,
    "warn_at": [0.5, 0.8],
}


def scenario(*runs: dict[str, Any]) -> dict[str, Any]:
    return {
        "api_keys": [SECRET_KEY],
        "meter_interval": 1,
        "wallets": [{"wallet_id": "wallet-e2e", "team_id": None, "starting_balance_usd": 500}],
        "runs": list(runs),
    }


@pytest.fixture
def sim() -> Iterator[SimulatorHandle]:
    with running_simulator(scenario(FAST_RUN, SLOW_RUN)) as handle:
        yield handle


def wait_for_usage_polls(sim: SimulatorHandle, more: int, *, timeout: float = 20.0) -> None:
    target = sim.request_count("usage") + more
    deadline = time.monotonic() + timeout
    while sim.request_count("usage") < target:
        assert time.monotonic() < deadline, "the daemon stopped polling"
        time.sleep(0.1)


def alert_titles(slack: FakeSlack) -> list[str]:
    return [m["text"] for m in slack.messages]


def test_crossing_three_tiers_sends_three_alerts_and_a_restart_sends_none_again(
    sim: SimulatorHandle, fake_slack: FakeSlack, daemon_factory: DaemonFactory
) -> None:
    daemon = daemon_factory(sim, rules=[RUN_CAP], slack=fake_slack)
    daemon.start()
    messages = fake_slack.wait_for_messages(3, timeout=30)
    texts = [m["text"] for m in messages]
    assert "50%" in texts[0] and "80%" in texts[1] and "breached" in texts[2], texts
    # Follow-ups reply in the thread of the first alert.
    assert messages[0].get("thread_ts") is None
    assert messages[1]["thread_ts"] == messages[0]["ts"] == messages[2]["thread_ts"]
    assert all(m["blocks"] for m in messages)
    wait_for_usage_polls(sim, 4)
    assert len(fake_slack.messages) == 3
    assert daemon.stop() == 0  # SIGTERM drains and exits 0

    daemon.start()  # a new process on the same state file
    daemon.wait_for_log("daemon_started", count=2)
    wait_for_usage_polls(sim, 6)
    assert len(fake_slack.messages) == 3, alert_titles(fake_slack)
    assert daemon.stop() == 0
    log_text = daemon.log_path.read_text()
    assert SECRET_KEY not in log_text and fake_slack.token not in log_text


def test_slack_outage_delivers_each_alert_exactly_once_after_recovery(
    sim: SimulatorHandle, fake_slack: FakeSlack, daemon_factory: DaemonFactory
) -> None:
    fake_slack.fail_next(4, status=500)
    fake_slack.rate_limit_next(2, retry_after=1)
    daemon = daemon_factory(sim, rules=[RUN_CAP], slack=fake_slack)
    daemon.start()
    messages = fake_slack.wait_for_messages(3, timeout=45)
    wait_for_usage_polls(sim, 4)
    assert daemon.stop() == 0
    texts = [m["text"] for m in fake_slack.messages]
    assert len(texts) == 3 and len(set(texts)) == 3, texts
    assert [m["ts"] for m in messages] == sorted(m["ts"] for m in messages)
    failed = [r for r in fake_slack.requests if r["status"] != 200]
    assert len(failed) >= 6  # the outage really happened


def test_sighup_keeps_the_old_config_when_the_new_one_is_invalid(
    sim: SimulatorHandle, daemon_factory: DaemonFactory
) -> None:
    daemon = daemon_factory(sim, rules=[RUN_CAP])
    daemon.start()
    daemon.wait_for_log("daemon_started")
    good = daemon.config_path.read_text()
    daemon.config_path.write_text(good.replace("threshold: 1.0", "threshold: -3"))
    daemon.signal(signal.SIGHUP)
    rejected = daemon.wait_for_log("reload_rejected")
    assert "threshold" in rejected[0]["error"]
    daemon.config_path.write_text(good.replace("threshold: 1.0", "threshold: 2.0"))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log("config_reloaded")
    wait_for_usage_polls(sim, 2)
    assert daemon.stop() == 0


def test_run_once_exits_with_checks_codes(sim: SimulatorHandle, daemon_factory: DaemonFactory) -> None:
    within = daemon_factory(sim, rules=[{**RUN_CAP, "threshold": 10_000}], name="within")
    assert within.run_once() == 0
    breached = daemon_factory(sim, rules=[{**RUN_CAP, "match": {}, "threshold": 0.0001}], name="breached")
    time.sleep(1.2)  # one record lands
    assert breached.run_once() == 1


async def test_prometheus_reads_the_ledgers_cost_from_the_daemon(
    sim: SimulatorHandle, daemon_factory: DaemonFactory, prometheus_factory: Any
) -> None:
    daemon = daemon_factory(sim, rules=[RUN_CAP])
    daemon.start()
    daemon.wait_for_log("daemon_started")
    await asyncio.sleep(2)
    # Stop the run so the ledger holds still; its last usage lands at the next meter boundary.
    async with httpx.AsyncClient() as http:
        response = await http.delete(f"{sim.base_url}/api/v1/training/runs/run-fast", headers=sim.auth_headers)
        response.raise_for_status()
    daemon.wait_for_log("run_finished", lambda e: e.get("run_id") == "run-fast", timeout=20)
    prom = await prometheus_factory(targets=[f"127.0.0.1:{daemon.metrics_port}"], scrape_interval="1s")
    ledger = sim.run_ledger("run-fast")
    samples = await prom.wait_for_query('sum(prime_run_cost_usd_total{run_id="run-fast"})')
    assert samples[0].value == pytest.approx(ledger["billed"]["total_cost_usd"], rel=1e-9)
    assert ledger["billed"]["total_cost_usd"] == pytest.approx(ledger["accrued"]["total_cost_usd"], rel=1e-9)
    info = await prom.wait_for_query('prime_run_info{run_id="run-fast"}')
    assert info[0].labels["status"] == "STOPPED"
    assert daemon.stop() == 0


def _scrape(daemon: DaemonProcess) -> str:
    return httpx.get(daemon.metrics_url, timeout=5).text


def test_health_and_readiness_over_http(sim: SimulatorHandle, daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory(sim, rules=[RUN_CAP])
    daemon.start()
    daemon.wait_for_log("daemon_started")
    wait_for_usage_polls(sim, 2)
    base = daemon.metrics_url.removesuffix("/metrics")
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200
    body = _scrape(daemon)
    assert 'prime_run_tokens_total{run_id="run-slow",usage_type="training"}' in body
    assert SECRET_KEY not in body
    assert daemon.stop() == 0


def test_sigterm_lets_a_job_in_flight_finish_then_exits_0(sim: SimulatorHandle, daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory(sim, rules=[RUN_CAP])
    daemon.start()
    daemon.wait_for_log("daemon_started")
    wait_for_usage_polls(sim, 2)
    sim.add_fault(kind="latency", endpoint="usage", latency=2)
    time.sleep(1.2)  # a poll is now waiting on the slow answer
    started = time.monotonic()
    assert daemon.stop(signal.SIGTERM, timeout=10) == 0
    assert time.monotonic() - started < 10
    drained = daemon.events("daemon_draining")
    assert drained and drained[0]["jobs"] >= 1
    assert "CancelledError" not in daemon.log_path.read_text()
