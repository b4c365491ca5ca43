"""The poller against the simulator on a manual clock: discovery, schedule, final reads, bad data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from monitor.api.client import PrimeClient, RetryPolicy
from monitor.clock import ManualClock
from monitor.config.load import load_settings
from monitor.config.settings import Settings
from monitor.exporter.live import RuntimeState
from monitor.poller import Poller
from monitor.store.state_store import StateStore
from tests.support.simulator import SimulatorHandle, running_simulator


class Rig:
    def __init__(self, sim: SimulatorHandle, tmp_path: Path, **overrides: Any) -> None:
        self.sim = sim
        self.clock = ManualClock(start=sim.now())
        self.settings: Settings = load_settings(
            None,
            overrides={
                "api": {"base_url": sim.base_url},
                "poll": {"interval": 10, "min_interval": 5},
                "state": {"path": str(tmp_path / "state.db")},
                **overrides,
            },
        )
        self.runtime = RuntimeState()
        self.store = StateStore(self.settings.state.path)
        self.client = PrimeClient(
            base_url=sim.base_url,
            api_key=SecretStr(sim.api_key),
            clock=self.clock,
            stats=self.runtime.requests,
            retry=RetryPolicy(max_attempts=1),
        )
        self.poller = Poller(
            settings=self.settings, client=self.client, store=self.store, runtime=self.runtime, clock=self.clock
        )

    def advance(self, seconds: float) -> None:
        self.sim.advance(seconds)
        self.clock.advance(seconds)

    async def close(self) -> None:
        await self.client.aclose()
        self.store.close()


@pytest.fixture
def sim() -> Iterator[SimulatorHandle]:
    with running_simulator(manual_clock=True) as handle:
        yield handle


async def test_wallet_rows_discover_runs_and_the_schedule_keeps_its_interval(
    sim: SimulatorHandle, tmp_path: Path
) -> None:
    rig = Rig(sim, tmp_path)
    wallet = await rig.poller.poll_wallet()
    assert wallet is not None
    # Only runs with billing rows in this wallet: run-queued has billed nothing yet, run-team-9b is on team-a.
    assert rig.poller.watch.active() == ["run-qwen4b"]
    first = await rig.poller.poll_due_runs()
    assert [s.run_id for s in first] == ["run-qwen4b"]
    assert await rig.poller.poll_due_runs() == []  # not due again yet
    # A tick that fires a little early (timer jitter) still polls a run due at the interval.
    rig.advance(9.9)
    assert [s.run_id for s in await rig.poller.poll_due_runs()] == ["run-qwen4b"]
    # Enforcement wants a fresh reading now (confirming a crossing): the run is read at min_interval.
    rig.poller.watch.read_by["run-qwen4b"] = rig.clock.monotonic()
    rig.advance(5)
    assert len(await rig.poller.poll_due_runs()) == 1
    await rig.close()


async def test_a_finished_run_is_read_once_more_then_not_polled(sim: SimulatorHandle, tmp_path: Path) -> None:
    rig = Rig(sim, tmp_path, watch={"runs": ["run-qwen4b"], "discover": False})
    await rig.poller.poll_due_runs()
    rig.advance(30)  # mid-way between two usage records (they land every 60 s)
    await rig.client.delete_run("run-qwen4b")
    rig.advance(10)  # STOPPED at once, but the last usage has not landed yet: not final
    early = await rig.poller.poll_due_runs()
    assert early[0].status == "STOPPED"
    assert rig.poller.watch.active() == ["run-qwen4b"]
    rig.advance(60)  # the final record lands
    final = await rig.poller.poll_due_runs()
    assert final[0].total_cost_usd == pytest.approx(sim.run_ledger("run-qwen4b")["accrued"]["total_cost_usd"])
    assert rig.poller.watch.active() == ["run-qwen4b"]  # changed since the last read: read once more
    rig.advance(10)
    assert (await rig.poller.poll_due_runs())[0].total_cost_usd == final[0].total_cost_usd
    assert rig.poller.watch.active() == []
    rig.advance(60)
    before = sim.request_count("usage")
    assert await rig.poller.poll_due_runs() == []
    assert sim.request_count("usage") == before
    # After a restart the run is still known as finished.
    restarted = Poller(
        settings=rig.settings, client=rig.client, store=rig.store, runtime=RuntimeState(), clock=rig.clock
    )
    restarted.restore()
    assert restarted.watch.active() == []
    await rig.close()


async def test_bad_data_is_counted_and_never_kept(sim: SimulatorHandle, tmp_path: Path) -> None:
    rig = Rig(sim, tmp_path, watch={"runs": ["run-qwen4b", "no-such-run"], "discover": False})
    good = await rig.poller.poll_due_runs()
    assert [s.run_id for s in good] == ["run-qwen4b"]
    missing = rig.runtime.health["no-such-run"]
    assert missing.last_kind == "not_found"
    assert missing.last_error is not None and "not found (HTTP 404)" in missing.last_error
    assert "/billing/runs/no-such-run/usage" in missing.last_error
    sim.add_fault(kind="drift", endpoint="usage", field="total_cost_usd")
    rig.advance(10)
    assert await rig.poller.poll_due_runs() == []
    health = rig.runtime.health["run-qwen4b"]
    assert health.consecutive_failures == 1 and "total_cost_usd" in (health.last_error or "")
    assert rig.runtime.invalid_responses["usage"] >= 1
    assert len(rig.store.run_history("run-qwen4b")) == 1  # the bad reading was not stored
    sim.clear_faults()
    rig.advance(10)
    assert len(await rig.poller.poll_due_runs()) == 1
    assert rig.runtime.health["run-qwen4b"].consecutive_failures == 0
    await rig.close()


async def test_discovery_selector_ignores_runs_that_do_not_match(sim: SimulatorHandle, tmp_path: Path) -> None:
    rig = Rig(sim, tmp_path, watch={"select": {"name": "prod-*"}})
    await rig.poller.poll_wallet()
    assert await rig.poller.poll_due_runs() == []  # exp-qwen4b is read once, then ignored
    assert rig.poller.watch.active() == []
    await rig.close()
