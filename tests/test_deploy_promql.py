"""Every PromQL expression the project ships, run against a real Prometheus scraping the real daemon.

A real Prometheus (Debian's `prometheus`, tests/support/prometheus.py) scrapes a daemon
(`python -m monitor run`) that watches the simulator, and loads deploy/prometheus's rules. The
scenario is healthy first: a run breaches its cap and is alerted and deleted, another spends under
its cap, the wallet is debited. Every dashboard query, variable, annotation and recording rule must
return data then. Then failures are made, one step at a time, and each expression that returns data
only on a failure (all the alerts, a few panels) must return data at the step that makes its failure:

    delete_key_refused  the API refuses the key on DELETE          -> enforcement stopped, API errors
    reload_rejected     SIGHUP with a broken config file            -> reload rejected
    slack_down          Slack answers 500, two more runs breach     -> notifications failing, backlog,
                        with max_deletes_per_hour reached              deletes refused by the cap
    api_slow            every API answer takes 4 s (polls every 1 s) -> data stale
    api_down            every API answer is a 503                   -> polls failing, blind (api_unreachable)
    key_refused         every API answer is a 401                   -> key refused
    daemon_stopped      the daemon is stopped                       -> down
    never_scraped       a time before the first scrape              -> absent

The alerts must also be quiet while the monitor is healthy.
The whole run takes about 30-40 s (one scenario for all expressions, module scope).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.daemon import DaemonProcess, free_port
from tests.support.deploy_files import DASHBOARD, RULES, clean_env
from tests.support.fake_slack import FakeSlack, run_fake_slack
from tests.support.prometheus import PrometheusProcess, start_prometheus
from tests.support.simulator import SimulatorHandle, running_simulator

# Grafana's variables as the test fills them: "All" is `.*`; a range of a few scrapes.
GRAFANA_VALUES = {
    "$team": ".*",
    "$model": ".*",
    "$run": ".*",
    "$rule": ".*",
    "$__rate_interval": "10s",
    "$__range": "1m",
}
HEALTHY = "healthy"
STEP_TIMEOUT_S = 20.0
POLL_S = 0.3

# The step of the scenario at which each failure-only expression must return data.
ON_FAILURE = {
    "alert PrimeCostMonitorEnforcementStopped": "delete_key_refused",
    "panel API errors A": "delete_key_refused",
    "alert PrimeCostMonitorConfigReloadRejected": "reload_rejected",
    "alert PrimeCostMonitorNotificationsFailing": "slack_down",
    "alert PrimeCostMonitorOutboxBacklog": "slack_down",
    "panel Outbox backlog B": "slack_down",
    "alert PrimeCostMonitorDeleteCapReached": "slack_down",
    "alert PrimeCostMonitorPollsFailing": "api_down",
    "alert PrimeCostMonitorBlind": "api_down",
    "alert PrimeCostMonitorDataStale": "api_slow",
    "alert PrimeCostMonitorApiKeyRefused": "key_refused",
    "alert PrimeCostMonitorDown": "daemon_stopped",
    "alert PrimeCostMonitorAbsent": "never_scraped",
    # Present only while a delete counts down (the grace period of the healthy run's delete).
    "panel Pending deletes A": "healthy_pending",
    "panel Delete deadlines A": "healthy_pending",
}
STEPS = [
    "healthy_pending",
    "delete_key_refused",
    "reload_rejected",
    "slack_down",
    "api_slow",
    "api_down",
    "key_refused",
]


@dataclass(frozen=True)
class Expression:
    id: str
    promql: str
    label: str = ""  # for a variable: the label whose values it lists

    @property
    def families(self) -> set[str]:
        return set(re.findall(r"[a-z_:]*prime_[a-z0-9_:]+|\bup\b", self.promql))


def _fill(promql: str) -> str:
    for variable, value in GRAFANA_VALUES.items():
        promql = promql.replace(variable, value)
    return promql


def shipped_expressions() -> list[Expression]:
    """Every expression in the dashboard (panels, variables, annotations) and in the rules file."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found: list[Expression] = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append(Expression(f"panel {panel['title']} {target['refId']}", _fill(target["expr"])))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            selector, label = re.fullmatch(r"label_values\((.*), (\w+)\)", variable["query"]).groups()  # type: ignore[union-attr]
            found.append(Expression(f"variable {variable['name']}", _fill(selector), label=label))
    for annotation in dashboard["annotations"]["list"]:
        found.append(Expression(f"annotation {annotation['name']}", _fill(annotation["expr"])))
    for group in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            kind, name = ("alert", rule["alert"]) if "alert" in rule else ("record", rule["record"])
            found.append(Expression(f"{kind} {name}", rule["expr"]))
    return found


EXPRESSIONS = shipped_expressions()


def _params() -> list[Any]:
    params = []
    for expression in EXPRESSIONS:
        params.append(pytest.param(expression, id=expression.id))
    return params


# --- the scenario --------------------------------------------------------------------------------

SCENARIO: dict[str, Any] = {
    "api_keys": ["sim-key"],
    "admin_token": "sim-admin",
    "meter_interval": 1,
    "seed": 3,
    "defaults": {"queue_seconds": 0, "step_seconds": 30},
    "wallets": [
        {"wallet_id": "wallet-personal", "team_id": None, "starting_balance_usd": 1000},
        {"wallet_id": "wallet-team-a", "team_id": "team-a", "starting_balance_usd": 1000},
    ],
    "runs": [
        # ~$0.10/s and $60 in already: over the $20 cap from the first reading.
        {
            "id": "run-breach",
            "name": "exp-breach",
            "team_id": "team-a",
            "base_model": "Qwen/Qwen3.5-35B-A3B",
            "rates": {"training": 60000, "inference_input": 40000, "inference_output": 40000},
            "started_ago": 600,
        },
        # A few cents an hour: inside its cap, with a time to budget.
        {
            "id": "run-steady",
            "name": "exp-steady",
            "team_id": "team-a",
            "base_model": "Qwen/Qwen3.5-4B",
            "rates": {"training": 1000, "inference_input": 600, "inference_output": 400},
            "started_ago": 600,
        },
        {
            "id": "run-team",
            "name": "exp-team",
            "team_id": "team-a",
            "base_model": "meta-llama/Llama-3.2-1B",
            "rates": {"training": 2000, "inference_input": 1000, "inference_output": 500},
            "started_ago": 600,
        },
    ],
}
BREACHING_RUN = {
    "team_id": "team-a",
    "base_model": "Qwen/Qwen3.5-35B-A3B",
    "rates": {"training": 60000, "inference_input": 40000, "inference_output": 40000},
    "started_ago": 600,
}


def _daemon_config(sim: SimulatorHandle, slack: FakeSlack, *, port: int, workdir: Path) -> dict[str, Any]:
    return {
        # The team's wallet: discovery reads it, and every run it shows carries the team's label.
        "api": {"base_url": sim.base_url, "timeout": "8s", "max_retries": 1, "team_id": "team-a"},
        "watch": {"discover": True, "runs": ["run-team"]},
        "poll": {"interval": 1, "min_interval": 1, "wallet_interval": 1, "burn_window": 4},
        "rules": [
            {"name": "run-cap", "scope": "run", "metric": "total_cost_usd", "threshold": 20, "warn_at": [0.5, 0.8]},
            {"name": "wallet-floor", "scope": "wallet", "metric": "balance_usd", "below": 100, "warn_at": [0.5]},
            {"name": "spend-10m", "scope": "wallet", "metric": "spend_usd", "window": "10m", "threshold": 5000},
        ],
        "notify": {
            "slack": {"token": slack.token, "channel": "#budgets", "base_url": slack.base_url},
            "retry_base": 0.5,
            "retry_max": 1,
        },
        # A grace period long enough for a Prometheus that starts beside the daemon to scrape a countdown.
        # The countdown must last long enough for Prometheus to scrape it: never shortened for pace.
        "enforce": {
            "dry_run": False,
            "grace_period": 10,
            "confirm_polls": 2,
            "max_deletes_per_hour": 2,
            "grace_overspend_cap": None,
        },
        "health": {"stale_intervals": 2, "blind_after": 0, "unhealthy_after": 120},
        "server": {"listen": f"127.0.0.1:{port}"},
        "state": {"path": str(workdir / "state.db")},
        "log": {"format": "json", "level": "info"},
    }


def _start_daemon(config: dict[str, Any], sim: SimulatorHandle, workdir: Path, port: int) -> DaemonProcess:
    config["rules"][0]["action"] = "delete"
    config_path = workdir / "config.yml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = clean_env({"PRIME_API_KEY": sim.api_key, "PYTHONUNBUFFERED": "1"})
    daemon = DaemonProcess(config_path=config_path, workdir=workdir, env=env, metrics_port=port)
    daemon.start()
    return daemon


@dataclass
class Observations:
    """What each expression returned: at the healthy check, and at each failure step."""

    present: dict[str, set[str]] = field(default_factory=dict)  # step -> ids that returned data
    quiet_when_healthy: dict[str, int] = field(default_factory=dict)  # alert id -> samples while healthy
    absent_families: set[str] = field(default_factory=set)
    log_tail: str = ""


async def _returns_data(prom: PrometheusProcess, expression: Expression, *, at: float | None = None) -> bool:
    if expression.label:  # a variable: Grafana's label_values() is Prometheus's label values API
        async with httpx.AsyncClient(base_url=prom.url, timeout=5.0) as client:
            answer = await client.get(f"/api/v1/label/{expression.label}/values", params={"match[]": expression.promql})
        return bool(answer.json()["data"])
    params = {"query": expression.promql} if at is None else {"query": expression.promql, "time": f"{at:.3f}"}
    async with httpx.AsyncClient(base_url=prom.url, timeout=5.0) as client:
        body = (await client.get("/api/v1/query", params=params)).json()
    assert body["status"] == "success", f"{expression.id}: {body}"
    return bool(body["data"]["result"])


async def _watch(prom: PrometheusProcess, expressions: list[Expression], *, within: float) -> set[str]:
    """Poll the expressions until each has returned data once, or the time is up."""
    seen: set[str] = set()
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for expression in expressions:
            if expression.id not in seen and await _returns_data(prom, expression):
                seen.add(expression.id)
        if len(seen) == len(expressions):
            break
        await asyncio.sleep(POLL_S)
    return seen


async def _observe(sim: SimulatorHandle, slack: FakeSlack, workdir: Path) -> Observations:
    seen = Observations()
    port = free_port()
    config = _daemon_config(sim, slack, port=port, workdir=workdir)
    daemon = _start_daemon(config, sim, workdir, port)
    started = time.time()
    prom = await start_prometheus(
        targets=[f"127.0.0.1:{port}"], workdir=workdir / "prometheus", scrape_interval="1s", rule_files=[RULES]
    )
    try:
        by_step = {step: [e for e in EXPRESSIONS if ON_FAILURE.get(e.id) == step] for step in STEPS}
        always = [e for e in EXPRESSIONS if e.id not in ON_FAILURE]
        # Healthy: the breaching run is alerted and deleted (its countdown watched as it runs).
        seen.present["healthy_pending"] = await _watch(
            prom,
            by_step["healthy_pending"]
            + [Expression("deleted", 'prime_monitor_run_deletions_total{outcome="deleted"}')],
            within=STEP_TIMEOUT_S,
        )
        seen.present[HEALTHY] = await _watch(prom, always, within=STEP_TIMEOUT_S)
        for expression in EXPRESSIONS:
            if expression.id.startswith("alert ") and expression.id != "alert PrimeCostMonitorAbsent":
                seen.quiet_when_healthy[expression.id] = int(await _returns_data(prom, expression))
        # The API refuses the key on DELETE while a new run breaches: enforcement stops.
        sim.add_fault(kind="unauthorized", endpoint="delete")
        sim.add_run(id="run-late-a", name="exp-late-a", **BREACHING_RUN)
        seen.present["delete_key_refused"] = await _watch(prom, by_step["delete_key_refused"], within=STEP_TIMEOUT_S)
        # A broken config on SIGHUP is rejected; the good one back (and the key accepted) resumes enforcement.
        good = daemon.config_path.read_text()
        daemon.config_path.write_text("rules:\n  - {name: broken, scope: run, metric: nonsense}\n")
        daemon.signal(1)
        seen.present["reload_rejected"] = await _watch(prom, by_step["reload_rejected"], within=8)
        sim.clear_faults()
        daemon.config_path.write_text(good)
        # Slack goes down; the resumed delete of run-late-a reaches the hourly cap of 2, so run-late-b's is refused.
        slack.set_outage(status=500)
        daemon.signal(1)
        sim.add_run(id="run-late-b", name="exp-late-b", **BREACHING_RUN)
        seen.present["slack_down"] = await _watch(prom, by_step["slack_down"], within=STEP_TIMEOUT_S + 10)
        slack.end_outage()
        # The API answers, but slower than the stale limit (2 polls): the data is stale, nothing else is wrong.
        sim.set_faults([{"kind": "latency", "latency": 4}])
        seen.present["api_slow"] = await _watch(prom, by_step["api_slow"], within=STEP_TIMEOUT_S)
        # The API answers 503 to everything, then 401 to everything.
        sim.set_faults([{"kind": "error", "status": 503}])
        seen.present["api_down"] = await _watch(prom, by_step["api_down"], within=STEP_TIMEOUT_S)
        sim.set_faults([{"kind": "unauthorized"}])
        seen.present["key_refused"] = await _watch(prom, by_step["key_refused"], within=STEP_TIMEOUT_S)
        daemon.stop()
        seen.present["daemon_stopped"] = await _watch(
            prom, [e for e in EXPRESSIONS if ON_FAILURE.get(e.id) == "daemon_stopped"], within=10
        )
        before_any_scrape = started - 120
        seen.present["never_scraped"] = {
            e.id
            for e in EXPRESSIONS
            if ON_FAILURE.get(e.id) == "never_scraped" and await _returns_data(prom, e, at=before_any_scrape)
        }
        async with httpx.AsyncClient(base_url=prom.url, timeout=5.0) as client:
            names = set((await client.get("/api/v1/label/__name__/values")).json()["data"])
        seen.absent_families = {family for e in EXPRESSIONS for family in e.families} - names
    finally:
        await prom.stop()
        seen.log_tail = daemon.tail(30)
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()
    return seen


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observations]:
    workdir = tmp_path_factory.mktemp("promql")
    with running_simulator(SCENARIO) as sim, run_fake_slack() as slack:
        yield asyncio.run(_observe(sim, slack, workdir))


# --- the checks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("expression", _params())
def test_the_expression_returns_data(expression: Expression, observed: Observations) -> None:
    step = ON_FAILURE.get(expression.id, HEALTHY)
    assert expression.id in observed.present.get(step, set()), (
        f"{expression.id} returned no data at step {step}: {expression.promql}\n"
        f"families Prometheus never saw: {sorted(expression.families & observed.absent_families)}\n"
        f"daemon log tail:\n{observed.log_tail}"
    )


@pytest.mark.parametrize(
    "expression",
    [e for e in EXPRESSIONS if e.id.startswith("alert ") and e.id != "alert PrimeCostMonitorAbsent"],
    ids=lambda e: e.id,
)
def test_the_alert_is_quiet_while_the_monitor_is_healthy(expression: Expression, observed: Observations) -> None:
    assert observed.quiet_when_healthy[expression.id] == 0, f"{expression.id} fires on a healthy monitor"


def test_every_failure_only_expression_is_shipped() -> None:
    """A renamed panel or alert must not leave its failure step unchecked."""
    assert set(ON_FAILURE) <= {expression.id for expression in EXPRESSIONS}
