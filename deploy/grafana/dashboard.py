"""The prime-cost-monitor Grafana dashboard, built with grafana-foundation-sdk.

`python -m deploy.generate` writes it to deploy/grafana/prime-cost-monitor.json;
tests/test_deploy_grafana.py proves the committed file is what `build()` gives, and
tests/test_deploy_promql.py runs every query in it against a real Prometheus.

Rows: spend, budgets, wallet, actions (alerts, deletes, enforcement), the monitor's own health.
Variables: datasource, team, model, run, rule (multi-select; "All" is the regex `.*`, which also
matches a run without a team).
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders.dashboard import (
    AnnotationQuery,
    Dashboard,
    DatasourceVariable,
    QueryVariable,
    Row,
    TimePicker,
)
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dashboard_models

from deploy.grafana.panels import DATASOURCE
from deploy.grafana.rows_money import budgets_row, spend_row, wallet_row
from deploy.grafana.rows_monitor import actions_row, health_row

UID = "prime-cost-monitor"
TITLE = "Prime cost monitor"


def _variables() -> list[Builder[dashboard_models.VariableModel]]:
    def label_values(name: str, *, label: str, query: str, text: str) -> QueryVariable:
        return (
            QueryVariable(name)
            .label(text)
            .datasource(DATASOURCE)
            .query(f"label_values({query}, {label})")
            .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(dashboard_models.VariableOption(selected=True, text="All", value="$__all"))
        )

    return [
        DatasourceVariable("datasource").label("Data source").type("prometheus"),
        label_values("team", label="team_id", query="prime_run_info", text="Team"),
        label_values("model", label="base_model", query='prime_run_info{team_id=~"$team"}', text="Model"),
        label_values("run", label="run_id", query='prime_run_info{team_id=~"$team", base_model=~"$model"}', text="Run"),
        label_values("rule", label="rule", query="prime_rule_tier", text="Rule"),
    ]


def _annotations() -> list[Builder[dashboard_models.AnnotationQuery]]:
    """Deletes and alerts as marks on every time series. A series that appears already at 1 (the
    first event of its kind) has no earlier sample for changes(), hence the `unless ... offset`."""

    def event(counter: str, *, by: str) -> str:
        return f"sum by ({by}) (changes({counter}[2m])) > 0 or sum by ({by}) ({counter} unless {counter} offset 2m)"

    return [
        AnnotationQuery()
        .name("Deletes")
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color("red")
        .expr(event('prime_monitor_run_deletions_total{rule=~"$rule"}', by="rule, outcome")),
        AnnotationQuery()
        .name("Alerts sent")
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color("orange")
        .expr(event('prime_monitor_alerts_sent_total{rule=~"$rule"}', by="rule, severity")),
    ]


def build() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (a dict), ready for provisioning or import."""
    dashboard = (
        Dashboard(TITLE)
        .uid(UID)
        .description("Spend, budgets, wallet and enforcement of prime-cost-monitor, and the monitor's own health.")
        .tags(["prime-cost-monitor", "prime-intellect", "cost"])
        .editable()
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .timepicker(TimePicker().refresh_intervals(["30s", "1m", "5m", "15m", "1h"]))
        .variables(_variables())
        .annotations(_annotations())
    )
    for section in (spend_row(), budgets_row(), wallet_row(), actions_row(), health_row()):
        # An expanded row: its panels follow it at the top level, as Grafana saves an open row.
        dashboard = dashboard.with_row(Row(section.title).collapsed(False))
        for panel in section.panels:
            dashboard = dashboard.with_panel(panel)
    model = dashboard.build()
    # Grafana wants a unique id per panel (rows included); the SDK leaves them at 0.
    for panel_id, panel_model in enumerate(model.panels or [], start=1):
        panel_model.id_val = panel_id
    encoded: dict[str, Any] = json.loads(json.dumps(model, cls=JSONEncoder))
    return encoded


def render() -> str:
    """The committed file's text: stable key order and indentation, so diffs show what changed."""
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"
