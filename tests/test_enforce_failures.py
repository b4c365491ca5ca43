"""Enforcement when things go wrong: API failures during the DELETE, runs deleted elsewhere, and
restarts at every point of the sequence (a crash never loses a due delete, never repeats a message).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.api.client import PrimeClient
from monitor.api.models import DeleteRunResponse
from tests.support.simulator import SimulatorHandle, running_simulator
from tests.test_enforce_support import GRACE_SECONDS, Bench, SimulatedCrash, make_settings, scenario

RUN = "run-big"


@pytest.fixture
def sim() -> Iterator[SimulatorHandle]:
    with running_simulator(scenario(RUN, "run-b"), manual_clock=True) as handle:
        yield handle


@pytest.fixture
def make(sim: SimulatorHandle, tmp_path: Path) -> Iterator[Any]:
    benches: list[Bench] = []

    def build(*, runs: list[str] | None = None, client_class: type[PrimeClient] = PrimeClient, **enforce: Any) -> Bench:
        enforce.setdefault("dry_run", False)
        settings = make_settings(sim, tmp_path / "state.db", **enforce)
        bench = Bench(sim, settings, runs=runs or [RUN], client_class=client_class)
        benches.append(bench)
        return bench

    yield build
    for bench in benches:
        bench.store.close()


class CrashBeforeDelete(PrimeClient):
    async def delete_run(self, run_id: str) -> DeleteRunResponse:
        raise SimulatedCrash


class CrashAfterDelete(PrimeClient):
    async def delete_run(self, run_id: str) -> DeleteRunResponse:
        await super().delete_run(run_id)
        raise SimulatedCrash


# -- the API during the DELETE ---------------------------------------------------------------------


async def test_401_on_delete_stops_enforcement_until_a_reload(make: Any, sim: SimulatorHandle) -> None:
    bench: Bench = make(runs=[RUN, "run-b"])
    sim.add_fault(kind="unauthorized", endpoint="delete", count=1)
    await bench.run_until(lambda: bench.enforcer.stopped is not None)
    for _ in range(10):  # run-b is due too, but nothing is deleted while stopped
        await bench.step()
    assert sim.request_count("delete") == 1 and sim.request_count("delete", 401) == 1
    assert bench.deletes_sent("run-b") == 0
    assert bench.decisions(RUN) == ["delete_pending", "delete_intent", "failed"]
    assert bench.kinds().count("enforcement_stopped") == 1
    assert "delete_failed" not in bench.kinds()
    stopped = next(n for n in bench.sent if n.kind == "enforcement_stopped")
    assert stopped.severity == "critical" and "reload" in stopped.text
    assert bench.runtime.deletions == {("run-cap", "failed"): 1}

    bench.enforcer.settings = make_settings(sim, Path(bench.settings.state.path), dry_run=False)  # SIGHUP
    assert bench.enforcer.stopped is None
    await bench.run_until(lambda: bench.deletes_sent(RUN) == 1 and bench.deletes_sent("run-b") == 1)
    # run-b's announced countdown completes; RUN's failed episode is followed by a new, announced one.
    assert bench.decisions("run-b") == ["delete_pending", "delete_intent", "deleted"]
    assert bench.kinds(RUN) == ["delete_pending", "enforcement_stopped", "delete_pending", "delete_done"]
    await bench.close()


async def test_5xx_on_delete_is_retried_with_backoff(make: Any, sim: SimulatorHandle) -> None:
    bench: Bench = make()
    sim.add_fault(kind="error", status=503, endpoint="delete", count=2)
    await bench.run_until(lambda: bench.deletes_sent(RUN) == 1)
    attempts = [r["at"] for r in sim.requests()["recent"] if r["endpoint"] == "delete"]
    assert len(attempts) == 3
    assert attempts[1] - attempts[0] >= 30 and attempts[2] - attempts[1] >= 60
    assert bench.decisions(RUN) == ["delete_pending", "delete_intent", "failed", "failed", "deleted"]
    intent = bench.actions(RUN)[1]
    retries = bench.actions(RUN)[2:4]
    # A retry leaves the intent open (no intent_id) and names it in its evidence.
    assert all(r.intent_id is None and r.evidence.attempts[-1].intent_id == intent.id for r in retries)
    assert bench.actions(RUN)[-1].intent_id == intent.id
    assert bench.kinds(RUN) == ["delete_pending", "delete_done"]
    assert bench.runtime.deletions == {("run-cap", "deleted"): 1}
    await bench.close()


async def test_a_delete_that_keeps_failing_is_given_up_loudly_once(make: Any, sim: SimulatorHandle) -> None:
    bench: Bench = make()
    sim.add_fault(kind="error", status=502, endpoint="delete")
    await bench.run_until(lambda: "delete_failed" in bench.kinds(), max_steps=150)
    for _ in range(30):
        await bench.step(30)
    assert sim.request_count("delete", 502) == 5
    assert bench.deletes_sent(RUN) == 0
    assert bench.decisions(RUN).count("failed") == 5
    assert bench.decisions(RUN).count("delete_pending") == 1, "no new countdown after giving up"
    assert bench.kinds(RUN) == ["delete_pending", "delete_failed"]
    assert bench.runtime.deletions == {("run-cap", "failed"): 1}
    await bench.close()


async def test_a_404_on_delete_is_already_gone_not_a_failure(make: Any, sim: SimulatorHandle) -> None:
    class RunVanishes(PrimeClient):
        """Someone removes the run between the monitor's re-read and its DELETE."""

        async def delete_run(self, run_id: str) -> DeleteRunResponse:
            sim.engine.runs.pop(run_id, None)
            return await super().delete_run(run_id)

    bench: Bench = make(client_class=RunVanishes)
    await bench.run_until(lambda: "already_gone" in bench.decisions(RUN))
    for _ in range(10):
        await bench.step()
    assert sim.request_count("delete") == 1 and sim.request_count("delete", 404) == 1
    assert bench.decisions(RUN) == ["delete_pending", "delete_intent", "already_gone"]
    assert bench.kinds(RUN) == ["delete_pending", "delete_done"]
    assert bench.sent[-1].severity == "info" and "already gone" in bench.sent[-1].title
    assert bench.runtime.deletions == {("run-cap", "already_gone"): 1}
    await bench.close()


@pytest.mark.parametrize("poll_after", [True, False], ids=["seen-by-a-poll", "seen-by-the-re-read"])
async def test_a_run_stopped_elsewhere_is_cancelled_not_deleted(
    make: Any, sim: SimulatorHandle, poll_after: bool
) -> None:
    bench: Bench = make()
    await bench.run_until(lambda: bench.decisions(RUN) == ["delete_pending"])
    # `prime train delete` by a person during the grace period.
    async with httpx.AsyncClient(base_url=sim.base_url, headers=sim.auth_headers) as person:
        (await person.delete(f"/api/v1/training/runs/{RUN}")).raise_for_status()
    for _ in range(int(GRACE_SECONDS // 5) + 1):
        await bench.step(poll=poll_after)
    assert sim.request_count("delete") == 1 and bench.deletes_sent(RUN) == 1, "only the person's DELETE"
    assert bench.decisions(RUN) == ["delete_pending", "cancelled"]
    assert "STOPPED" in bench.actions(RUN)[-1].reason
    assert bench.kinds(RUN) == ["delete_pending", "resolve"]
    assert bench.runtime.deletions == {("run-cap", "cancelled"): 1}
    await bench.close()


# -- restarts ----------------------------------------------------------------------------------------


async def test_an_intent_without_result_is_completed_once_on_restart(make: Any, sim: SimulatorHandle) -> None:
    first: Bench = make(client_class=CrashBeforeDelete)
    with pytest.raises(SimulatedCrash):
        await first.run_until(lambda: False)
    assert first.decisions(RUN) == ["delete_pending", "delete_intent"]
    assert first.deletes_sent(RUN) == 0

    second = await first.restart()
    assert second.deletes_sent(RUN) == 1
    assert second.decisions(RUN) == ["delete_pending", "delete_intent", "reconciled"]
    assert second.actions(RUN)[-1].intent_id == second.actions(RUN)[1].id
    third = await second.restart()
    for _ in range(6):
        await third.step()
    assert third.deletes_sent(RUN) == 1
    assert third.kinds(RUN) == ["delete_pending", "delete_done"]
    assert third.runtime.deletions == {}, "counted by the process that did it"
    await third.close()


async def test_a_crash_after_the_delete_landed_sends_one_result(make: Any, sim: SimulatorHandle) -> None:
    first: Bench = make(client_class=CrashAfterDelete)
    with pytest.raises(SimulatedCrash):
        await first.run_until(lambda: False)
    landed_at = sim.run_ledger(RUN)["first_delete_at"]
    second = await first.restart()
    ledger = sim.run_ledger(RUN)
    # The re-read after the restart shows the run STOPPED: the DELETE landed, none is sent again.
    assert ledger["delete_count"] == 1, "no second DELETE for a run the first one already stopped"
    assert ledger["first_delete_at"] == landed_at
    assert second.decisions(RUN)[-1] == "reconciled"
    assert "no second DELETE" in second.actions(RUN)[-1].reason
    assert second.kinds(RUN) == ["delete_pending", "delete_done"]
    assert second.runtime.deletions == {("run-cap", "deleted"): 1}
    await second.close()


async def test_a_pending_announcement_survives_a_restart_without_a_second_one(make: Any, sim: SimulatorHandle) -> None:
    first: Bench = make(grace_period=60)
    await first.run_until(lambda: first.decisions(RUN) == ["delete_pending"])
    deadline = first.enforcer.pending_deletes()[0].deadline
    second = await first.restart()
    assert second.kinds(RUN) == ["delete_pending"]
    assert second.enforcer.pending_runs() == {RUN}
    await second.run_until(lambda: second.deletes_sent(RUN) == 1)
    assert sim.run_ledger(RUN)["first_delete_at"] >= deadline
    assert second.kinds(RUN) == ["delete_pending", "delete_done"]
    assert second.decisions(RUN) == ["delete_pending", "delete_intent", "deleted"]
    await second.close()


async def test_after_a_long_outage_the_resumed_countdown_needs_fresh_readings(make: Any, sim: SimulatorHandle) -> None:
    first: Bench = make()
    await first.run_until(lambda: first.decisions(RUN) == ["delete_pending"])
    first.advance(300)  # the daemon is down past the deadline
    second = await first.restart()
    await second.step()
    assert second.deletes_sent(RUN) == 0, "one fresh reading does not confirm"
    await second.step()
    assert second.deletes_sent(RUN) == 1
    assert second.kinds(RUN) == ["delete_pending", "delete_done"]
    await second.close()


async def test_a_countdown_recorded_but_never_announced_is_announced_once(make: Any, sim: SimulatorHandle) -> None:
    first: Bench = make()
    first.enforcer.journal.dispatcher = None  # the crash came between the record and the publish
    await first.run_until(lambda: first.decisions(RUN) == ["delete_pending"])
    assert first.sent == []
    second = await first.restart()
    assert second.kinds(RUN) == ["delete_pending"]
    await second.run_until(lambda: second.deletes_sent(RUN) == 1)
    assert second.kinds(RUN) == ["delete_pending", "delete_done"]
    await second.close()


async def test_restarting_in_dry_run_cancels_an_open_intent(make: Any, sim: SimulatorHandle, tmp_path: Path) -> None:
    first: Bench = make(client_class=CrashBeforeDelete)
    with pytest.raises(SimulatedCrash):
        await first.run_until(lambda: False)
    second = await first.restart(settings=make_settings(sim, tmp_path / "state.db", dry_run=True))
    assert sim.request_count("delete") == 0
    assert second.decisions(RUN) == ["delete_pending", "delete_intent", "cancelled"]
    assert "dry_run" in second.actions(RUN)[-1].reason
    await second.close()
