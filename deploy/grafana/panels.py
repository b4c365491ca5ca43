"""Small builders over grafana-foundation-sdk for the panels the dashboard repeats: one Prometheus
query, a time series, a stat, a bar gauge, a table, a state timeline. Each takes keyword arguments
only, so a panel reads as what it shows. The SDK writes the JSON; nothing here writes a key by hand."""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders import bargauge, common, prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders.dashboard import ThresholdsConfig
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models import prometheus as prometheus_models

# Every panel and query reads the data source chosen in the `datasource` variable.
DATASOURCE = common_models.DataSourceRef(type_val="prometheus", uid="${datasource}")

# The runs the variables select, with their names for legends: `* on (run_id) group_left (run_name) RUNS`.
# `group by` keeps one series per run even while its status label changes.
RUNS = 'group by (run_id, run_name) (prime_run_info{team_id=~"$team", base_model=~"$model", run_id=~"$run"})'


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a panel: `legend` is Grafana's legend format ("{{run_name}}")."""

    expr: str
    legend: str = "__auto"
    instant: bool = False
    table: bool = False


@dataclass(frozen=True)
class Section:
    """A row of the dashboard: its title and its panels, laid out left to right, top to bottom."""

    title: str
    panels: list[Builder[dashboard_models.Panel]]


def _target(query: Query, ref_id: str) -> prometheus.Dataquery:
    target = (
        prometheus.Dataquery()
        .expr(query.expr)
        .legend_format(query.legend)
        .ref_id(ref_id)
        .datasource(DATASOURCE)
        .editor_mode(prometheus_models.QueryEditorMode.CODE)
    )
    target = target.instant() if query.instant else target.range()
    if query.table:
        target = target.format(prometheus_models.PromQueryFormat.TABLE)
    return target


def _ref_ids(count: int) -> list[str]:
    return [chr(ord("A") + index) for index in range(count)]


def thresholds(*steps: tuple[float | None, str]) -> ThresholdsConfig:
    """Absolute thresholds: the first step's value is None (the base colour)."""
    return (
        ThresholdsConfig()
        .mode(dashboard_models.ThresholdsMode.ABSOLUTE)
        .steps([dashboard_models.Threshold(value=value, color=color) for value, color in steps])
    )


OK_THRESHOLDS = thresholds((None, "green"))


def value_names(names: dict[str, tuple[str, str]]) -> list[dashboard_models.ValueMapping]:
    """Value mappings from raw values to (text, colour), e.g. {"0": ("ok", "green")}."""
    options = {
        value: dashboard_models.ValueMappingResult(text=text, color=color, index=index)
        for index, (value, (text, color)) in enumerate(names.items())
    }
    return [dashboard_models.ValueMap(options=options)]


def time_series(
    *,
    title: str,
    description: str,
    unit: str,
    queries: list[Query],
    width: int = 12,
    height: int = 8,
    stacked: bool = False,
    min_value: float | None = None,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .fill_opacity(25 if stacked else 10)
        .line_width(1)
        .thresholds(OK_THRESHOLDS)
        .legend(
            common.VizLegendOptions()
            .show_legend(True)
            .display_mode(common_models.LegendDisplayMode.LIST)
            .placement(common_models.LegendPlacement.BOTTOM)
        )
        .tooltip(common.VizTooltipOptions().mode(common_models.TooltipDisplayMode.MULTI))
    )
    if stacked:
        panel = panel.stacking(common.StackingConfig().mode(common_models.StackingMode.NORMAL))
    if min_value is not None:
        panel = panel.min(min_value)
    for query, ref_id in zip(queries, _ref_ids(len(queries)), strict=True):
        panel = panel.with_target(_target(query, ref_id))
    return panel


def stat_panel(
    *,
    title: str,
    description: str,
    unit: str,
    query: Query,
    width: int = 4,
    height: int = 4,
    steps: ThresholdsConfig = OK_THRESHOLDS,
    mappings: list[dashboard_models.ValueMapping] | None = None,
    text_mode: common_models.BigValueTextMode = common_models.BigValueTextMode.VALUE,
) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .thresholds(steps)
        .color_mode(common_models.BigValueColorMode.VALUE)
        .graph_mode(common_models.BigValueGraphMode.NONE)
        .text_mode(text_mode)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .with_target(_target(query, "A"))
    )
    if mappings is not None:
        panel = panel.mappings(mappings)
    return panel


def bar_gauge(
    *,
    title: str,
    description: str,
    unit: str,
    query: Query,
    steps: ThresholdsConfig,
    width: int = 12,
    height: int = 8,
    max_value: float | None = None,
) -> bargauge.Panel:
    panel = (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .min(0)
        .thresholds(steps)
        .display_mode(common_models.BarGaugeDisplayMode.GRADIENT)
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .with_target(_target(query, "A"))
    )
    if max_value is not None:
        panel = panel.max(max_value)
    return panel


def table_panel(
    *,
    title: str,
    description: str,
    queries: list[Query],
    width: int = 12,
    height: int = 8,
    unit: str = "short",
) -> table.Panel:
    """A table of instant queries, merged on their common labels (one row per label set)."""
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .thresholds(OK_THRESHOLDS)
        .with_transformation(dashboard_models.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            dashboard_models.DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True}})
        )
    )
    for query, ref_id in zip(queries, _ref_ids(len(queries)), strict=True):
        panel = panel.with_target(_target(Query(query.expr, query.legend, instant=True, table=True), ref_id))
    return panel


def state_timeline(
    *,
    title: str,
    description: str,
    query: Query,
    mappings: list[dashboard_models.ValueMapping],
    steps: ThresholdsConfig,
    width: int = 12,
    height: int = 8,
) -> statetimeline.Panel:
    return (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(width)
        .height(height)
        .thresholds(steps)
        .mappings(mappings)
        .show_value(common_models.VisibilityMode.AUTO)
        .merge_values(True)
        .with_target(_target(query, "A"))
    )
