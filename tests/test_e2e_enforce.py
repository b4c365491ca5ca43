"""End to end enforcement: the daemon as a process deletes runs in the simulator, over loopback sockets.

Every test starts the real daemon (`python -m monitor run`), adds runs to the simulator through its
admin API once the daemon is up (the daemon discovers them from the wallet's billing rows, as in
production), and judges the result from the outside: the simulator's ledger (which DELETEs landed,
when, and what the run truly cost), the fake Slack's messages, the daemon's JSON log, /metrics, and
the CLI (`protect`, `status --actions --json`).

Runs burn at a flat $1 per Mtok on every meter, so `usd_per_second` is exact; a run is added with a
history (`started_ago`) chosen so that it crosses its cap a few seconds after the daemon found it.
Usage lands every `meter_interval` (1 s) and the daemon polls every second.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemon import DaemonFactory, DaemonProcess, LogEvent
from tests.support.fake_slack import FakeSlack
from tests.support.simulator import SimulatorHandle, running_simulator

SECRET_KEY = "sim-enforce-key-0123456789abcdef"
METER_INTERVAL = 1.0
POLL_INTERVAL = 1.0
# $1 per million tokens on every meter: a run's cost per second is its token rate / 1e6.
FLAT_PRICING = {"training_per_mtok": 1.0, "inference_input_per_mtok": 1.0, "inference_output_per_mtok": 1.0}
CAP_USD = 1.0
RULE = "run-cap"
# The reactive path: a countdown only once the cap is crossed (anticipation: tests/test_anticipation.py).
# These tests time the grace period itself (a CLI call lands inside it), so it is never shortened for pace.
# Reactive enforcement (no anticipation, no grace cut): what the bounds below are computed for.
GRACE_PERIOD = 2
CONFIRM_POLLS = 2
LIVE: dict[str, Any] = {
    "dry_run": False,
    "grace_period": GRACE_PERIOD,
    "confirm_polls": CONFIRM_POLLS,
    "anticipate": False,
    "grace_overspend_cap": None,
}


def scenario() -> dict[str, Any]:
    return {
        "api_keys": [SECRET_KEY],
        "meter_interval": METER_INTERVAL,
        "wallets": [{"wallet_id": "wallet-e2e", "team_id": None, "starting_balance_usd": 500}],
        "runs": [],
    }


@pytest.fixture
def sim() -> Iterator[SimulatorHandle]:
    with running_simulator(scenario()) as handle:
        yield handle


def cap_rule(threshold: float = CAP_USD, *, match: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": RULE,
        "scope": "run",
        "match": {"name": ["exp-*"]} if match is None else match,
        "metric": "total_cost_usd",
        "threshold": threshold,
        "action": "delete",
    }


def add_burning_run(
    sim: SimulatorHandle,
    run_id: str,
    *,
    usd_per_second: float,
    crosses_in: float,
    cap: float = CAP_USD,
    name: str | None = None,
) -> str:
    """A running run that crosses `cap` about `crosses_in` seconds from now (its earlier usage has landed)."""
    tokens = usd_per_second * 1e6
    return sim.add_run(
        id=run_id,
        name=name or f"exp-{run_id}",
        base_model="test/flat-price",
        pricing=FLAT_PRICING,
        rates={"training": tokens * 0.5, "inference_input": tokens * 0.3, "inference_output": tokens * 0.2},
        queue_seconds=0,
        started_ago=max(cap / usd_per_second - crosses_in, 0.0),
    )


# -- reading the simulator's truth ---------------------------------------------------------------


def cost_per_second(entry: dict[str, Any]) -> float:
    rates, pricing = entry["rates_per_second"], entry["pricing"]
    return (
        float(
            rates["training"] * pricing["training_per_mtok"]
            + rates["inference_input"] * pricing["inference_input_per_mtok"]
            + rates["inference_output"] * pricing["inference_output_per_mtok"]
        )
        / 1e6
    )


def crossing_time(entry: dict[str, Any], cap: float) -> float:
    """When the run's TRUE accrued cost passed the cap (not when the billing showed it)."""
    started = entry["started_at"] if entry["started_at"] is not None else entry["created_at"]
    return float(started) + cap / cost_per_second(entry)


def overspend(entry: dict[str, Any], cap: float) -> tuple[float, float]:
    """$ and % of the cap the run truly cost past it; after its DELETE the accrued cost stands still."""
    dollars = float(entry["accrued"]["total_cost_usd"]) - cap
    return dollars, 100.0 * dollars / cap


# -- reading the daemon and Slack ----------------------------------------------------------------


def start(daemon: DaemonProcess) -> None:
    daemon.start()
    daemon.wait_for_log("daemon_started", count=daemon.starts)


def decision_is(decision: str, run_id: str) -> Callable[[LogEvent], bool]:
    return lambda e: e.get("decision") == decision and e.get("run_id") == run_id


def wait_decision(daemon: DaemonProcess, decision: str, run_id: str, *, timeout: float = 20.0) -> LogEvent:
    return daemon.wait_for_log("enforcement_decision", decision_is(decision, run_id), timeout=timeout)[0]


def of_run(run_id: str) -> Callable[[LogEvent], bool]:
    return lambda e: e.get("run_id") == run_id


def decisions(daemon: DaemonProcess, run_id: str) -> list[str]:
    return [str(e["decision"]) for e in daemon.events("enforcement_decision", of_run(run_id))]


def wait_for_polls(sim: SimulatorHandle, more: int, *, endpoint: str = "wallet", timeout: float = 20.0) -> None:
    """Let the daemon read the API `more` more times (the wallet is read every second, whatever the runs do)."""
    target = sim.request_count(endpoint) + more
    deadline = time.monotonic() + timeout
    while sim.request_count(endpoint) < target:
        assert time.monotonic() < deadline, "the daemon stopped polling"
        time.sleep(0.1)


def first_line(message: dict[str, Any]) -> str:
    return str(message.get("text") or "").splitlines()[0]


def slack_kind(message: dict[str, Any]) -> str:
    """What an enforcement message on Slack is, from its title line (the fallback text's first line)."""
    title = first_line(message)
    for marker, kind in (
        ("⏳", "pending"),
        ("Delete cap reached", "cap"),
        ("🗑️ Deleted run", "deleted"),
        ("🗑️ Would delete run", "would_delete"),
        ("was already gone", "already_gone"),
        ("cancelled", "cancelled"),
        ("refused", "refused"),
        ("failed", "failed"),
        ("Enforcement stopped", "stopped"),
    ):
        if marker in title:
            return kind
    return "other"  # budget alerts (the delete rule also alerts when breached)


def about(run_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: f"({run_id})" in str(m.get("text") or "") or f"Run ID: {run_id}" in str(m.get("text") or "")


def slack_kinds(slack: FakeSlack, run_id: str | None = None) -> list[str]:
    chosen = slack.messages if run_id is None else [m for m in slack.messages if about(run_id)(m)]
    return [kind for kind in map(slack_kind, chosen) if kind != "other"]


def wait_for_slack(slack: FakeSlack, kind: str, *, count: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in slack.messages if slack_kind(m) == kind]
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {count}x {kind!r} on Slack within {timeout}s: {[first_line(m) for m in slack.messages]}")


# -- the CLI -------------------------------------------------------------------------------------


def state_file(daemon: DaemonProcess) -> str:
    return str(yaml.safe_load(daemon.config_path.read_text())["state"]["path"])


def cli(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        cwd=daemon.workdir,
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, f"{args} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def action_log(daemon: DaemonProcess) -> list[dict[str, Any]]:
    """`status --actions --json`, oldest first."""
    document = json.loads(cli(daemon, "status", "--actions", "--json", "--state", state_file(daemon)).stdout)
    return list(reversed(document["actions"]))


# -- 1 and 9: a live delete, measured, and its audit trail ---------------------------------------


def test_a_run_over_its_cap_is_deleted_once_announced_before_and_after_and_audited(
    sim: SimulatorHandle, fake_slack: FakeSlack, daemon_factory: DaemonFactory
) -> None:
    daemon = daemon_factory(sim, rules=[cap_rule()], slack=fake_slack, enforce=LIVE, poll={"interval": POLL_INTERVAL})
    start(daemon)
    add_burning_run(sim, "run-live", usd_per_second=0.2, crosses_in=5)
    wait_decision(daemon, "deleted", "run-live", timeout=30)
    wait_for_polls(sim, 2)  # nothing more happens after the delete

    entry = sim.run_ledger("run-live")
    assert entry["delete_count"] == 1 and sim.request_count("delete") == 1, entry["deletes"]
    assert entry["status"] == "STOPPED"
    crossed = crossing_time(entry, CAP_USD)
    delay = entry["first_delete_at"] - crossed
    # The bound, from the TRUE crossing: the billing lag (usage lands at the next meter boundary, up to
    # meter_interval later), confirm_polls polls one interval apart, the grace period, then one enforce
    # tick (1 s) and 1 s for scheduling and the HTTP round trips.
    bound = METER_INTERVAL + CONFIRM_POLLS * POLL_INTERVAL + GRACE_PERIOD + 2.0
    dollars, percent = overspend(entry, CAP_USD)
    print(
        f"\noverspend (test 1, $0.20/s, cap ${CAP_USD:.2f}, grace {LIVE['grace_period']}s, confirm_polls"
        f" {LIVE['confirm_polls']}, poll 1s): ${dollars:.4f} = {percent:.1f}% of the cap;"
        f" DELETE {delay:.2f}s after the crossing (bound {bound:.0f}s)"
    )
    # Never before the cap was crossed and the grace period ran; never much later.
    pending_log = daemon.events("enforcement_decision", decision_is("delete_pending", "run-live"))[0]
    seen = [round(e["taken_at"] - crossed, 2) for e in pending_log["evidence"] if e["source"] == "poll"]
    resets = len(daemon.events("enforce_confirmations_reset"))
    why = f"DELETE {delay:.2f}s after the crossing; confirming readings at {seen}s; {resets} confirmation resets"
    assert LIVE["grace_period"] <= delay <= bound, why
    assert 0 < dollars <= cost_per_second(entry) * bound

    # Announced before (in the channel), the result after (in the announcement's thread).
    wait_for_slack(fake_slack, "deleted")
    ours = [m for m in fake_slack.messages if slack_kind(m) != "other"]
    assert [slack_kind(m) for m in ours] == ["pending", "deleted"], [first_line(m) for m in ours]
    pending, result = ours
    assert "prime-cost-monitor protect run-live" in pending["text"]
    assert result["thread_ts"] == pending["ts"]
    assert decisions(daemon, "run-live") == ["delete_pending", "delete_intent", "deleted"]
    config_hash = daemon.events("daemon_started")[0]["config_hash"]
    assert daemon.stop() == 0

    # 9: the audit trail, from the CLI.
    actions = action_log(daemon)
    assert [a["decision"] for a in actions] == ["delete_pending", "delete_intent", "deleted"]
    pending_action, intent_action, deleted_action = actions
    assert intent_action["intent_id"] == pending_action["id"]
    assert deleted_action["intent_id"] == intent_action["id"]
    for action in actions:
        assert action["run_id"] == "run-live" and action["rule"] == RULE
        assert action["config_hash"] == config_hash and action["dry_run"] is False
        readings = [e for e in action["evidence"] if e["source"] in ("poll", "reread")]
        assert len(readings) >= CONFIRM_POLLS
        for reading in readings:
            assert reading["value"] > reading["limit"] == CAP_USD
            assert reading["total_cost_usd"] == reading["value"]
            assert reading["record_count"] > 0 and reading["status"] == "RUNNING"
            assert reading["taken_at"] <= entry["first_delete_at"]
        assert any(e["source"] == "schedule" for e in action["evidence"])
    assert any(e["source"] == "reread" for e in deleted_action["evidence"])


# -- 2: dry run ----------------------------------------------------------------------------------


def deletions_metric(daemon: DaemonProcess) -> dict[tuple[str, str], float]:
    """prime_monitor_run_deletions_total by (rule, outcome), scraped from the daemon's /metrics."""
    body = httpx.get(daemon.metrics_url, timeout=5).text
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "prime_monitor_run_deletions_total":
                found[(sample.labels["rule"], sample.labels["outcome"])] = sample.value
    return found


def test_dry_run_never_deletes_and_reports_would_delete_once(
    sim: SimulatorHandle, fake_slack: FakeSlack, daemon_factory: DaemonFactory
) -> None:
    # enforce.dry_run is not set: dry run is the default.
    enforce = {"grace_period": 1, "confirm_polls": 2, "anticipate": False}
    daemon = daemon_factory(sim, rules=[cap_rule()], slack=fake_slack, enforce=enforce)
    start(daemon)
    add_burning_run(sim, "run-dry", usd_per_second=0.2, crosses_in=3)
    would = wait_decision(daemon, "would_delete", "run-dry", timeout=25)
    assert would["dry_run"] is True
    wait_for_polls(sim, 4)  # well past the grace period, the run still over its cap and polled

    assert sim.request_count("delete") == 0
    entry = sim.run_ledger("run-dry")
    assert entry["delete_count"] == 0 and entry["status"] == "RUNNING"
    assert entry["billed"]["total_cost_usd"] > CAP_USD
    # Each breach is reported once in a dry run: no second countdown while the config is unchanged.
    assert decisions(daemon, "run-dry") == ["delete_pending", "would_delete"]
    wait_for_slack(fake_slack, "would_delete")
    kinds = slack_kinds(fake_slack, "run-dry")
    assert kinds == ["pending", "would_delete"], [first_line(m) for m in fake_slack.messages]
    pending = next(m for m in fake_slack.messages if slack_kind(m) == "pending")
    assert "Would delete run exp-run-dry" in first_line(pending)
    assert "nothing will be deleted" in pending["text"]
    assert deletions_metric(daemon) == {(RULE, "dry_run"): 1.0}
    assert daemon.stop() == 0


# -- 3: protection -------------------------------------------------------------------------------


def test_protected_runs_are_never_deleted_and_an_expired_protection_lets_the_delete_go_ahead(
    sim: SimulatorHandle, fake_slack: FakeSlack, daemon_factory: DaemonFactory
) -> None:
    enforce = {**LIVE, "grace_period": 4, "protect": ["prod-*"]}
    daemon = daemon_factory(sim, rules=[cap_rule(match={})], slack=fake_slack, enforce=enforce)
    start(daemon)
    state = state_file(daemon)
    # Protected at runtime before the daemon ever saw the run, with no end.
    cli(daemon, "protect", "run-pinned", "--reason", "paper deadline", "--state", state)
    add_burning_run(sim, "run-prod", usd_per_second=0.2, crosses_in=3, name="prod-main")  # enforce.protect glob
    add_burning_run(sim, "run-pinned", usd_per_second=0.2, crosses_in=3)
    add_burning_run(sim, "run-brief", usd_per_second=0.2, crosses_in=3)

    # A short runtime protection stops a countdown that is already running (the grace leaves time for the CLI)...
    wait_decision(daemon, "delete_pending", "run-brief")
    protected_at = time.time()
    cli(daemon, "protect", "run-brief", "--for", "3s", "--state", state)
    cancelled = wait_decision(daemon, "cancelled", "run-brief")
    assert "protected at runtime" in cancelled["reason"]
    # ...and once it expires, a new countdown (a new announcement) ends in the delete.
    wait_decision(daemon, "deleted", "run-brief", timeout=25)
    brief = sim.run_ledger("run-brief")
    assert brief["delete_count"] == 1
    assert brief["first_delete_at"] >= protected_at + 3
    assert decisions(daemon, "run-brief") == [
        "delete_pending",
        "cancelled",
        "delete_pending",
        "delete_intent",
        "deleted",
    ]
    wait_for_slack(fake_slack, "deleted")
    assert slack_kinds(fake_slack, "run-brief") == ["pending", "cancelled", "pending", "deleted"]

    # The other two were over the cap all along (and polled), never announced, never deleted.
    for run_id, why in (("run-prod", "enforce.protect matches 'prod-*'"), ("run-pinned", "paper deadline")):
        entry = sim.run_ledger(run_id)
        assert entry["delete_count"] == 0 and entry["status"] == "RUNNING", run_id
        assert entry["billed"]["total_cost_usd"] > 2 * CAP_USD
        assert decisions(daemon, run_id) == [], run_id
        assert slack_kinds(fake_slack, run_id) == [], run_id
        skipped = daemon.events("enforce_delete_not_started", of_run(run_id))
        assert skipped and why in skipped[0]["reason"], skipped
    assert sim.request_count("delete") == 1
    assert daemon.stop() == 0


# -- 4: the hourly delete cap --------------------------------------------------------------------


def test_the_hourly_cap_allows_one_delete_refuses_the_rest_and_alerts_once(
    sim: SimulatorHandle, fake_slack: FakeSlack, daemon_factory: DaemonFactory
) -> None:
    enforce = {**LIVE, "grace_period": 1, "max_deletes_per_hour": 1}
    daemon = daemon_factory(sim, rules=[cap_rule()], slack=fake_slack, enforce=enforce)
    start(daemon)
    runs = ["run-one", "run-two", "run-three"]
    for offset, run_id in enumerate(runs):
        add_burning_run(sim, run_id, usd_per_second=0.2, crosses_in=3 + offset)
    daemon.wait_for_log("enforcement_decision", lambda e: e["decision"] in ("deleted", "refused"), count=3, timeout=30)
    wait_for_polls(sim, 3)  # the refused runs stay over the cap and polled: nothing new may start

    ledgers = {run_id: sim.run_ledger(run_id) for run_id in runs}
    deleted = [run_id for run_id, entry in ledgers.items() if entry["delete_count"] > 0]
    assert len(deleted) == 1 and ledgers[deleted[0]]["delete_count"] == 1
    assert sim.request_count("delete") == 1
    for run_id in runs:
        expected = (
            ["delete_pending", "delete_intent", "deleted"] if run_id in deleted else ["delete_pending", "refused"]
        )
        assert decisions(daemon, run_id) == expected, run_id
        if run_id not in deleted:
            assert ledgers[run_id]["status"] == "RUNNING"
    assert len(daemon.events("enforce_cap_reached")) == 1
    wait_for_slack(fake_slack, "refused", count=2)
    cap_alerts = [m for m in fake_slack.messages if slack_kind(m) == "cap"]
    assert len(cap_alerts) == 1, [first_line(m) for m in fake_slack.messages]
    assert "enforce.max_deletes_per_hour = 1" in first_line(cap_alerts[0])
    assert deletions_metric(daemon) == {(RULE, "deleted"): 1.0, (RULE, "refused"): 2.0}
    assert daemon.stop() == 0


# -- 5: bad data after the crossing --------------------------------------------------------------

BAD_DATA: dict[str, dict[str, Any]] = {
    "run-503": {"kind": "error", "status": 503, "endpoint": "usage"},
    "run-drift": {"kind": "drift", "endpoint": "usage"},  # drops total_cost_usd from the answer
    "run-hang": {"kind": "hang", "endpoint": "usage", "hang_seconds": 5},  # longer than api.timeout
}


def test_no_delete_on_failed_unparsable_or_hanging_reads_until_fresh_valid_readings_confirm(
    sim: SimulatorHandle, fake_slack: FakeSlack, daemon_factory: DaemonFactory
) -> None:
    grace = GRACE_PERIOD
    daemon = daemon_factory(
        sim,
        rules=[cap_rule()],
        slack=fake_slack,
        enforce=LIVE,
        api={"timeout": "1s", "max_retries": 1},
    )
    start(daemon)
    for run_id in BAD_DATA:
        add_burning_run(sim, run_id, usd_per_second=0.2, crosses_in=3)
    # Each run's API answers go bad as soon as its countdown is announced (its deadline is `grace` later).
    waiting = set(BAD_DATA)
    deadline = time.monotonic() + 25
    while waiting:
        assert time.monotonic() < deadline, f"no delete_pending for {waiting}:\n{daemon.tail()}"
        for run_id in list(waiting):
            if daemon.events("enforcement_decision", decision_is("delete_pending", run_id)):
                sim.add_fault(**BAD_DATA[run_id], run_id=run_id)
                waiting.discard(run_id)
        time.sleep(0.05)
    time.sleep(3 * grace)  # several grace periods with nothing but bad answers

    assert sim.request_count("delete") == 0, sim.requests()["recent"][-5:]
    assert all(fault["applied"] > 0 for fault in sim.faults()), sim.faults()
    for run_id in BAD_DATA:
        assert decisions(daemon, run_id) == ["delete_pending"], run_id
        assert daemon.events("enforce_delete_waiting", of_run(run_id)), run_id
    cleared_at = time.time()
    sim.clear_faults()

    for run_id in BAD_DATA:
        done = wait_decision(daemon, "deleted", run_id, timeout=20)
        readings = [e for e in done["evidence"] if e["source"] in ("poll", "reread")]
        assert len([e for e in readings if e["source"] == "poll"]) == LIVE["confirm_polls"]
        # A reading's time is when its request was sent (its figures are at least that fresh): one sent
        # within the 1 s request timeout before the faults were cleared may have been answered after.
        assert all(reading["taken_at"] > cleared_at - 1.0 for reading in readings), (run_id, readings)
        assert sim.run_ledger(run_id)["delete_count"] == 1
        # One announcement, however long the bad data lasted.
        assert decisions(daemon, run_id) == ["delete_pending", "delete_intent", "deleted"]
    assert daemon.stop() == 0


# -- 6 and 7: crashes ----------------------------------------------------------------------------


def test_sigkill_between_the_announcement_and_the_delete_resumes_without_repeating_anything(
    sim: SimulatorHandle, fake_slack: FakeSlack, daemon_factory: DaemonFactory
) -> None:
    daemon = daemon_factory(sim, rules=[cap_rule()], slack=fake_slack, enforce={**LIVE, "grace_period": 4})
    start(daemon)
    add_burning_run(sim, "run-crash", usd_per_second=0.2, crosses_in=3)
    pending = wait_decision(daemon, "delete_pending", "run-crash")
    daemon.kill()
    assert sim.run_ledger("run-crash")["delete_count"] == 0

    start(daemon)  # a new process on the same config and state file
    resumed = daemon.wait_for_log("enforce_pending_resumed", of_run("run-crash"))[0]
    assert resumed["episode"] == pending["action_id"]
    wait_decision(daemon, "deleted", "run-crash", timeout=25)
    wait_for_slack(fake_slack, "deleted")
    wait_for_polls(sim, 2)

    entry = sim.run_ledger("run-crash")
    assert entry["delete_count"] == 1 and sim.request_count("delete") == 1
    deadline = next(e["deadline"] for e in pending["evidence"] if e["source"] == "schedule")
    assert entry["first_delete_at"] >= deadline  # the grace period announced before the crash was honoured
    assert decisions(daemon, "run-crash") == ["delete_pending", "delete_intent", "deleted"]
    assert slack_kinds(fake_slack, "run-crash") == ["pending", "deleted"]
    assert daemon.stop() == 0


def test_sigkill_between_the_intent_and_the_delete_completes_the_intent_once_after_restart(
    sim: SimulatorHandle, fake_slack: FakeSlack, daemon_factory: DaemonFactory
) -> None:
    daemon = daemon_factory(sim, rules=[cap_rule()], slack=fake_slack, enforce={**LIVE, "grace_period": 1})
    start(daemon)
    # The first DELETE hangs (it never reaches the simulated API): the daemon dies while it waits.
    sim.add_fault(kind="hang", endpoint="delete", hang_seconds=60, count=1)
    add_burning_run(sim, "run-intent", usd_per_second=0.2, crosses_in=3)
    intent = wait_decision(daemon, "delete_intent", "run-intent")
    daemon.kill()
    assert sim.run_ledger("run-intent")["delete_count"] == 0
    sim.clear_faults()

    start(daemon)
    daemon.wait_for_log("enforce_reconciling_intent", lambda e: e.get("intent_id") == intent["action_id"])
    reconciled = wait_decision(daemon, "reconciled", "run-intent")
    assert reconciled["intent_id"] == intent["action_id"]
    wait_for_slack(fake_slack, "deleted")
    wait_for_polls(sim, 2)

    assert sim.run_ledger("run-intent")["delete_count"] == 1
    assert slack_kinds(fake_slack, "run-intent") == ["pending", "deleted"]
    assert "completed after a restart" in first_line(next(m for m in fake_slack.messages if slack_kind(m) == "deleted"))
    assert daemon.stop() == 0
    actions = action_log(daemon)
    assert [a["decision"] for a in actions] == ["delete_pending", "delete_intent", "reconciled"]
    assert actions[1]["id"] == intent["action_id"] and actions[2]["intent_id"] == intent["action_id"]


# -- 8: deleted by someone else ------------------------------------------------------------------


def test_a_run_deleted_outside_the_monitor_is_not_deleted_again_and_is_no_failure(
    sim: SimulatorHandle, fake_slack: FakeSlack, daemon_factory: DaemonFactory
) -> None:
    daemon = daemon_factory(sim, rules=[cap_rule()], slack=fake_slack, enforce={**LIVE, "grace_period": 3})
    start(daemon)
    add_burning_run(sim, "run-manual", usd_per_second=0.2, crosses_in=3)
    wait_decision(daemon, "delete_pending", "run-manual")
    # Someone runs `prime train delete` during the grace period.
    response = httpx.delete(f"{sim.base_url}/api/v1/rft/runs/run-manual", headers=sim.auth_headers, timeout=5)
    assert response.status_code == 200 and response.json()["deleted"] is True
    concluded = daemon.wait_for_log(
        "enforcement_decision",
        lambda e: e.get("run_id") == "run-manual" and e.get("decision") in ("cancelled", "already_gone"),
    )[0]
    wait_for_slack(fake_slack, str(concluded["decision"]))
    wait_for_polls(sim, 4)  # past the deadline: nothing is retried

    entry = sim.run_ledger("run-manual")
    assert entry["delete_count"] == 1 and entry["deletes"][0]["path"] == "/api/v1/rft/runs/run-manual"
    assert sim.request_count("delete") == 1
    assert decisions(daemon, "run-manual") == ["delete_pending", concluded["decision"]]
    assert slack_kinds(fake_slack, "run-manual") == ["pending", concluded["decision"]]
    assert deletions_metric(daemon) == {(RULE, str(concluded["decision"])): 1.0}
    assert daemon.stop() == 0
