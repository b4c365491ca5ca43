"""Never blind, never wrong: the whole monitor in-process (the daemon's own wiring) against the simulator
on a manual clock, under faults and billing data a real API produces.

- good and failing runs in one pass: the failing ones are confined and told once, the good one is
  alerted and deleted on time;
- a total 401 outage and a failing store: one "blind", one "restored";
- billing corrections, implausible readings, price changes mid-run, 404 runs, hostile ids,
  wallets with more rows than one read; a host clock that jumps.
Process-level drills (SIGKILL, SIGHUP, two daemons): test_trust_process.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor.clock import ManualClock
from monitor.config.load import load_settings
from monitor.config.settings import Settings
from monitor.daemon import Daemon
from monitor.exporter.collector import build_registry
from monitor.pass_result import EXIT_UNREADABLE
from monitor.records import Evaluation
from monitor.snapshots import RunSnapshot
from tests.support.rig import MonitorRig
from tests.support.simulator import SimulatorHandle, running_simulator

CAP = 10.0
# Qwen3.5-397B-A17B at $1 in / $3 out / $4 train per Mtok: 0.08 + 0.01 + 0.015 = $0.105 a second.
FAST = {"training": 20_000, "inference_input": 10_000, "inference_output": 5_000}
SLOW = {"training": 200, "inference_input": 100, "inference_output": 50}
MODEL = "Qwen/Qwen3.5-397B-A17B"


def run(run_id: str, rates: dict[str, int] = SLOW, **extra: Any) -> dict[str, Any]:
    return {"id": run_id, "name": f"exp-{run_id}", "base_model": MODEL, "rates": rates, "queue_seconds": 0, **extra}


def scenario(*runs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "api_keys": ["sim-key"],
        "admin_token": "sim-admin",
        "meter_interval": 5,
        "seed": 3,
        "wallets": [{"wallet_id": "wallet-personal", "starting_balance_usd": 100_000}],
        "runs": list(runs),
        **extra,
    }


def settings(sim: SimulatorHandle, tmp_path: Path, **sections: Any) -> Settings:
    base: dict[str, Any] = {
        "api": {"base_url": sim.base_url, "api_key": sim.api_key, "max_retries": 0, "timeout": 5},
        "watch": {"discover": False},
        # Every run read at least every 10 s (max_interval = interval): these tests are about trust, not schedule.
        "poll": {"interval": 10, "min_interval": 5, "wallet_interval": 10, "max_interval": 10},
        "rules": [
            {"name": "run-cap", "scope": "run", "metric": "total_cost_usd", "threshold": CAP, "action": "delete"}
        ],
        "enforce": {"dry_run": False, "grace_period": 20, "confirm_polls": 2},
        "health": {"blind_after": 20, "run_alert_after": 2, "stale_intervals": 3},
        "state": {"path": str(tmp_path / "state.db")},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values} if isinstance(values, dict) else values
    return Settings(**base)


@pytest.fixture
def sims() -> Iterator[Any]:
    handles: list[Any] = []

    def start(*runs: dict[str, Any], **extra: Any) -> SimulatorHandle:
        context = running_simulator(scenario(*runs, **extra), manual_clock=True)
        handle = context.__enter__()
        handles.append(context)
        return handle

    yield start
    for context in handles:
        context.__exit__(None, None, None)


def metric_samples(rig: MonitorRig, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = generate_latest(build_registry(rig.parts.runtime, include_process=False)).decode()
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


async def test_failing_runs_are_confined_and_told_once_while_a_breaching_run_is_deleted_on_time(
    sims: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = sims(run("run-hot", FAST), run("run-401"), run("run-403"), run("run-garbage"), run("run-raises"))
    sim.add_fault(kind="unauthorized", endpoint="usage", run_id="run-401")
    sim.add_fault(kind="forbidden", endpoint="usage", run_id="run-403")
    sim.add_fault(kind="malformed", endpoint="usage", run_id="run-garbage")
    watched = ["run-hot", "run-401", "run-403", "run-404", "run-garbage", "run-raises"]
    # A bug in the processing of one run's readings: a real exception inside the pipeline.
    import monitor.pipeline as pipeline_module

    real_evaluate = pipeline_module.evaluate_run  # type: ignore[attr-defined]

    def evaluate_or_crash(rule: Any, snapshot: RunSnapshot, *args: Any, **kwargs: Any) -> Evaluation | None:
        if snapshot.run_id == "run-raises":
            raise RuntimeError("boom in the rules for one run")
        return real_evaluate(rule, snapshot, *args, **kwargs)

    monkeypatch.setattr(pipeline_module, "evaluate_run", evaluate_or_crash)
    rig = await MonitorRig(sim, settings(sim, tmp_path, watch={"runs": watched})).start()
    crossed_at = None
    for _ in range(60):
        await rig.step(5)
        if crossed_at is None and sim.run_ledger("run-hot")["accrued"]["total_cost_usd"] >= CAP:
            crossed_at = sim.now()
        if sim.run_ledger("run-hot")["delete_count"]:
            break
    ledger = sim.run_ledger("run-hot")
    assert ledger["delete_count"] == 1 and crossed_at is not None
    # On time: the billing lag, two confirming polls at min_interval, the grace period, one tick.
    assert ledger["first_delete_at"] - crossed_at <= 5 + 2 * 5 + 20 + 5
    assert rig.decisions("run-hot") == ["delete_pending", "delete_intent", "deleted"]
    for _ in range(4):
        await rig.step(5)
    unreadable = {n.subject: n for n in rig.sent if n.kind == "run_unreadable"}
    assert sorted(unreadable) == ["run-401", "run-403", "run-404", "run-garbage", "run-raises"]
    assert [n.kind for n in rig.sent].count("run_unreadable") == 5, "one alert per failing run, not one per poll"
    assert "not found (HTTP 404)" in unreadable["run-404"].text or "404" in unreadable["run-404"].text
    assert "boom in the rules" in unreadable["run-raises"].text
    assert "monitor_blind" not in rig.kinds(), "the monitor as a whole can see"
    kinds = {run_id: rig.parts.runtime.health[run_id].last_kind for run_id in watched}
    assert kinds == {
        "run-hot": "ok",
        "run-401": "unauthorized",
        "run-403": "forbidden",
        "run-404": "not_found",
        "run-garbage": "invalid_response",
        "run-raises": "internal_error",
    }
    states = metric_samples(rig, "prime_run_read_state")
    assert states[(("run_id", "run-404"), ("state", "not_found"))] == 1.0
    problems, warnings = rig.daemon.health.readiness()
    assert problems == [] and len(warnings) == 5
    await rig.close()


async def test_a_total_401_outage_sends_one_blind_and_one_restored(sims: Any, tmp_path: Path) -> None:
    sim = sims(run("run-a"), run("run-b"))
    rig = await MonitorRig(sim, settings(sim, tmp_path, watch={"runs": ["run-a", "run-b"]})).start()
    await rig.steps(2, 5)
    assert rig.daemon.health.readiness()[0] == []
    sim.add_fault(kind="unauthorized", endpoint="any")
    await rig.step(5)
    await rig.step(5)
    problems = rig.daemon.health.readiness()[0]
    assert any("key refused" in p for p in problems), problems
    await rig.steps(12, 5)  # a minute of outage: far past blind_after
    assert rig.kinds() == ["monitor_blind"]
    blind = rig.sent[0]
    assert "refuses the key" in blind.title and "PRIME_API_KEY" in blind.text
    assert metric_samples(rig, "prime_monitor_blind")[(("cause", "key_refused"), ("channel", ""))] == 1.0
    sim.clear_faults()
    await rig.steps(3, 5)
    assert rig.kinds() == ["monitor_blind", "monitor_restored"]
    assert rig.sent[1].thread_key == blind.thread_key
    assert rig.daemon.health.readiness()[0] == []
    await rig.close()


async def test_a_failing_store_makes_the_monitor_unhealthy_and_says_so_directly(sims: Any, tmp_path: Path) -> None:
    sim = sims(run("run-a"))
    rig = await MonitorRig(sim, settings(sim, tmp_path, watch={"runs": ["run-a"]})).start()
    await rig.steps(2, 5)
    state = Path(rig.settings.state.path)
    os.replace(state, tmp_path / "moved-away.db")  # the file is replaced underneath a running daemon
    await rig.steps(6, 5)
    assert rig.kinds() == ["monitor_blind"], "sent straight to the channel: the outbox is in the failing store"
    assert "state store" in rig.sent[0].title
    problems = rig.daemon.health.readiness()[0]
    assert any("store failing" in p for p in problems)
    await rig.close()


async def test_a_billing_correction_is_followed_once_confirmed(sims: Any, tmp_path: Path) -> None:
    sim = sims(run("run-hot", FAST))
    config = settings(sim, tmp_path, watch={"runs": ["run-hot"]}, enforce={"grace_period": 120})
    rig = await MonitorRig(sim, config).start()
    for _ in range(40):
        await rig.step(5)
        if rig.decisions("run-hot") == ["delete_pending"] and rig.parts.runtime.runs["run-hot"].total_cost_usd >= CAP:
            break
    assert rig.decisions("run-hot") == ["delete_pending"]
    before = rig.parts.runtime.runs["run-hot"].total_cost_usd
    sim.correct_run("run-hot", fraction=0.5, records=1)
    await rig.step(5)
    held = rig.parts.runtime.health["run-hot"]
    assert held.last_kind == "held" and rig.parts.runtime.runs["run-hot"].total_cost_usd == before
    await rig.step(5)
    corrected = rig.parts.runtime.runs["run-hot"].total_cost_usd
    assert corrected < CAP < before
    assert rig.parts.runtime.corrections["usage"] == 1
    assert rig.decisions("run-hot") == ["delete_pending", "cancelled"]
    cancel = next(n for n in rig.sent if n.kind == "resolve" and n.subject == "run-hot" and "cancelled" in n.title)
    assert "billing correction" in cancel.text
    costs = metric_samples(rig, "prime_run_total_cost_usd")
    assert costs[(("run_id", "run-hot"),)] == corrected
    assert sim.run_ledger("run-hot")["delete_count"] == 0
    await rig.close()


async def test_an_absurd_reading_is_rejected_counted_and_never_alerted(sims: Any, tmp_path: Path) -> None:
    sim = sims(run("run-a"))
    rig = await MonitorRig(sim, settings(sim, tmp_path, watch={"runs": ["run-a"]})).start()
    await rig.steps(2, 5)
    # A cost no billing system reports fails the client's bounds; one within them that the run's
    # tokens cannot explain at any known price fails the reading model. Neither becomes the baseline.
    sim.override_answer(
        endpoint="usage", run_id="run-a", count=1, set={"training": {"cost_usd": 1e300}, "total_cost_usd": 1e300}
    )
    await rig.step(10)
    assert rig.parts.runtime.health["run-a"].last_kind == "invalid_response"
    await rig.step(10)
    sim.override_answer(
        endpoint="usage", run_id="run-a", count=1, set={"training": {"cost_usd": 5e6}, "total_cost_usd": 5e6}
    )
    await rig.step(10)
    assert rig.parts.runtime.health["run-a"].last_kind == "rejected"
    assert rig.parts.runtime.runs["run-a"].total_cost_usd < 1
    await rig.step(10)
    assert rig.parts.runtime.health["run-a"].last_kind == "ok", "one bad reading never blinds the run"
    assert rig.kinds() == []
    rejected = metric_samples(rig, "prime_monitor_readings_rejected_total")
    assert rejected[(("endpoint", "usage"), ("reason", "implausible"))] == 1.0
    await rig.close()


async def test_the_inference_split_follows_a_price_change_mid_run(sims: Any, tmp_path: Path) -> None:
    sim = sims(run("run-a", FAST))
    rig = await MonitorRig(sim, settings(sim, tmp_path, watch={"runs": ["run-a"]}, rules=[])).start()
    await rig.steps(3, 10)
    sim.set_pricing("run-a", inference_input_per_mtok=3.0)  # triples the input price from now on
    await rig.steps(3, 10)
    billed = sim.run_ledger("run-a")["billed"]
    snapshot = rig.parts.runtime.runs["run-a"]
    assert snapshot.inference_cost_usd == pytest.approx(billed["inference_cost_usd"])
    assert snapshot.inference_input_cost_usd == pytest.approx(billed["inference_input_cost_usd"], rel=0.02)
    latest_price_figure = snapshot.inference_input_cost_at_latest_price()
    assert abs(latest_price_figure - billed["inference_input_cost_usd"]) > 0.1 * billed["inference_input_cost_usd"]
    await rig.close()


async def test_a_run_that_answers_404_backs_off_and_check_says_why(sims: Any, tmp_path: Path) -> None:
    sim = sims(run("run-a"))
    config = settings(sim, tmp_path, watch={"runs": ["run-a", "run-gone"]}, poll={"not_found_backoff_max": 80})
    rig = await MonitorRig(sim, config).start()
    await rig.steps(60, 5)  # 300 s
    requested = [r for r in sim.requests()["recent"] if r["path"].endswith("/run-gone/usage")]
    # 10 s, then 20, 40, 80, 80...: 7 reads in 300 s instead of 30.
    assert 5 <= len(requested) <= 8
    result = await rig.daemon.run_once()
    assert result.exit_code == EXIT_UNREADABLE
    failure = result.failures["run-gone"]
    assert failure.kind == "not_found" and "/billing/runs/run-gone/usage" in failure.error
    await rig.close()


async def test_discovery_pages_a_wallet_of_many_rows_and_says_what_it_could_not_read(sims: Any, tmp_path: Path) -> None:
    runs = [run(f"run-{i:02d}") for i in range(30)]
    sim = sims(*runs, billing_rows="per_record")
    sim.advance(200)  # 30 runs x 40 records: 1,200 rows
    assert len(sim.wallet_rows()) >= 1200
    config = settings(sim, tmp_path, watch={"discover": True, "wallet_rows": 250}, rules=[])
    rig = await MonitorRig(sim, config).start()
    await rig.step()
    assert rig.parts.runtime.discovery_rows_unread >= 950
    assert metric_samples(rig, "prime_monitor_discovery_rows_unread")[()] >= 950
    # Every run is billed in the newest rows, so every run is found, and later reads stop at the rows
    # already seen (a few pages, not the whole wallet).
    assert len(rig.parts.poller.watch.discovered) == 30
    sim.add_runs([run("run-new")])
    sim.reset_requests()
    await rig.step(10)
    assert "run-new" in rig.parts.poller.watch.discovered
    assert sim.request_count("wallet") <= 2
    await rig.close()


async def test_a_run_id_that_could_address_another_path_is_refused_at_discovery(sims: Any, tmp_path: Path) -> None:
    sim = sims(run("run-a"), run(".."), run("a/b"))
    sim.advance(10)
    rig = await MonitorRig(sim, settings(sim, tmp_path, watch={"discover": True}, rules=[])).start()
    await rig.steps(3, 5)
    assert rig.parts.poller.watch.discovered == {"run-a"}
    assert rig.parts.runtime.read_failures[("wallet", "unaddressable")] == 2
    raw_paths = [r.get("raw_path", r["path"]) for r in sim.requests()["recent"]]
    assert all("/runs/run-a/" in p or "/wallet" in p for p in raw_paths), raw_paths
    await rig.close()


async def test_a_host_clock_jump_cannot_cut_the_grace_period_short(sims: Any, tmp_path: Path) -> None:
    sim = sims(run("run-hot", FAST))
    config = settings(sim, tmp_path, watch={"runs": ["run-hot"]}, enforce={"grace_period": 60})
    rig = await MonitorRig(sim, config).start()
    for _ in range(40):
        await rig.step(5)
        if rig.decisions("run-hot") == ["delete_pending"]:
            break
    announced = sim.now()
    rig.clock.jump(3600)  # the host's wall clock leaps an hour; the monotonic clock does not
    await rig.step(5)
    assert sim.run_ledger("run-hot")["delete_count"] == 0, "the grace period is measured on the monotonic clock"
    for _ in range(20):
        await rig.step(5)
        if sim.run_ledger("run-hot")["delete_count"]:
            break
    assert sim.run_ledger("run-hot")["first_delete_at"] - announced >= 60
    await rig.close()


async def test_a_client_a_reload_replaced_is_closed_at_shutdown_without_waiting(
    sims: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rotated key builds a new client; the old one finishes its reads and is closed, at the latest
    when the daemon stops (a SIGTERM soon after a SIGHUP must not leave its connections open)."""
    sim = sims(run("run-a"))
    config = tmp_path / "config.yml"

    def write_config(timeout: float) -> None:
        config.write_text(
            yaml.safe_dump(
                {
                    "api": {"base_url": sim.base_url, "timeout": timeout},
                    "watch": {"runs": ["run-a"], "discover": False},
                    "state": {"path": str(tmp_path / "state.db")},
                }
            )
        )

    write_config(5)
    environ = {"PRIME_API_KEY": sim.api_key}
    daemon = Daemon(
        settings=load_settings(config, environ=environ),
        config_path=config,
        clock=ManualClock(start=sim.now()),
        notifiers=[],
        serve_http=False,
    )
    await daemon.start()
    await daemon.one_pass()
    first = daemon.parts.client
    write_config(7)
    monkeypatch.setenv("PRIME_API_KEY", sim.api_key)  # the reload reads the process's environment
    assert await daemon.apply_reload()
    second = daemon.parts.client
    assert second is not first and not first.closed  # reads in flight may still finish on it
    assert daemon.parts.poller.client is second and daemon.parts.enforcer.client is second  # DELETEs too
    await daemon.shutdown()
    assert first.closed and second.closed
