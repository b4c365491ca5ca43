"""Never blind, nothing twice: drills with the daemon as a real process, the simulator and the fake Slack.

- SIGKILL at seeded random moments of a scenario with alerts and due deletes: every alert reaches
  Slack exactly once and every due run gets exactly one DELETE, in total;
- a total 401 outage: /readyz goes not-ready within the staleness limit, one "blind", one "restored";
- SIGHUP with a new key, a new Slack channel, and broken files of every kind (one reload_rejected each).
Two daemons on one state file: tests/test_store_lock.py. In-process trust tests: tests/test_trust.py.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.support.daemon import DaemonFactory, DaemonProcess
from tests.support.fake_slack import FakeSlack
from tests.support.simulator import SimulatorHandle, running_simulator

KEY = "sim-trust-key-0123456789abcdef"
NEW_KEY = "sim-trust-key-rotated-9876543210"
# Qwen3.5-35B-A3B ($/Mtok in .25 / out .75 / train 1.00): $0.10/s and $0.05/s.
MODEL = "Qwen/Qwen3.5-35B-A3B"
FAST = {"training": 60000, "inference_input": 40000, "inference_output": 40000}
HALF = {"training": 30000, "inference_input": 20000, "inference_output": 20000}
# The number of seeded SIGKILLs in the drill: 20 in CI; set TRUST_DRILL_KILLS for a longer one.
KILLS = int(os.environ.get("TRUST_DRILL_KILLS", "20"))


def cap(run_id: str, threshold: float) -> dict[str, Any]:
    return {
        "name": f"cap-{run_id}",
        "scope": "run",
        "match": {"run_id": [run_id]},
        "metric": "total_cost_usd",
        "threshold": threshold,
        "warn_at": [0.5, 0.8],
        "action": "delete",
    }


@pytest.fixture
def sim() -> Iterator[SimulatorHandle]:
    scenario = {
        "api_keys": [KEY, NEW_KEY],
        "meter_interval": 1,
        "wallets": [{"wallet_id": "wallet-trust", "starting_balance_usd": 500}],
        "runs": [
            {"id": "run-a", "name": "exp-a", "base_model": MODEL, "rates": FAST, "queue_seconds": 0},
            {"id": "run-b", "name": "exp-b", "base_model": MODEL, "rates": HALF, "queue_seconds": 0},
        ],
    }
    with running_simulator(scenario) as handle:
        yield handle


def slack_by_id(slack: FakeSlack) -> dict[str, Any]:
    """Slack configured by channel id: exactly once holds from the very first message."""
    return {"token": slack.token, "channel": slack.channel_id("#budgets"), "base_url": slack.base_url}


def wait_until(done: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.2)


def status_of(url: str) -> int:
    """The HTTP status of a GET, 0 while nothing listens yet."""
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.TransportError:
        return 0


def outbox_rows(daemon: DaemonProcess) -> list[tuple[str, str, float | None, float | None]]:
    state = yaml.safe_load(daemon.config_path.read_text())["state"]["path"]
    with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as conn:
        return conn.execute(
            "SELECT n.dedup_key, o.channel, o.delivered_at, o.superseded_at"
            " FROM outbox o JOIN notifications n ON n.id = o.notification_id"
        ).fetchall()


def test_sigkill_at_seeded_moments_sends_each_alert_once_and_each_delete_once(
    sim: SimulatorHandle, fake_slack: FakeSlack, daemon_factory: DaemonFactory
) -> None:
    daemon = daemon_factory(
        sim,
        rules=[cap("run-a", 1.0), cap("run-b", 1.0)],
        notify={"slack": slack_by_id(fake_slack), "retry_base": 0.5, "retry_max": 2},
        enforce={"dry_run": False, "grace_period": 2, "confirm_polls": 2, "max_deletes_per_hour": 10},
        watch={"runs": ["run-a", "run-b"], "discover": False},
    )
    daemon.env["PRIME_API_KEY"] = KEY
    rng = random.Random(20261130)
    for _ in range(KILLS):
        daemon.start()
        time.sleep(rng.uniform(0.4, 2.2))
        daemon.kill()
    daemon.start()
    wait_until(
        lambda: all(sim.run_ledger(r)["delete_count"] for r in ("run-a", "run-b")),
        timeout=60,
        what="both runs deleted",
    )

    def settled() -> bool:
        rows = outbox_rows(daemon)
        return bool(rows) and all(delivered or superseded for _, _, delivered, superseded in rows)

    wait_until(settled, timeout=30, what="every queued notification delivered")
    assert daemon.stop() == 0
    for run_id in ("run-a", "run-b"):
        assert sim.run_ledger(run_id)["delete_count"] == 1, f"{run_id}: exactly one DELETE in total"
    keys = [key for key in fake_slack.dedup_keys() if key is not None]
    assert len(keys) == len(fake_slack.messages), "every message carries its dedup key"
    duplicates = {key: n for key, n in Counter(keys).items() if n > 1}
    assert duplicates == {}, f"sent twice: {duplicates}"
    delivered = {key for key, _, at, _ in outbox_rows(daemon) if at is not None}
    assert set(keys) == delivered
    for run_id in ("run-a", "run-b"):
        # The breach (a poll after a kill may jump the warning tiers: then only the highest is sent).
        assert f"alert:{run_id}:cap-{run_id}:e0:t3" in keys
        assert any(k.startswith(f"delete_pending:{run_id}:") for k in keys)
        assert any(k.startswith(f"delete_result:{run_id}:") for k in keys)
    assert daemon.starts == KILLS + 1


def test_a_total_401_outage_goes_unready_and_says_blind_once_and_restored_once(
    sim: SimulatorHandle, fake_slack: FakeSlack, daemon_factory: DaemonFactory
) -> None:
    daemon = daemon_factory(
        sim,
        rules=[],
        notify={"slack": slack_by_id(fake_slack)},
        health={"blind_after": 2, "stale_intervals": 3},
        watch={"runs": ["run-a"], "discover": False},
    )
    daemon.env["PRIME_API_KEY"] = KEY
    daemon.start()
    base = daemon.metrics_url.removesuffix("/metrics")
    wait_until(lambda: status_of(f"{base}/readyz") == 200, timeout=20, what="ready")
    sim.add_fault(kind="unauthorized", endpoint="any")
    started = time.monotonic()
    wait_until(lambda: status_of(f"{base}/readyz") == 503, timeout=20, what="not ready")
    # Within the staleness limit (3 polls of 1 s) plus one poll.
    assert time.monotonic() - started <= 5.0
    assert "key refused" in httpx.get(f"{base}/readyz", timeout=5).text
    fake_slack.wait_for_messages(1, timeout=20)
    time.sleep(4)  # the outage goes on: no second message
    assert [m["metadata"]["event_payload"]["dedup_key"].split(":")[0] for m in fake_slack.messages] == ["monitor_blind"]
    assert "blind" in fake_slack.messages[0]["text"]
    metrics = httpx.get(daemon.metrics_url, timeout=5).text
    assert 'prime_monitor_blind{cause="key_refused",channel=""} 1.0' in metrics
    assert "prime_monitor_ready 0.0" in metrics
    sim.clear_faults()
    fake_slack.wait_for_messages(2, timeout=20)
    wait_until(lambda: status_of(f"{base}/readyz") == 200, timeout=20, what="ready again")
    time.sleep(2)
    kinds = [m["metadata"]["event_payload"]["dedup_key"].split(":")[0] for m in fake_slack.messages]
    assert kinds == ["monitor_blind", "monitor_restored"]
    assert fake_slack.messages[1]["thread_ts"] == fake_slack.messages[0]["ts"]
    logs = daemon.log_path.read_text()
    assert logs.count('"wallet_read_failed"') == 1, "the refused key is logged once, not every second"
    assert daemon.stop() == 0
    assert KEY not in daemon.log_path.read_text()


BROKEN_FILES: dict[str, bytes] = {
    "not UTF-8": b"api:\n  base_url: \xff\xfe http://x\n",
    "deeply nested": b"rules: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "a non-string key": b"api:\n  1: 2\n",
    "a huge number": b"poll:\n  interval: " + b"9" * 500 + b"\n",
    "duplicate sections": b"enforce: {dry_run: true}\nenforce: {dry_run: false}\n",
    "not a mapping": b"- just\n- a list\n",
    "a NaN duration": b"poll:\n  interval: .nan\n",
    "empty of meaning": b"\x00\x01\x02",
}


def test_sighup_applies_a_new_key_and_channel_and_rejects_every_broken_file_once(
    sim: SimulatorHandle, fake_slack: FakeSlack, daemon_factory: DaemonFactory
) -> None:
    old_channel = fake_slack.channel_id("#budgets")
    daemon = daemon_factory(
        sim,
        rules=[{**cap("run-a", 0.3), "action": "alert", "warn_at": []}],
        api={"api_key": KEY},
        notify={"slack": slack_by_id(fake_slack)},
        watch={"runs": ["run-a"], "discover": False},
    )
    del daemon.env["PRIME_API_KEY"]  # the key comes from the file, so a reload can change it
    daemon.start()
    fake_slack.wait_for_messages(1, timeout=20)
    assert fake_slack.messages[0]["channel_id"] == old_channel
    good = yaml.safe_load(daemon.config_path.read_text())
    for what, content in BROKEN_FILES.items():
        before = len(daemon.events("reload_rejected"))
        daemon.config_path.write_bytes(content)
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log("reload_rejected", count=before + 1, timeout=10)
        assert daemon.proc is not None and daemon.proc.poll() is None, f"{what}: the daemon died"
    assert len(daemon.events("reload_rejected")) == len(BROKEN_FILES), "one event per broken file"
    assert "Traceback" not in daemon.log_path.read_text()

    # A revoked key in the file: the next reads use it (and are refused).
    revoked = {**good, "api": {**good["api"], "api_key": "sim-trust-key-revoked-000000"}}
    daemon.config_path.write_text(yaml.safe_dump(revoked))
    refused_before = sim.request_count("usage", 401)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log("config_reloaded", timeout=10)
    wait_until(lambda: sim.request_count("usage", 401) > refused_before, timeout=10, what="the new key in use")
    # The other valid key, another Slack channel and a new rule: all take effect without a restart.
    new_channel = fake_slack.channel_id("#budgets-2")
    rotated = {
        **good,
        "api": {**good["api"], "api_key": NEW_KEY},
        "notify": {**good["notify"], "slack": {**good["notify"]["slack"], "channel": new_channel}},
        "rules": [{**good["rules"][0], "name": "cap-run-a-raised", "threshold": 0.6}],
    }
    daemon.config_path.write_text(yaml.safe_dump(rotated))
    daemon.signal(signal.SIGHUP)
    reloaded = daemon.wait_for_log("config_reloaded", count=2, timeout=10)
    assert {"api", "notify", "rules"} <= set(reloaded[-1]["sections_changed"])
    messages = fake_slack.wait_for_messages(2, timeout=30)
    assert messages[-1]["channel_id"] == new_channel
    refused = sim.request_count("usage", 401)
    time.sleep(3)
    assert sim.request_count("usage", 401) == refused, "the rotated key is accepted"
    assert daemon.stop() == 0
    log_text = daemon.log_path.read_text()
    assert NEW_KEY not in log_text and KEY not in log_text


def test_answers_slower_than_the_poll_interval_never_confirm_a_delete(
    sim: SimulatorHandle, daemon_factory: DaemonFactory
) -> None:
    """A reading is as old as its request: answers that take longer than twice the poll interval arrive
    already stale, so they never count as the fresh confirmations a DELETE needs (fail closed)."""
    daemon = daemon_factory(
        sim,
        rules=[{**cap("run-a", 0.5), "warn_at": []}],
        api={"timeout": "6s", "max_retries": 0},
        enforce={"dry_run": False, "grace_period": 1, "confirm_polls": 2},
        watch={"runs": ["run-a"], "discover": False},
    )
    daemon.env["PRIME_API_KEY"] = KEY
    sim.add_fault(kind="latency", endpoint="usage", run_id="run-a", latency=3)
    daemon.start()
    daemon.wait_for_log("alert_not_sent_no_channel", timeout=30)  # the run is over its cap
    time.sleep(10)  # slow readings over the cap, each 3 s old on arrival and 4 s apart
    assert sim.request_count("delete") == 0
    assert not daemon.events("enforcement_decision"), "no countdown on readings that are not fresh"
    assert daemon.events("enforce_confirmations_reset")
    sim.clear_faults()
    daemon.wait_for_log("enforcement_decision", lambda e: e["decision"] == "deleted", timeout=30)
    assert sim.run_ledger("run-a")["delete_count"] == 1
    assert daemon.stop() == 0
