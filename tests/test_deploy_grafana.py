"""The Grafana dashboard (deploy/grafana) and the other generated deploy files.

The committed files are what their builders give (deploy/generate.py), and the dashboard is valid
for Grafana's schema as grafana-foundation-sdk's generated models carry it (deploy/grafana/schema_check.py).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from deploy import generate
from deploy.grafana import schema_check
from tests.support.deploy_files import DASHBOARD, RULES


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def test_the_committed_generated_files_are_what_the_builders_give() -> None:
    assert generate.stale() == [], "run `python -m deploy.generate` and commit the result"


def test_the_dashboard_is_valid_for_grafanas_schema() -> None:
    assert schema_check.problems(_dashboard()) == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d["panels"][1]["options"].update(textMod="value"), "$.panels[1].options.textMod: not a field"),
        (lambda d: d["panels"][1]["options"].update(textMode="huge"), "text_mode: 'huge' is not one of"),
        (lambda d: d["panels"][1]["gridPos"].update(w="wide"), "grid_pos.w: 'wide' is not a int"),
        (lambda d: d["panels"][1].update(type="sparkles"), "'sparkles' is not a panel type"),
        (lambda d: d["templating"]["list"][1].update(refresh=9), "refresh: 9 is not one of"),
        (lambda d: d.update(graphTooltip="shared"), "graph_tooltip: 'shared' is not one of"),
    ],
)
def test_the_schema_check_names_what_is_wrong(change: Any, named: str) -> None:
    broken = copy.deepcopy(_dashboard())
    change(broken)
    found = schema_check.problems(broken)
    assert any(named in problem for problem in found), found


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    dashboard = _dashboard()
    titles = {panel["title"] for panel in dashboard["panels"]}
    for wanted in (
        "Spend per run",
        "Tokens per meter",
        "Burn rate",
        "Budget use per rule",
        "Time to budget",
        "Wallet balance",
        "Wallet runway",
        "Window spend",
        "Alerts sent",
        "Delete decisions",
        "Pending deletes",
        "Enforcement",
        "API requests by code",
        "API errors",
        "Poll freshness",
        "Read failures",
        "Blind causes",
        "Notifications",
        "Outbox backlog",
    ):
        assert wanted in titles
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert {"team", "run", "model", "rule"} <= variables
    assert {annotation["name"] for annotation in dashboard["annotations"]["list"]} == {"Deletes", "Alerts sent"}
    spend = next(panel for panel in dashboard["panels"] if panel["title"] == "Spend per run")
    assert spend["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"
    budget = next(panel for panel in dashboard["panels"] if panel["title"] == "Budget use per rule")
    steps = [step["value"] for step in budget["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert steps == [None, 0.5, 0.8, 1.0]  # the tiers


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    panels = _dashboard()["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & area, f"{panel['title']} overlaps another panel"
        cells |= area


def test_the_prometheusrule_carries_exactly_the_rules_file() -> None:
    rule = yaml.safe_load(generate.PROMETHEUS_RULE.read_text(encoding="utf-8"))
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
