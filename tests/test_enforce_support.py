"""The enforcement tests' bench (no tests here): the simulator with fast-burning runs on a manual
clock, and the monitor wired as the daemon wires it (monitor.wiring: a real PrimeClient over a
loopback socket, the poller, the pipeline, a real StateStore file, a real OutboxDispatcher), on a
ManualClock moved in step with the simulator's, so readings, deadlines and the ledger agree to the
second. Only enforcement's messages are kept for the tests to look at.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from monitor.api.client import PrimeClient, RetryPolicy
from monitor.clock import ManualClock
from monitor.config.settings import Settings
from monitor.exporter.live import RuntimeState
from monitor.records import ActionRecord, Notification
from monitor.snapshots import RunSnapshot
from monitor.wiring import build
from tests.support.rig import RecordingNotifier
from tests.support.simulator import SimulatorHandle

CAP_USD = 10.0
# Qwen3.5-397B-A17B at $1 in / $3 out / $4 train per Mtok: 0.08 + 0.01 + 0.015 = $0.105 a second ($378/h).
RATES = {"training": 20_000, "inference_input": 10_000, "inference_output": 5_000}
BURN_USD_PER_SECOND = (20_000 * 4.0 + 10_000 * 1.0 + 5_000 * 3.0) / 1e6
METER_SECONDS = 5.0
STEP_SECONDS = 5.0
POLL_INTERVAL = 10.0
GRACE_SECONDS = 20.0
# Enough steps for a run to cross a $10 cap from zero (95 s), confirm and wait out the grace period.
MAX_STEPS = 80


def scenario(*runs: str, names: dict[str, str] | None = None) -> dict[str, Any]:
    """Runs that start burning at once; run names default to `exp-<id>`."""
    return {
        "api_keys": ["sim-key"],
        "admin_token": "sim-admin",
        "meter_interval": METER_SECONDS,
        "seed": 7,
        "defaults": {"step_seconds": 30, "queue_seconds": 0},
        "runs": [
            {
                "id": run_id,
                "name": (names or {}).get(run_id, f"exp-{run_id}"),
                "base_model": "Qwen/Qwen3.5-397B-A17B",
                "rates": RATES,
                "queue_seconds": 0,
            }
            for run_id in runs
        ],
    }


def make_settings(sim: SimulatorHandle, state_path: Path, **enforce: Any) -> Settings:
    return Settings(
        api={
            "base_url": sim.base_url,
            "api_key": SecretStr(sim.api_key),
            "max_retries": 0,
            "timeout": enforce.pop("api_timeout", 5.0),
        },
        watch={"discover": False},
        poll={"interval": POLL_INTERVAL, "min_interval": STEP_SECONDS},
        rules=[
            {"name": "run-cap", "scope": "run", "metric": "total_cost_usd", "threshold": CAP_USD, "action": "delete"}
        ],
        # The reactive path with the whole grace period (a countdown only once the cap is crossed, never
        # shortened for pace); anticipation and the overspend cap: test_anticipation.py.
        enforce={
            "grace_period": GRACE_SECONDS,
            "confirm_polls": 2,
            "anticipate": False,
            "grace_overspend_cap": None,
            **enforce,
        },
        state={"path": str(state_path)},
    )


class SimulatedCrash(BaseException):
    """The process dies here: nothing after this line of the enforcer runs."""


def enforcement_only(notification: Notification) -> bool:
    """Enforcement's messages (their keys all start with delete_): what these tests look at."""
    return notification.dedup_key.startswith("delete_")


class Bench:
    """One monitor process, wired as the daemon wires it (monitor.wiring) but stepped by hand.
    `restart()` builds a new one on the same state file, as after a crash."""

    def __init__(
        self,
        sim: SimulatorHandle,
        settings: Settings,
        *,
        runs: list[str],
        clock: ManualClock | None = None,
        sent: list[Notification] | None = None,
        client_class: type[PrimeClient] = PrimeClient,
        publish: bool = True,
    ) -> None:
        self.sim = sim
        self.settings = settings
        self.runs = runs
        self.clock = clock or ManualClock(start=sim.now())
        self.sent: list[Notification] = sent if sent is not None else []
        self.runtime = RuntimeState()
        api = settings.api
        client = client_class(
            base_url=api.base_url,
            api_key=api.api_key,
            timeout=api.timeout,
            clock=self.clock,
            stats=self.runtime.requests,
            retry=RetryPolicy(max_attempts=api.max_retries + 1),
        )
        recorder = RecordingNotifier(self.sent, keep=enforcement_only)
        self.parts = build(settings, clock=self.clock, notifiers=[recorder], client=client, runtime=self.runtime)
        self.store = self.parts.store
        self.client = self.parts.client
        self.dispatcher = self.parts.dispatcher
        self.poller = self.parts.poller
        self.enforcer = self.parts.enforcer
        if not publish:
            self.enforcer.journal.dispatcher = None

    async def restart(
        self, *, client_class: type[PrimeClient] = PrimeClient, settings: Settings | None = None
    ) -> Bench:
        """The old process is gone (its undelivered messages stay in the store); a new one reconciles."""
        await self.client.aclose()
        self.store.close()
        bench = Bench(
            self.sim,
            settings or self.settings,
            runs=self.runs,
            clock=self.clock,
            sent=self.sent,
            client_class=client_class,
        )
        await bench.enforcer.reconcile()
        await bench.dispatcher.deliver_due()
        return bench

    async def close(self) -> None:
        await self.client.aclose()
        self.store.close()

    def advance(self, seconds: float) -> None:
        self.sim.advance(seconds)
        self.clock.advance(seconds)

    async def poll(self, run_id: str) -> RunSnapshot | None:
        """What the daemon does with one reading: read, judge, evaluate, hand delete rules to enforcement."""
        return await self.poller.poll_run(run_id)

    async def step(self, seconds: float = STEP_SECONDS, *, poll: bool = True) -> None:
        self.advance(seconds)
        if poll:
            for run_id in self.runs:
                await self.poll(run_id)
        await self.enforcer.tick()
        await self.dispatcher.deliver_due()

    async def run_until(self, done: Callable[[], bool], *, max_steps: int = MAX_STEPS) -> int:
        """Steps until `done()`; fails the test if it never happens."""
        for steps in range(1, max_steps + 1):
            await self.step()
            if done():
                return steps
        raise AssertionError(f"not done after {max_steps} steps; action log: {self.decisions()}")

    def actions(self, run_id: str | None = None) -> list[ActionRecord]:
        return list(reversed(self.store.actions(run_id=run_id, limit=1000)))

    def decisions(self, run_id: str | None = None) -> list[str]:
        return [record.decision for record in self.actions(run_id)]

    def kinds(self, run_id: str | None = None) -> list[str]:
        return [n.kind for n in self.sent if run_id is None or n.subject == run_id]

    def deletes_sent(self, run_id: str) -> int:
        return int(self.sim.run_ledger(run_id)["delete_count"])

    def over_cap(self, run_id: str) -> bool:
        snapshot = self.runtime.runs.get(run_id)
        return snapshot is not None and snapshot.total_cost_usd >= CAP_USD
