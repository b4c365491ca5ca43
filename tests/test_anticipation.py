"""Acting ahead of the crossing, end to end against the simulator: anticipated countdowns still give the
whole grace period before any DELETE, are called off when a run slows, and kill-ahead never acts on a
run whose burn stopped. The monitor in-process on a manual clock (tests/support/rig.py), and once as a
real daemon process.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.config.settings import Settings
from tests.support.daemon import DaemonFactory
from tests.support.rig import MonitorRig
from tests.support.simulator import SimulatorHandle, running_simulator

CAP = 10.0
GRACE = 60.0
# Qwen3.5-397B-A17B at $1 in / $3 out / $4 train per Mtok: $0.105 a second, $10 in about 95 s.
RATES = {"training": 20_000, "inference_input": 10_000, "inference_output": 5_000}
USD_PER_SECOND = 0.105
METER = 5.0
# The default: reads denser than the landings, so the landing gap can be measured (kill-ahead needs it).
MIN_INTERVAL = 2.0


@pytest.fixture
def sim() -> Iterator[SimulatorHandle]:
    scenario = {
        "api_keys": ["sim-key"],
        "admin_token": "sim-admin",
        "meter_interval": METER,
        "seed": 11,
        "runs": [
            {
                "id": "run-hot",
                "name": "exp-hot",
                "base_model": "Qwen/Qwen3.5-397B-A17B",
                "rates": RATES,
                "queue_seconds": 0,
            }
        ],
    }
    with running_simulator(scenario, manual_clock=True) as handle:
        yield handle


def settings(sim: SimulatorHandle, tmp_path: Path, *, kill_ahead: bool = False, **enforce: Any) -> Settings:
    return Settings(
        api={"base_url": sim.base_url, "api_key": sim.api_key, "max_retries": 0, "timeout": 5},
        watch={"runs": ["run-hot"], "discover": False},
        poll={
            "interval": 10,
            "min_interval": MIN_INTERVAL,
            "wallet_interval": 30,
            "max_interval": 60,
            "burn_window": 300,
        },
        rules=[
            {
                "name": "cap",
                "scope": "run",
                "metric": "total_cost_usd",
                "threshold": CAP,
                "action": "delete",
                "kill_ahead": kill_ahead,
            }
        ],
        enforce={"dry_run": False, "grace_period": GRACE, "confirm_polls": 2, **enforce},
        state={"path": str(tmp_path / "state.db")},
    )


async def run_until(rig: MonitorRig, done: Any, *, seconds: float = 400, step: float = 1.0) -> None:
    for _ in range(int(seconds / step)):
        await rig.step(step)
        if done():
            return
    raise AssertionError(f"not within {seconds}s: {rig.decisions('run-hot')}")


def crossing_time(sim: SimulatorHandle) -> float:
    """When the run's true (accrued) cost reached the cap, in simulated time."""
    ledger = sim.run_ledger("run-hot")
    return float(ledger["started_at"]) + CAP / USD_PER_SECOND


async def test_an_anticipated_countdown_gives_the_whole_grace_period_and_deletes_once_the_crossing_is_confirmed(
    sim: SimulatorHandle, tmp_path: Path
) -> None:
    rig = await MonitorRig(sim, settings(sim, tmp_path)).start()
    await run_until(rig, lambda: rig.decisions("run-hot") == ["delete_pending"])
    announced_at = sim.now()
    pending = rig.parts.store.actions(run_id="run-hot")[0]
    projection = pending.evidence.projection
    assert projection is not None and projection.basis == "anticipated"
    assert pending.evidence.readings[-1].value is not None and pending.evidence.readings[-1].value < CAP
    announcement = next(n for n in rig.sent if n.kind == "delete_pending")
    assert "about to cross cap" in announcement.title and "projected to reach" in announcement.text
    await run_until(rig, lambda: sim.run_ledger("run-hot")["delete_count"] > 0)
    deleted_at = float(sim.run_ledger("run-hot")["first_delete_at"])
    assert deleted_at - announced_at >= GRACE, "people get the whole grace period"
    assert deleted_at >= crossing_time(sim), "the DELETE waits for readings over the limit"
    intent = next(r for r in rig.parts.store.actions(run_id="run-hot") if r.decision == "delete_intent")
    assert all(r.value is not None and r.value >= CAP for r in intent.evidence.readings if r.source == "poll")
    # The crossing had to land (one meter interval), be read twice (confirm_polls at min_interval) and
    # be re-read: that is all the overspend, not a grace period on top of it.
    overspend_seconds = deleted_at - crossing_time(sim)
    assert overspend_seconds <= METER + 2 * MIN_INTERVAL + 2
    assert rig.decisions("run-hot") == ["delete_pending", "delete_intent", "deleted"]
    await rig.close()


async def test_a_run_that_slows_down_calls_the_anticipated_countdown_off_and_says_so(
    sim: SimulatorHandle, tmp_path: Path
) -> None:
    rig = await MonitorRig(sim, settings(sim, tmp_path)).start()
    await run_until(rig, lambda: rig.decisions("run-hot") == ["delete_pending"])
    # A price drop a hundredfold: the run keeps running but now burns $0.001 a second.
    sim.set_pricing("run-hot", training_per_mtok=0.04, inference_input_per_mtok=0.01, inference_output_per_mtok=0.03)
    await run_until(rig, lambda: "cancelled" in rig.decisions("run-hot"), seconds=300)
    cancelled = rig.parts.store.actions(run_id="run-hot")[0]
    assert "slowed down" in cancelled.reason or "stopped burning" in cancelled.reason
    notice = next(n for n in rig.sent if n.kind == "resolve" and "cancelled" in n.title)
    assert "slowed down" in notice.text or "stopped burning" in notice.text
    await rig.steps(60, 5)
    assert sim.run_ledger("run-hot")["delete_count"] == 0
    await rig.close()


async def test_kill_ahead_deletes_just_before_the_limit_on_a_steady_burn(sim: SimulatorHandle, tmp_path: Path) -> None:
    rig = await MonitorRig(sim, settings(sim, tmp_path, kill_ahead=True)).start()
    await run_until(rig, lambda: sim.run_ledger("run-hot")["delete_count"] > 0)
    ledger = sim.run_ledger("run-hot")
    intent = next(r for r in rig.parts.store.actions(run_id="run-hot") if r.decision == "delete_intent")
    assert any(r.projected is not None and r.projected >= CAP for r in intent.evidence.readings)
    # Stopped before its cost could be seen over the limit (the landing that would have shown the
    # crossing had not come), no earlier than the projection's horizon (one landing gap plus one poll)
    # allows: within a few seconds' burn of the limit, either side.
    spent = ledger["accrued"]["total_cost_usd"]
    showing_landing = sim.run_ledger("run-hot")["started_at"] + math.ceil(CAP / USD_PER_SECOND / METER) * METER
    assert float(ledger["first_delete_at"]) < showing_landing
    assert all(r.value is not None and r.value < CAP for r in intent.evidence.readings)
    assert CAP - USD_PER_SECOND * (METER + 2 * MIN_INTERVAL) <= spent <= CAP + USD_PER_SECOND * METER
    schedule = rig.parts.store.actions(run_id="run-hot")[0].evidence.schedule
    assert schedule is not None
    assert float(ledger["first_delete_at"]) - (schedule.deadline - schedule.grace_period) >= schedule.grace_period
    await rig.close()


async def test_kill_ahead_never_acts_on_a_run_whose_burn_stopped(sim: SimulatorHandle, tmp_path: Path) -> None:
    rig = await MonitorRig(sim, settings(sim, tmp_path, kill_ahead=True)).start()
    await run_until(rig, lambda: rig.decisions("run-hot") == ["delete_pending"])
    # The run keeps running but bills nothing more: its cost stands still under the cap.
    sim.set_pricing("run-hot", training_per_mtok=0.0, inference_input_per_mtok=0.0, inference_output_per_mtok=0.0)
    await rig.steps(120, 5)
    assert sim.run_ledger("run-hot")["delete_count"] == 0
    assert rig.parts.runtime.runs["run-hot"].total_cost_usd < CAP
    assert "cancelled" in rig.decisions("run-hot")
    await rig.close()


@pytest.mark.parametrize("overspend_cap", [0.25, None])
async def test_a_run_too_fast_for_its_grace_gets_a_shorter_one_and_the_announcement_says_why(
    sim: SimulatorHandle, tmp_path: Path, overspend_cap: float | None
) -> None:
    # Reactive (no anticipation): $0.105/s spends 25% of a $10 cap in about 24 s, well inside 60 s.
    rig = await MonitorRig(sim, settings(sim, tmp_path, anticipate=False, grace_overspend_cap=overspend_cap)).start()
    await run_until(rig, lambda: sim.run_ledger("run-hot")["delete_count"] > 0)
    pending, *_ = rig.parts.store.actions(run_id="run-hot")
    announcement = next(n for n in rig.sent if n.kind == "delete_pending")
    schedule = pending.evidence.schedule
    assert schedule is not None
    waited = float(sim.run_ledger("run-hot")["first_delete_at"]) - (schedule.deadline - schedule.grace_period)
    overspend = sim.run_ledger("run-hot")["accrued"]["total_cost_usd"] - CAP
    if overspend_cap is None:
        assert schedule.grace_period == GRACE and waited >= GRACE and "is cut" not in announcement.text
        assert overspend > USD_PER_SECOND * GRACE
    else:
        cut_to = overspend_cap * CAP / USD_PER_SECOND
        assert "grace period is cut" in announcement.text and "grace_overspend_cap" in announcement.text
        assert schedule.grace_period == pytest.approx(cut_to, rel=0.2)
        assert schedule.grace_period <= waited <= schedule.grace_period + 2 * MIN_INTERVAL, waited
        # From the announcement to the DELETE the run spent about a quarter of its cap, not 60 s of burn.
        announced_at = schedule.deadline - schedule.grace_period
        spent_during_countdown = USD_PER_SECOND * (float(sim.run_ledger("run-hot")["first_delete_at"]) - announced_at)
        assert spent_during_countdown <= overspend_cap * CAP + USD_PER_SECOND * 2 * MIN_INTERVAL
        assert overspend < USD_PER_SECOND * GRACE
    assert rig.decisions("run-hot") == ["delete_pending", "delete_intent", "deleted"]
    await rig.close()


async def test_a_run_that_speeds_up_after_the_announcement_has_its_deadline_brought_forward_once(
    sim: SimulatorHandle, tmp_path: Path
) -> None:
    rig = await MonitorRig(sim, settings(sim, tmp_path)).start()
    await run_until(rig, lambda: rig.decisions("run-hot") == ["delete_pending"])
    pending = rig.parts.store.actions(run_id="run-hot")[0]
    assert pending.evidence.schedule is not None
    announced_deadline = pending.evidence.schedule.deadline
    # Three times the price: the run crosses long before the projection said, burning $0.315 a second.
    sim.set_pricing("run-hot", training_per_mtok=12.0, inference_input_per_mtok=3.0, inference_output_per_mtok=9.0)
    await run_until(rig, lambda: sim.run_ledger("run-hot")["delete_count"] > 0)
    ledger = sim.run_ledger("run-hot")
    advanced = [n for n in rig.sent if n.dedup_key.startswith("delete_advanced:")]
    assert len(advanced) == 1, "brought forward once, in the countdown's thread"
    assert advanced[0].thread_key == next(n for n in rig.sent if n.kind == "delete_pending").thread_key
    assert "grace_overspend_cap" in advanced[0].text and "brought forward" in advanced[0].title
    assert float(ledger["first_delete_at"]) <= announced_deadline - 10
    # The DELETE still stood on measured readings over the limit.
    intent = next(r for r in rig.parts.store.actions(run_id="run-hot") if r.decision == "delete_intent")
    assert all(r.value is not None and r.value >= CAP for r in intent.evidence.readings if r.source == "poll")
    # Past the cap by about 10% of it (the default cap) plus the billing and confirmation lags at the
    # new pace, where waiting for the announced deadline would have cost far more.
    overspend = ledger["accrued"]["total_cost_usd"] - CAP
    assert overspend <= 0.1 * CAP + 0.315 * (METER + 2 * MIN_INTERVAL + 2), overspend
    assert rig.decisions("run-hot") == ["delete_pending", "delete_intent", "deleted"]
    await rig.close()


def test_a_real_daemon_announces_ahead_and_waits_the_whole_grace_period(daemon_factory: DaemonFactory) -> None:
    scenario = {
        "api_keys": ["sim-key"],
        "meter_interval": 1,
        "runs": [
            {
                "id": "run-live",
                "name": "exp-live",
                "base_model": "Qwen/Qwen3.5-35B-A3B",
                "rates": {"training": 60000, "inference_input": 40000, "inference_output": 40000},  # $0.10/s
                "queue_seconds": 0,
            }
        ],
    }
    with running_simulator(scenario) as sim:
        rule = {"name": "cap", "scope": "run", "metric": "total_cost_usd", "threshold": 2.0, "action": "delete"}
        daemon = daemon_factory(
            sim,
            rules=[rule],
            # The whole grace period is the point here: never shortened for the run's pace.
            enforce={"dry_run": False, "grace_period": 8, "confirm_polls": 2, "grace_overspend_cap": None},
            watch={"runs": ["run-live"], "discover": False},
        )
        daemon.start()
        pending = daemon.wait_for_log("enforcement_decision", lambda e: e["decision"] == "delete_pending", timeout=30)[
            0
        ]
        assert any(e.get("source") == "projection" for e in pending["evidence"])
        announced = time.time()
        daemon.wait_for_log("enforcement_decision", lambda e: e["decision"] == "deleted", timeout=40)
        ledger = sim.run_ledger("run-live")
        assert ledger["delete_count"] == 1
        assert float(ledger["first_delete_at"]) - announced >= 8 - 0.5
        assert daemon.stop() == 0
