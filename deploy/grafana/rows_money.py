"""Rows about money: spend per run and per meter, budgets per rule, the wallet."""

from __future__ import annotations

from grafana_foundation_sdk.models.common import BigValueTextMode

from deploy.grafana.panels import (
    RUNS,
    Query,
    Section,
    bar_gauge,
    stat_panel,
    table_panel,
    thresholds,
    time_series,
)

# Budget tiers as thresholds: the warn_at fractions of config/example.yml (0.5, 0.8) and the limit (1).
TIER_THRESHOLDS = thresholds((None, "green"), (0.5, "yellow"), (0.8, "orange"), (1.0, "red"))


def spend_row() -> Section:
    per_run_rate = f"run_id:prime_run_cost_usd_per_hour:rate5m * on (run_id) group_left (run_name) {RUNS}"
    return Section(
        "Spend",
        [
            stat_panel(
                title="Spend in range",
                description="USD the selected runs spent over the dashboard's time range (all meters).",
                unit="currencyUSD",
                query=Query(f"sum(increase(prime_run_cost_usd_total[$__range]) * on (run_id) group_left () {RUNS})"),
            ),
            stat_panel(
                title="Spending now",
                description="USD per hour the selected runs spend (recording rule over 5m).",
                unit="currencyUSD",
                query=Query(f"sum({per_run_rate})"),
            ),
            stat_panel(
                title="Runs watched",
                description="Runs the monitor watches among the selected ones.",
                unit="short",
                query=Query(f"count({RUNS})"),
            ),
            stat_panel(
                title="Wallet balance",
                description="The watched wallet's balance.",
                unit="currencyUSD",
                query=Query('min(prime_wallet_balance_usd{team_id=~"$team"})'),
            ),
            stat_panel(
                title="Wallet runway",
                description="Time until the wallet is empty at the watched runs' burn rate.",
                unit="s",
                query=Query("min(prime_wallet_runway_seconds)"),
                steps=thresholds((None, "red"), (86400, "orange"), (604800, "green")),
            ),
            stat_panel(
                title="Enforcement",
                description="dry_run: deletes are announced, not made. live: deletes are made."
                " stopped: the API refused the key during a delete; nothing is deleted until a reload.",
                unit="short",
                query=Query("max by (mode) (prime_monitor_enforcement_mode) == 1", legend="{{mode}}"),
                text_mode=BigValueTextMode.NAME,
            ),
            time_series(
                title="Spend per run",
                description="Each run's total cost so far (the API's figure), stacked.",
                unit="currencyUSD",
                queries=[
                    Query(
                        f"prime_run_total_cost_usd * on (run_id) group_left (run_name) {RUNS}",
                        legend="{{run_name}}",
                    )
                ],
                stacked=True,
            ),
            time_series(
                title="Spend rate per run",
                description="USD per hour per run, from the cost counters (recording rule over 5m), stacked.",
                unit="currencyUSD",
                queries=[Query(per_run_rate, legend="{{run_name}}")],
                stacked=True,
            ),
            time_series(
                title="Tokens per meter",
                description="Tokens per second of the selected runs: training, inference input, inference output.",
                unit="short",
                queries=[
                    Query(
                        "sum by (usage_type) (rate(prime_run_tokens_total[$__rate_interval])"
                        f" * on (run_id) group_left () {RUNS})",
                        legend="{{usage_type}}",
                    )
                ],
                stacked=True,
            ),
            time_series(
                title="Cost per meter",
                description="USD per hour per meter. The inference input/output split is an estimate"
                " (the API bills inference as one figure).",
                unit="currencyUSD",
                queries=[
                    Query(
                        "sum by (usage_type) (rate(prime_run_cost_usd_total[$__rate_interval])"
                        f" * on (run_id) group_left () {RUNS}) * 3600",
                        legend="{{usage_type}}",
                    )
                ],
                stacked=True,
            ),
            time_series(
                title="Burn rate",
                description="Each run's burn rate as the monitor measures it (USD/h over poll.burn_window):"
                " the figure burn-rate and time-to-budget rules judge.",
                unit="currencyUSD",
                queries=[
                    Query(
                        f"prime_run_burn_rate_usd_per_hour * on (run_id) group_left (run_name) {RUNS}",
                        legend="{{run_name}}",
                    )
                ],
            ),
            time_series(
                title="Spend rate by model and team",
                description="USD per hour per base model and per team (recording rules).",
                unit="currencyUSD",
                queries=[
                    Query(
                        'base_model:prime_run_cost_usd_per_hour:rate5m{base_model=~"$model"}', legend="{{base_model}}"
                    ),
                    Query('team_id:prime_run_cost_usd_per_hour:rate5m{team_id=~"$team"}', legend="team {{team_id}}"),
                ],
            ),
        ],
    )


def budgets_row() -> Section:
    rules = 'rule=~"$rule", run_id=~"$run"'
    return Section(
        "Budgets",
        [
            bar_gauge(
                title="Budget use per rule",
                description="Fraction of each rule's limit used (limit/value for floors such as a balance)."
                " Colours are the tiers: warn at 50% and 80%, breached at 100%.",
                unit="percentunit",
                query=Query(f"prime_rule_utilisation_ratio{{{rules}}}", legend="{{subject}} · {{rule}}"),
                steps=TIER_THRESHOLDS,
                max_value=1.2,
            ),
            time_series(
                title="Time to budget",
                description="Projected time until a run reaches each cost rule's limit at its burn rate.",
                unit="s",
                queries=[
                    Query(
                        f'prime_run_time_to_budget_seconds{{rule=~"$rule"}} * on (run_id) group_left (run_name) {RUNS}',
                        legend="{{run_name}} · {{rule}}",
                    )
                ],
                min_value=0,
            ),
            table_panel(
                title="Rules now",
                description="Each rule on each subject: use of the limit, tier (0 within, 1..n warnings,"
                " n+1 breached) and whether it is breached now.",
                queries=[
                    Query(f"prime_rule_utilisation_ratio{{{rules}}}"),
                    Query(f"prime_rule_tier{{{rules}}}"),
                    Query(f"prime_rule_breached{{{rules}}}"),
                ],
            ),
            table_panel(
                title="Runs and budgets",
                description="Each selected run: its total cost, its cost-rule budgets and its burn rate.",
                unit="currencyUSD",
                queries=[
                    Query(f"prime_run_total_cost_usd * on (run_id) group_left (run_name) {RUNS}"),
                    Query(f'prime_run_budget_usd{{rule=~"$rule"}} * on (run_id) group_left (run_name) {RUNS}'),
                ],
            ),
        ],
    )


def wallet_row() -> Section:
    wallet_teams = 'group by (wallet_id, team_id) (prime_wallet_balance_usd{team_id=~"$team"})'
    return Section(
        "Wallet",
        [
            time_series(
                title="Wallet balance",
                description="Balance of the watched wallet (USD).",
                unit="currencyUSD",
                queries=[Query('prime_wallet_balance_usd{team_id=~"$team"}', legend="{{wallet_id}}")],
                width=8,
            ),
            time_series(
                title="Wallet runway",
                description="Balance / the watched runs' summed burn rate.",
                unit="s",
                queries=[
                    Query(
                        f"prime_wallet_runway_seconds * on (wallet_id) group_left (team_id) {wallet_teams}",
                        legend="{{wallet_id}}",
                    )
                ],
                width=8,
                min_value=0,
            ),
            time_series(
                title="Window spend",
                description="Wallet spend over each spend rule's window, and the wallet's spend rate (USD/h over 1h).",
                unit="currencyUSD",
                queries=[
                    Query('prime_wallet_spend_usd{rule=~"$rule"}', legend="{{rule}}"),
                    Query(
                        'wallet_id:prime_wallet_spend_usd_per_hour:rate1h{team_id=~"$team"}',
                        legend="{{wallet_id}} USD/h",
                    ),
                ],
                width=8,
            ),
        ],
    )
