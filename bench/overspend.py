"""Overspend: the money runs spend past their budgets before the DELETE lands, and the API calls it takes.

    .venv/bin/python bench/overspend.py                      # both scenarios, four policies
    .venv/bin/python bench/overspend.py --scenario stress
    .venv/bin/python bench/overspend.py --quick              # a small size (CI smoke test)

Two scenarios, each a seeded set of runs in the simulator (a manual clock: hours of billing pass in
seconds, nothing waits on wall time):
  realistic  20 runs at $0.01-$0.5/s, budgets $20-$2,000 reached in 30 min to 3 h, usage landing
             every 60 s (the billing lag);
  stress     20 runs at $0.05-$5/s, budgets $5-$100, usage landing every 5 s.
Four policies watch each, one at a time, on a fresh simulator:
  naive         read every run every 30 s, DELETE on the first reading over the budget;
  naive+safety  the same poller with the shipped confirmation and grace (confirm_polls 2, grace 2 min),
                i.e. the monitor with adaptive polling and anticipation off;
  defaults      the monitor's defaults (polling by time to limit, anticipated countdowns);
  kill-ahead    the defaults with `kill_ahead: true` on every budget rule.
The monitor runs in-process (monitor.wiring, the daemon's jobs stepped every simulated second).

Per policy it prints: total and worst overspend ($, and % of the budgets), usage and DELETE requests,
the crossing -> DELETE delay and where it goes (billing lag: crossing to the landing that shows it;
poll wait: that landing to the first read of it; confirmation: to the last confirming reading; the
rest: grace period and re-read), and ratios against the naive poller. A negative overspend is a run
stopped under its budget (kill-ahead). No asserts: figures.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import contextlib

from pydantic import SecretStr

from monitor.api.client import PrimeClient
from monitor.api.errors import NotFoundError
from monitor.clock import ManualClock
from monitor.config.settings import Settings
from monitor.daemon import ENFORCE_INTERVAL, Daemon
from monitor.logs import configure_logging
from tests.support.simulator import SimulatorHandle, running_simulator

POLICIES = ("naive", "naive+safety", "defaults", "kill-ahead")
NAIVE_INTERVAL = 30.0


@dataclass(frozen=True)
class Scenario:
    name: str
    runs: list[dict[str, Any]]
    budgets: dict[str, float]
    rates: dict[str, float]  # $ per second
    meter: float
    horizon: float  # seconds of billing to simulate
    phase: float  # seconds after a landing when the watcher starts


def make_scenario(name: str, *, count: int, quick: bool, seed: int = 7) -> Scenario:
    rng = random.Random(f"{name}:{seed}")
    runs, budgets, rates = [], {}, {}
    for i in range(count):
        if name == "realistic":
            rate = math.exp(rng.uniform(math.log(0.01), math.log(0.5)))
            hours = rng.uniform(0.5, 3.0) if not quick else rng.uniform(0.1, 0.25)
            budget = min(max(rate * hours * 3600, 20.0), 2000.0)
        else:
            rate = math.exp(rng.uniform(math.log(0.05), math.log(5.0)))
            budget = rng.uniform(5.0, 100.0)
        run_id = f"run-{i:02d}"
        # $1 per million training tokens: tokens per second = dollars per second x 1e6.
        runs.append(
            {
                "id": run_id,
                "name": f"exp-{run_id}",
                "base_model": "bench/model",
                "rates": {"training": round(rate * 1e6), "inference_input": 0, "inference_output": 0},
                "pricing": {
                    "training_per_mtok": 1.0,
                    "inference_input_per_mtok": 1.0,
                    "inference_output_per_mtok": 1.0,
                },
                "queue_seconds": 0,
            }
        )
        budgets[run_id] = round(budget, 2)
        rates[run_id] = round(rate * 1e6) / 1e6
    meter = 60.0 if name == "realistic" else 5.0
    horizon = max(budgets[r] / rates[r] for r in budgets) + 900.0
    # Where the watchers start relative to the landing grid: not on it (a poller reading at the very
    # second usage lands would see every landing at once and look better than any real one).
    phase = rng.uniform(0.0, meter)
    return Scenario(name=name, runs=runs, budgets=budgets, rates=rates, meter=meter, horizon=horizon, phase=phase)


def sim_scenario(scenario: Scenario) -> dict[str, Any]:
    return {
        "api_keys": ["sim-key"],
        "admin_token": "sim-admin",
        "meter_interval": scenario.meter,
        "seed": 1,
        "request_log_size": 100_000,
        "wallets": [{"wallet_id": "wallet-bench", "starting_balance_usd": 1_000_000}],
        "runs": scenario.runs,
    }


def monitor_settings(sim: SimulatorHandle, scenario: Scenario, policy: str, state: Path) -> Settings:
    rules = [
        {
            "name": f"budget-{run_id}",
            "scope": "run",
            "match": {"run_id": [run_id]},
            "metric": "total_cost_usd",
            "threshold": budget,
            "action": "delete",
            "kill_ahead": policy == "kill-ahead",
        }
        for run_id, budget in scenario.budgets.items()
    ]
    poll: dict[str, Any] = {}
    enforce: dict[str, Any] = {"dry_run": False, "max_deletes_per_hour": 1000}
    if policy == "naive+safety":
        poll["adaptive"] = False
        enforce["anticipate"] = False
    return Settings(
        api={"base_url": sim.base_url, "api_key": SecretStr(sim.api_key), "max_retries": 0},
        watch={"runs": list(scenario.budgets), "discover": False},
        poll=poll,
        rules=rules,
        enforce=enforce,
        state={"path": str(state)},
        log={"level": "error"},
    )


async def run_naive(sim: SimulatorHandle, scenario: Scenario, clock: ManualClock) -> None:
    client = PrimeClient(base_url=sim.base_url, api_key=SecretStr(sim.api_key), clock=clock)
    alive = set(scenario.budgets)
    elapsed = 0.0
    try:
        while alive and elapsed < scenario.horizon:
            for run_id in sorted(alive):
                usage = await client.get_run_usage(run_id)
                if usage.total_cost_usd >= scenario.budgets[run_id]:
                    with contextlib.suppress(NotFoundError):
                        await client.delete_run(run_id)
                    alive.discard(run_id)
            sim.advance(NAIVE_INTERVAL)
            clock.advance(NAIVE_INTERVAL)
            elapsed += NAIVE_INTERVAL
    finally:
        await client.aclose()


async def run_monitor(
    sim: SimulatorHandle, scenario: Scenario, clock: ManualClock, policy: str, workdir: Path
) -> Daemon:
    settings = monitor_settings(sim, scenario, policy, workdir / f"{scenario.name}-{policy}.db")
    daemon = Daemon(settings=settings, clock=clock, notifiers=[], serve_http=False)
    await daemon.start()
    parts = daemon.parts
    elapsed = 0.0
    wallet_due = poll_due = enforce_due = 0.0
    # The daemon's own job cadence (monitor.daemon): the run poll every min(min_interval, interval),
    # the enforcement tick every ENFORCE_INTERVAL.
    poll_tick = min(settings.poll.min_interval, settings.poll.interval)
    while elapsed < scenario.horizon:
        if all(sim.engine.runs[r].first_delete_at is not None for r in scenario.budgets):
            break
        if elapsed >= wallet_due:
            await daemon.poll_wallet()
            wallet_due = elapsed + settings.poll.wallet_interval
        if elapsed >= poll_due:
            daemon._mark_hot()
            await parts.poller.poll_due_runs()
            poll_due = elapsed + poll_tick
        if elapsed >= enforce_due:
            await parts.enforcer.tick()
            enforce_due = elapsed + ENFORCE_INTERVAL
        sim.advance(1.0)
        clock.advance(1.0)
        elapsed += 1.0
    await parts.aclose()
    return daemon


@dataclass
class RunResult:
    budget: float
    overspend: float  # $; negative: stopped under the budget
    delay: float | None
    lag: float | None
    poll_wait: float | None
    confirmation: float | None


@dataclass
class PolicyResult:
    policy: str
    runs: list[RunResult]
    usage_requests: int
    delete_requests: int
    seconds: float

    @property
    def total_overspend(self) -> float:
        return sum(max(r.overspend, 0.0) for r in self.runs)

    @property
    def worst(self) -> RunResult:
        return max(self.runs, key=lambda r: r.overspend)


def measure(sim: SimulatorHandle, scenario: Scenario, policy: str, *, store: Any, seconds: float) -> PolicyResult:
    ledger = sim.ledger()["runs"]
    requests = sim.requests()
    usage_paths: dict[str, list[float]] = {}
    for request in requests["recent"]:
        if request["endpoint"] == "usage" and request["status"] == 200:
            run_id = request["path"].split("/")[-2]
            usage_paths.setdefault(run_id, []).append(float(request["at"]))
    results = []
    for run_id, budget in scenario.budgets.items():
        entry = ledger[run_id]
        rate = scenario.rates[run_id]
        crossing = float(entry["started_at"]) + budget / rate
        deleted = entry["first_delete_at"]
        spent = float(entry["accrued"]["total_cost_usd"])
        if deleted is None:
            results.append(RunResult(budget, spent - budget, None, None, None, None))
            continue
        landing = math.ceil(crossing / scenario.meter) * scenario.meter
        lag = landing - crossing
        first_read = next((t for t in sorted(usage_paths.get(run_id, [])) if t >= landing), None)
        poll_wait = None if first_read is None else first_read - landing
        confirmation = None
        if store is not None and first_read is not None:
            # The confirm_polls-th read showing the crossing (every read after its landing does).
            shown = [t for t in sorted(usage_paths.get(run_id, [])) if t >= landing]
            keep = Settings().enforce.confirm_polls
            confirmation = shown[keep - 1] - shown[0] if len(shown) >= keep else None
        results.append(RunResult(budget, spent - budget, float(deleted) - crossing, lag, poll_wait, confirmation))
    counts = requests["counts"]
    usage = sum(int(n) for status, n in counts.get("usage", {}).items())
    deletes = sum(int(n) for status, n in counts.get("delete", {}).items())
    return PolicyResult(policy, results, usage, deletes, seconds)


async def run_policy(scenario: Scenario, policy: str, workdir: Path) -> PolicyResult:
    with running_simulator(sim_scenario(scenario), manual_clock=True) as sim:
        sim.advance(scenario.phase)  # the runs start burning now; the watcher starts off the landing grid
        clock = ManualClock(start=sim.now())
        started = time.perf_counter()
        store = None
        if policy == "naive":
            await run_naive(sim, scenario, clock)
        else:
            daemon = await run_monitor(sim, scenario, clock, policy, workdir)
            from monitor.store.state_store import StateStore

            store = StateStore(daemon.settings.state.path)
        result = measure(sim, scenario, policy, store=store, seconds=time.perf_counter() - started)
        if store is not None:
            store.close()
        return result


def _mean(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{sum(known) / len(known):7.1f}" if known else "      -"


def report(scenario: Scenario, results: list[PolicyResult]) -> None:
    total_budget = sum(scenario.budgets.values())
    naive = results[0]
    print(
        f"\nscenario {scenario.name}: {len(scenario.budgets)} runs, budgets ${total_budget:,.0f} in all,"
        f" usage landing every {scenario.meter:.0f}s"
    )
    print(
        "policy        overspend $  % budgets  x naive   worst $ (% of its budget)  usage req  x naive  DELETE"
        "  delay s   lag s  poll s  confirm s  rest s  undeleted  wall s"
    )
    for result in results:
        total = result.total_overspend
        worst = result.worst
        delays = [r.delay for r in result.runs]
        lag = [r.lag for r in result.runs]
        poll = [r.poll_wait for r in result.runs]
        confirm = [r.confirmation for r in result.runs]
        rest = [
            None
            if r.delay is None or r.lag is None or r.poll_wait is None
            else r.delay - r.lag - r.poll_wait - (r.confirmation or 0.0)
            for r in result.runs
        ]
        undeleted = sum(1 for r in result.runs if r.delay is None)
        ratio = total / naive.total_overspend if naive.total_overspend else float("nan")
        req_ratio = result.usage_requests / naive.usage_requests if naive.usage_requests else float("nan")
        print(
            f"{result.policy:<12} {total:12,.2f} {100 * total / total_budget:9.2f}% {ratio:8.2f}"
            f"  {worst.overspend:9.2f} ({100 * worst.overspend / worst.budget:6.1f}%)        "
            f"{result.usage_requests:9d} {req_ratio:8.2f} {result.delete_requests:7d}"
            f" {_mean(delays)} {_mean(lag)} {_mean(poll)} {_mean(confirm)}  {_mean(rest)}"
            f" {undeleted:10d} {result.seconds:7.1f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=["realistic", "stress", "both"], default="both")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="5 runs, short budgets: a smoke test in seconds")
    args = parser.parse_args()
    configure_logging(fmt="console", level="error")
    runs = 5 if args.quick else args.runs
    names = ["realistic", "stress"] if args.scenario == "both" else [args.scenario]
    with tempfile.TemporaryDirectory(prefix="overspend-") as tmp:
        for name in names:
            scenario = make_scenario(name, count=runs, quick=args.quick)
            results = [asyncio.run(run_policy(scenario, policy, Path(tmp))) for policy in POLICIES]
            report(scenario, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
