"""Rows about what the monitor did and how it is: alerts, deletes, enforcement, its own health."""

from __future__ import annotations

from grafana_foundation_sdk.models.common import BigValueTextMode

from deploy.grafana.panels import (
    Query,
    Section,
    stat_panel,
    state_timeline,
    table_panel,
    thresholds,
    time_series,
    value_names,
)

BLIND_MAPPINGS = value_names({"0": ("sees", "green"), "1": ("blind", "red")})


def actions_row() -> Section:
    return Section(
        "Alerts and enforcement",
        [
            table_panel(
                title="Alerts sent",
                description="Alerts delivered since the monitor started, by rule and severity.",
                queries=[Query('sum by (rule, severity) (prime_monitor_alerts_sent_total{rule=~"$rule"})')],
                width=8,
            ),
            table_panel(
                title="Delete decisions",
                description="Since the monitor started: deleted, dry_run (would delete), refused (the hourly"
                " cap), failed, already_gone, cancelled.",
                queries=[Query('sum by (rule, outcome) (prime_monitor_run_deletions_total{rule=~"$rule"})')],
                width=8,
            ),
            stat_panel(
                title="Pending deletes",
                description="Delete countdowns in progress (announced, in their grace period).",
                unit="short",
                query=Query('sum(prime_monitor_pending_deletes{rule=~"$rule"})'),
                steps=thresholds((None, "green"), (1, "orange")),
                width=4,
            ),
            table_panel(
                title="Delete deadlines",
                description="When each pending delete happens unless the run is protected or falls back under its cap.",
                unit="dateTimeFromNow",
                queries=[Query('prime_run_delete_deadline_timestamp_seconds{rule=~"$rule", run_id=~"$run"} * 1000')],
                width=4,
            ),
        ],
    )


def health_row() -> Section:
    return Section(
        "The monitor itself",
        [
            stat_panel(
                title="Ready",
                description="1 while /readyz says the monitor can see"
                " (config loaded, fresh reads, key accepted, store ok).",
                unit="short",
                query=Query("min(prime_monitor_ready)"),
                mappings=value_names({"0": ("not ready", "red"), "1": ("ready", "green")}),
                width=4,
            ),
            stat_panel(
                title="Scraped",
                description='Prometheus reaches the monitor (job "prime-cost-monitor").',
                unit="short",
                query=Query('min(up{job="prime-cost-monitor"})'),
                mappings=value_names({"0": ("down", "red"), "1": ("up", "green")}),
                width=4,
            ),
            stat_panel(
                title="Version",
                description="The monitor's version.",
                unit="short",
                query=Query("prime_monitor_build_info", legend="{{version}}"),
                text_mode=BigValueTextMode.NAME,
                width=4,
            ),
            stat_panel(
                title="Last reload",
                description="Whether the last config reload (SIGHUP) was applied.",
                unit="short",
                query=Query("min(prime_monitor_config_last_reload_success)"),
                mappings=value_names({"0": ("rejected", "red"), "1": ("applied", "green")}),
                width=4,
            ),
            stat_panel(
                title="State store",
                description="1 while the state file reads and writes.",
                unit="short",
                query=Query("min(prime_monitor_state_store_ok)"),
                mappings=value_names({"0": ("failing", "red"), "1": ("ok", "green")}),
                width=4,
            ),
            stat_panel(
                title="Discovery rows unread",
                description="Wallet billing rows discovery could not reach within watch.wallet_rows.",
                unit="short",
                query=Query("max(prime_monitor_discovery_rows_unread)"),
                steps=thresholds((None, "green"), (1, "orange")),
                width=4,
            ),
            time_series(
                title="API requests by code",
                description="Requests to the Prime API per second, by answer code.",
                unit="reqps",
                queries=[
                    Query("sum by (code) (rate(prime_monitor_api_requests_total[$__rate_interval]))", legend="{{code}}")
                ],
                width=8,
            ),
            time_series(
                title="API errors",
                description="Requests that did not answer 2xx, by endpoint and code (401: key refused).",
                unit="reqps",
                queries=[
                    Query(
                        "sum by (endpoint, code)"
                        ' (rate(prime_monitor_api_requests_total{code!~"2.."}[$__rate_interval]))',
                        legend="{{endpoint}} {{code}}",
                    )
                ],
                width=8,
            ),
            time_series(
                title="API latency (p95)",
                description="95th percentile of Prime API request time, by endpoint.",
                unit="s",
                queries=[
                    Query(
                        "histogram_quantile(0.95, sum by (le, endpoint)"
                        " (rate(prime_monitor_api_request_duration_seconds_bucket[$__rate_interval])))",
                        legend="{{endpoint}}",
                    )
                ],
                width=8,
            ),
            time_series(
                title="Poll freshness",
                description="Seconds since a run read and a wallet read last succeeded.",
                unit="s",
                queries=[
                    Query("time() - max(prime_monitor_last_poll_success_timestamp_seconds)", legend="any read"),
                    Query("time() - max(prime_monitor_last_wallet_poll_success_timestamp_seconds)", legend="wallet"),
                ],
                width=8,
                min_value=0,
            ),
            time_series(
                title="Read failures",
                description="Reads that gave nothing usable, by endpoint and kind (per interval).",
                unit="short",
                queries=[
                    Query(
                        "sum by (endpoint, kind) (increase(prime_monitor_read_failures_total[$__rate_interval]))",
                        legend="{{endpoint}} {{kind}}",
                    ),
                    Query(
                        "sum by (endpoint, reason) (increase(prime_monitor_readings_rejected_total[$__rate_interval]))",
                        legend="{{endpoint}} rejected: {{reason}}",
                    ),
                ],
                width=8,
            ),
            state_timeline(
                title="Blind causes",
                description="Why the monitor cannot see, held past health.blind_after"
                " (key_refused, api_unreachable, data_stale, store_failing, notifications_failing per channel).",
                query=Query("max by (cause, channel) (prime_monitor_blind)", legend="{{cause}} {{channel}}"),
                mappings=BLIND_MAPPINGS,
                steps=thresholds((None, "green"), (1, "red")),
                width=8,
            ),
            time_series(
                title="Notifications",
                description="Failed deliveries and superseded messages (folded into a newer one) per channel.",
                unit="short",
                queries=[
                    Query(
                        "sum by (channel) (increase(prime_monitor_notifications_failed_total[$__rate_interval]))",
                        legend="{{channel}} failed",
                    ),
                    Query(
                        "sum by (channel) (increase(prime_monitor_notifications_superseded_total[$__rate_interval]))",
                        legend="{{channel}} superseded",
                    ),
                ],
                width=8,
            ),
            time_series(
                title="Outbox backlog",
                description="Notifications queued per channel, and the age of the oldest while any wait.",
                unit="short",
                queries=[
                    Query("max by (channel) (prime_monitor_outbox_backlog)", legend="{{channel}} queued"),
                    Query(
                        "(time() - max by (channel) (prime_monitor_outbox_oldest_queued_timestamp_seconds))"
                        " and on (channel) (max by (channel) (prime_monitor_outbox_backlog) > 0)",
                        legend="{{channel}} oldest (s)",
                    ),
                ],
                width=8,
            ),
            table_panel(
                title="Config reloads and self alerts",
                description="Config reloads by outcome, and messages the monitor sent about itself, since it started.",
                queries=[
                    Query("sum by (outcome) (prime_monitor_config_reloads_total)"),
                    Query("sum by (cause, kind) (prime_monitor_self_alerts_total)"),
                ],
                width=8,
            ),
        ],
    )
