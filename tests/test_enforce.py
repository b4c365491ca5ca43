"""Enforcement against the simulator: the delete sequence, dry run, protections, the hourly cap, bad data.

Restart safety, API failures during the DELETE and runs deleted elsewhere: test_enforce_failures.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.cli.audit import actions_as_json, render_actions
from monitor.rules.evaluate import evaluate_run
from tests.support.simulator import SimulatorHandle, running_simulator
from tests.test_enforce_support import (
    BURN_USD_PER_SECOND,
    CAP_USD,
    GRACE_SECONDS,
    METER_SECONDS,
    STEP_SECONDS,
    Bench,
    make_settings,
    scenario,
)

RUN = "run-big"


@pytest.fixture
def sim() -> Iterator[SimulatorHandle]:
    with running_simulator(scenario(RUN, "run-b", "run-c"), manual_clock=True) as handle:
        yield handle


@pytest.fixture
def bench_factory(sim: SimulatorHandle, tmp_path: Path) -> Iterator[Any]:
    benches: list[Bench] = []

    def make(*, runs: list[str] | None = None, **enforce: Any) -> Bench:
        bench = Bench(sim, make_settings(sim, tmp_path / "state.db", **enforce), runs=runs or [RUN])
        benches.append(bench)
        return bench

    yield make
    for bench in benches:
        bench.store.close()


@pytest.fixture
async def live(bench_factory: Any) -> AsyncIterator[Bench]:
    bench: Bench = bench_factory(dry_run=False)
    yield bench
    await bench.client.aclose()


async def test_a_run_over_its_cap_is_deleted_once_after_confirmation_and_grace(live: Bench) -> None:
    await live.run_until(lambda: live.decisions(RUN) == ["delete_pending"])
    pending = live.actions(RUN)[0]
    readings = [e for e in pending.evidence.readings if e.source == "poll"]
    # Two consecutive fresh readings over the cap, each a distinct reading.
    assert len(readings) == 2 and all((r.value or 0) >= CAP_USD for r in readings)
    assert readings[0].taken_at < readings[1].taken_at
    assert pending.evidence.schedule is not None
    deadline = pending.evidence.schedule.deadline
    assert deadline == pytest.approx(pending.created_at + GRACE_SECONDS)
    assert live.deletes_sent(RUN) == 0, "nothing is deleted during the grace period"
    assert RUN in live.enforcer.pending_runs()
    announcement = live.sent[-1]
    assert announcement.kind == "delete_pending"
    assert f"prime-cost-monitor protect {RUN}" in announcement.text
    assert "Deleting run" in announcement.title

    await live.run_until(lambda: live.deletes_sent(RUN) > 0)
    # The DELETE landed no earlier than the deadline announced.
    ledger = live.sim.run_ledger(RUN)
    assert ledger["first_delete_at"] >= deadline
    for _ in range(6):  # the run keeps being polled: it is STOPPED now, and nothing happens twice
        await live.step()
    assert live.deletes_sent(RUN) == 1
    assert live.decisions(RUN) == ["delete_pending", "delete_intent", "deleted"]
    pending_rec, intent, result = live.actions(RUN)
    assert intent.intent_id == pending_rec.id and result.intent_id == intent.id
    assert not result.dry_run and result.config_hash == live.settings.config_hash()
    assert any(e.source == "reread" and (e.value or 0) >= CAP_USD for e in intent.evidence.readings)
    assert live.kinds(RUN) == ["delete_pending", "delete_done"]
    assert live.runtime.deletions == {("run-cap", "deleted"): 1}
    assert RUN not in live.enforcer.pending_runs()

    true_cost = ledger["accrued"]["total_cost_usd"]
    overspend = true_cost - CAP_USD
    print(
        f"\noverspend: ${overspend:.2f} past a ${CAP_USD:.2f} cap ({overspend / CAP_USD:.0%} of the budget);"
        f" true cost at DELETE ${true_cost:.2f}; burn ${BURN_USD_PER_SECOND * 3600:.0f}/h"
    )
    # Bounded by what the run burns during: the meter's lag, the confirming polls, the grace period, one tick.
    worst_seconds = METER_SECONDS + 2 * STEP_SECONDS + GRACE_SECONDS + STEP_SECONDS
    assert 0 < overspend <= BURN_USD_PER_SECOND * worst_seconds


async def test_dry_run_is_the_default_and_never_calls_delete(bench_factory: Any) -> None:
    bench: Bench = bench_factory()
    assert bench.settings.enforce.dry_run
    await bench.run_until(lambda: "would_delete" in bench.decisions(RUN))
    for _ in range(12):  # well past another confirm + grace: the dry run reports each breach once
        await bench.step()
    assert bench.sim.request_count("delete") == 0
    assert bench.deletes_sent(RUN) == 0
    assert bench.decisions(RUN) == ["delete_pending", "would_delete"]
    assert all(record.dry_run for record in bench.actions(RUN))
    assert bench.runtime.deletions == {("run-cap", "dry_run"): 1}
    pending, result = (n for n in bench.sent if n.subject == RUN)
    assert pending.title.startswith("⏳ Would delete run")
    assert "Would delete" in result.title and "enforce.dry_run: false" in result.text
    await bench.close()


async def test_the_same_reading_seen_twice_counts_once(live: Bench) -> None:
    await live.run_until(lambda: live.over_cap(RUN))
    snapshot = live.runtime.runs[RUN]
    rule = live.settings.run_rules[0]
    evaluation = evaluate_run(rule, snapshot, [], now=live.clock.now(), burn_window=900.0)
    assert evaluation is not None and evaluation.breached
    for _ in range(3):  # the pipeline replays the same reading: still one confirmation
        await live.enforcer.observe(evaluation, snapshot)
    assert live.decisions(RUN) == []
    live.advance(STEP_SECONDS)
    await live.poll(RUN)  # a second, newer reading over the cap
    assert live.decisions(RUN) == ["delete_pending"]


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "error", "status": 503},
        {"kind": "drift", "field": "total_cost_usd"},
        {"kind": "hang", "hang_seconds": 5},
    ],
    ids=["503", "missing-field", "hang"],
)
async def test_no_delete_on_bad_data_until_fresh_valid_readings_confirm(
    bench_factory: Any, fault: dict[str, Any]
) -> None:
    live: Bench = bench_factory(dry_run=False, api_timeout=0.3)
    await live.run_until(lambda: live.decisions(RUN) == ["delete_pending"])
    live.sim.add_fault(endpoint="usage", run_id=RUN, **fault)
    for _ in range(8):  # the deadline passes while every reading fails
        await live.step()
    assert live.deletes_sent(RUN) == 0
    assert live.runtime.health[RUN].last_poll_failed
    assert live.decisions(RUN) == ["delete_pending"]

    live.sim.clear_faults()
    await live.step()  # one fresh valid reading: not yet (confirm_polls is 2)
    assert live.deletes_sent(RUN) == 0
    await live.step()
    assert live.deletes_sent(RUN) == 1
    assert live.decisions(RUN) == ["delete_pending", "delete_intent", "deleted"]
    assert live.kinds(RUN).count("delete_pending") == 1, "no second announcement"
    await live.close()


async def test_a_stale_reading_blocks_the_delete(bench_factory: Any) -> None:
    live: Bench = bench_factory(dry_run=False, grace_period=60)
    await live.run_until(lambda: live.decisions(RUN) == ["delete_pending"])
    # Nobody polls for longer than twice the poll interval (20 s): the 60 s deadline passes on old data.
    for _ in range(14):
        await live.step(poll=False)
    assert live.deletes_sent(RUN) == 0
    pending = live.enforcer.pending_deletes()
    assert len(pending) == 1 and "old" in (pending[0].waiting or "")
    await live.step()
    assert live.deletes_sent(RUN) == 0, "one fresh reading after a gap is not two consecutive ones"
    await live.step()
    assert live.deletes_sent(RUN) == 1
    await live.close()


async def test_a_static_glob_protects_by_name(bench_factory: Any) -> None:
    bench: Bench = bench_factory(dry_run=False, protect=["exp-run-b*", RUN])
    bench.runs = [RUN, "run-b"]
    for _ in range(40):
        await bench.step()
    assert bench.over_cap(RUN) and bench.over_cap("run-b")
    assert bench.sim.request_count("delete") == 0
    assert bench.decisions() == []
    assert bench.sent == []
    await bench.close()


async def test_protecting_during_the_grace_period_cancels_the_delete(live: Bench) -> None:
    await live.run_until(lambda: live.decisions(RUN) == ["delete_pending"])
    # What `prime-cost-monitor protect RUN` does, from another process, while the daemon runs.
    other = type(live.store)(live.settings.state.path)
    other.protect(RUN, until=None, reason="hand-tuning lr", now=live.clock.now())
    other.close()
    for _ in range(10):
        await live.step()
    assert live.deletes_sent(RUN) == 0
    assert live.decisions(RUN) == ["delete_pending", "cancelled"]
    cancelled = live.actions(RUN)[-1]
    assert "protected" in cancelled.reason and "hand-tuning lr" in cancelled.reason
    assert live.kinds(RUN) == ["delete_pending", "resolve"]
    assert live.runtime.deletions == {("run-cap", "cancelled"): 1}


async def test_a_runtime_protection_holds_until_it_expires(live: Bench) -> None:
    expires = live.clock.now() + 200
    live.store.protect(RUN, until=expires, reason="until the eval finishes", now=live.clock.now())
    while live.clock.now() < expires - STEP_SECONDS:
        await live.step()
    assert live.over_cap(RUN), "the run crossed its cap while protected"
    assert live.deletes_sent(RUN) == 0 and live.decisions(RUN) == []
    await live.run_until(lambda: live.deletes_sent(RUN) == 1)
    first_delete = live.sim.run_ledger(RUN)["first_delete_at"]
    assert first_delete >= expires + GRACE_SECONDS
    assert live.decisions(RUN) == ["delete_pending", "delete_intent", "deleted"]


async def test_the_hourly_cap_refuses_and_alerts_once(bench_factory: Any) -> None:
    bench: Bench = bench_factory(dry_run=False, max_deletes_per_hour=1)
    bench.runs = [RUN, "run-b", "run-c"]
    await bench.run_until(
        lambda: {"deleted", "refused"} <= set(bench.decisions()) and bench.decisions().count("refused") == 2
    )
    for _ in range(12):  # the refused runs stay over their caps: no new countdowns while the cap is full
        await bench.step()
    assert bench.sim.request_count("delete") == 1
    assert sum(bench.deletes_sent(run) for run in bench.runs) == 1
    assert bench.decisions().count("delete_pending") == 3
    assert bench.decisions().count("refused") == 2
    assert bench.kinds().count("delete_cap_reached") == 1
    assert bench.kinds().count("delete_refused") == 2
    assert bench.runtime.deletions[("run-cap", "refused")] == 2
    assert bench.runtime.deletions[("run-cap", "deleted")] == 1
    cap_alert = next(n for n in bench.sent if n.kind == "delete_cap_reached")
    assert "max_deletes_per_hour = 1" in cap_alert.title
    await bench.close()


async def test_the_action_log_renders_for_status(live: Bench) -> None:
    await live.run_until(lambda: "deleted" in live.decisions(RUN))
    records = live.store.actions(limit=10)
    text = render_actions(records)
    assert text.splitlines()[3].split()[5] == "deleted"  # title, header, rule, then newest first
    assert RUN in text and "delete_intent" in text and "$10" in text
    rows = actions_as_json(records)
    assert [row["decision"] for row in rows] == ["deleted", "delete_intent", "delete_pending"]
    assert rows[0]["intent_id"] == rows[1]["id"] and rows[0]["time"].endswith("Z")
    assert rows[2]["deadline"] is not None


async def test_grace_period_zero_deletes_on_the_confirming_reading(bench_factory: Any) -> None:
    live: Bench = bench_factory(dry_run=False, grace_period=0)
    await live.run_until(lambda: bool(live.decisions(RUN)))
    # Announced, re-read and deleted within the same poll, announcement first.
    assert live.decisions(RUN) == ["delete_pending", "delete_intent", "deleted"]
    assert live.deletes_sent(RUN) == 1
    assert live.kinds(RUN) == ["delete_pending", "delete_done"]
    assert "now" in live.sent[0].title
    await live.close()
