"""`check` and `run --once` for people: one pass as a table (the pass itself: monitor.pass_result)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from monitor.pass_result import PassResult
from monitor.records import Evaluation


def render(result: PassResult, console: Console) -> None:
    """The pass as a table for people, then what could not be read and the verdict."""
    table = Table(title="prime-cost-monitor check", show_lines=False)
    for column in (
        "run",
        "name",
        "model",
        "status",
        "train tok",
        "in tok",
        "out tok",
        "train $",
        "in $*",
        "out $*",
    ):
        table.add_column(column, justify="right" if column.endswith(("tok", "$", "$*")) else "left")
    table.add_column("price in/out/train $/Mtok")
    table.add_column("total $", justify="right")
    table.add_column("budget")
    by_run: dict[str, list[Evaluation]] = {}
    for ev in result.evaluations:
        by_run.setdefault(ev.subject, []).append(ev)
    for run_id, snap in result.runs.items():
        table.add_row(
            escape(run_id),
            escape(snap.run_name or ""),
            escape(snap.base_model or ""),
            escape(snap.status or ""),
            f"{snap.training_tokens:,}",
            f"{snap.inference_input_tokens:,}",
            f"{snap.inference_output_tokens:,}",
            f"{snap.training_cost_usd:,.2f}",
            f"{snap.inference_input_cost_usd:,.2f}",
            f"{snap.inference_output_cost_usd:,.2f}",
            "/".join(
                "-" if p is None else f"{p:g}"
                for p in (
                    snap.inference_input_price_per_mtok,
                    snap.inference_output_price_per_mtok,
                    snap.training_price_per_mtok,
                )
            ),
            f"{snap.total_cost_usd:,.2f}",
            escape(_budget_cell(by_run.get(run_id, []))),
        )
    run_failures = {s: f for s, f in result.failures.items() if s != "wallet"}
    for run_id, failure in run_failures.items():
        table.add_row(escape(run_id), "", "", "[red]unreadable[/red]", *[""] * 8, escape(failure.cause[:60]))
    console.print(table)
    console.print("* the inference input/output split is an estimate derived from prices", style="dim")
    if result.wallet is not None:
        walletline = f"wallet {escape(result.wallet.wallet_id)}: balance ${result.wallet.balance_usd:,.2f}"
        wallet_evals = by_run.get(result.wallet.wallet_id, [])
        if wallet_evals:
            walletline += "  " + escape(_budget_cell(wallet_evals))
        console.print(walletline)
    for subject, failure in result.failures.items():
        what = "the wallet" if subject == "wallet" else f"run {escape(subject)}"
        console.print(f"[red]Could not read {what}: {escape(failure.cause)}[/red] ({escape(failure.error[:300])})")
    if result.unauthorized:
        console.print("[red]The API refused the key (401): check PRIME_API_KEY.[/red]")
    elif result.unreachable:
        console.print("[red]Nothing could be read from the API: is it reachable?[/red]")
    breached = result.breached
    if breached:
        console.print(f"[red]{len(breached)} rule(s) breached[/red]")
    elif result.failures or result.unreachable or result.unauthorized:
        console.print(
            f"[yellow]no rule breached among what could be read; {len(result.failures)} unreadable:"
            " not known to be within budget[/yellow]"
        )
    else:
        console.print("[green]all within budget[/green]")


def _budget_cell(evaluations: list[Evaluation]) -> str:
    parts = []
    for ev in evaluations:
        used = "" if ev.utilisation is None else f" {ev.utilisation:.0%}"
        mark = "BREACH" if ev.breached else ev.tier_label
        parts.append(f"{ev.rule}:{used} {mark}".strip())
    return "; ".join(parts)
