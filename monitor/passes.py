"""The result of one pass (`check`, `run --once`): exit code, a table for people, JSON for scripts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from monitor.events import Evaluation
from monitor.runtime import RuntimeState
from monitor.snapshots import RunSnapshot, WalletSnapshot

EXIT_OK = 0
EXIT_BREACH = 1
EXIT_CONFIG = 2
EXIT_API = 3


@dataclass(frozen=True)
class PassResult:
    watched: list[str]
    runs: dict[str, RunSnapshot]
    failures: dict[str, str]
    evaluations: list[Evaluation]
    wallet: WalletSnapshot | None
    unauthorized: bool
    # True when nothing at all could be read: the API is down or unreachable.
    unreachable: bool

    @classmethod
    def from_runtime(cls, runtime: RuntimeState, *, watched: list[str], unauthorized: bool) -> PassResult:
        failures = {
            run_id: health.last_error or "failed"
            for run_id, health in runtime.health.items()
            if health.consecutive_failures > 0 and run_id in watched
        }
        read_any = runtime.wallet is not None or any(run_id in runtime.runs for run_id in watched)
        return cls(
            watched=watched,
            runs={run_id: snap for run_id, snap in runtime.runs.items() if run_id in watched or snap.terminal},
            failures=failures,
            evaluations=list(runtime.evaluations.values()),
            wallet=runtime.wallet,
            unauthorized=unauthorized,
            unreachable=not read_any,
        )

    @property
    def breached(self) -> list[Evaluation]:
        return [ev for ev in self.evaluations if ev.breached]

    @property
    def exit_code(self) -> int:
        if self.unauthorized or self.unreachable:
            return EXIT_API
        return EXIT_BREACH if self.breached else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "unauthorized": self.unauthorized,
            "unreachable": self.unreachable,
            "wallet": None
            if self.wallet is None
            else {
                "wallet_id": self.wallet.wallet_id,
                "team_id": self.wallet.team_id,
                "balance_usd": self.wallet.balance_usd,
                "currency": self.wallet.currency,
            },
            "runs": [
                {
                    **{k: v for k, v in snap.to_dict().items() if k != "taken_at"},
                    "inference_input_cost_usd": snap.inference_input_cost_usd,
                    "inference_output_cost_usd": snap.inference_output_cost_usd,
                }
                for snap in self.runs.values()
            ],
            "failures": self.failures,
            "evaluations": [
                {
                    "rule": ev.rule,
                    "subject": ev.subject,
                    "metric": ev.metric,
                    "value": ev.value,
                    "limit": ev.limit,
                    "tier": ev.tier_label,
                    "breached": ev.breached,
                    "utilisation": ev.utilisation,
                }
                for ev in self.evaluations
            ],
        }

    def render(self, console: Console) -> None:
        table = Table(title="prime-cost-monitor check", show_lines=False)
        for column in ("run", "name", "model", "status", "train tok", "in tok", "out tok", "train $", "in $", "out $"):
            table.add_column(column, justify="right" if column.endswith(("tok", "$")) else "left")
        table.add_column("price in/out/train $/Mtok")
        table.add_column("total $", justify="right")
        table.add_column("budget")
        by_run: dict[str, list[Evaluation]] = {}
        for ev in self.evaluations:
            by_run.setdefault(ev.subject, []).append(ev)
        for run_id, snap in self.runs.items():
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
        for run_id, error in self.failures.items():
            table.add_row(escape(run_id), "", "", "[red]unreadable[/red]", *[""] * 8, escape(error[:60]))
        console.print(table)
        if self.wallet is not None:
            walletline = f"wallet {escape(self.wallet.wallet_id)}: balance ${self.wallet.balance_usd:,.2f}"
            wallet_evals = by_run.get(self.wallet.wallet_id, [])
            if wallet_evals:
                walletline += "  " + escape(_budget_cell(wallet_evals))
            console.print(walletline)
        if self.unauthorized:
            console.print("[red]The API refused the key (401/403): check PRIME_API_KEY.[/red]")
        elif self.unreachable:
            console.print("[red]Nothing could be read from the API: is it reachable?[/red]")
        breached = self.breached
        console.print(
            f"[red]{len(breached)} rule(s) breached[/red]" if breached else "[green]all within budget[/green]"
        )


def _budget_cell(evaluations: list[Evaluation]) -> str:
    parts = []
    for ev in evaluations:
        used = "" if ev.utilisation is None else f" {ev.utilisation:.0%}"
        mark = "BREACH" if ev.breached else ev.tier_label
        parts.append(f"{ev.rule}:{used} {mark}".strip())
    return "; ".join(parts)
