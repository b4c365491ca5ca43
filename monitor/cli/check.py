"""The result of one pass (`check`, `run --once`): exit code, a table for people, JSON for scripts.

Exit codes: 0 everything was read and is within budget; 1 a rule is breached; 2 bad config; 3 the
monitor could see nothing (key refused, API unreachable); 4 some watched run or the wallet could
not be read (each named with its cause), and nothing read is breached. A pass never says "all within
budget" about a run it could not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from monitor.config.settings import Settings
from monitor.exporter.health import KEY_REFUSED, blind_causes
from monitor.exporter.live import RunHealth, RuntimeState
from monitor.records import Evaluation
from monitor.snapshots import RunSnapshot, WalletSnapshot

EXIT_OK = 0
EXIT_BREACH = 1
EXIT_CONFIG = 2
EXIT_API = 3
EXIT_UNREADABLE = 4

_CAUSES = {
    "unauthorized": "the API refused the key (HTTP 401): check PRIME_API_KEY",
    "forbidden": "the key may not read this run (HTTP 403): another team's run?",
    "not_found": "not found (HTTP 404)",
    "invalid_response": "the answer does not match the API's spec",
    "rejected": "the figures are implausible",
    "held": "the totals fell: a billing correction waiting for confirmation",
    "rate_limited": "rate limited (HTTP 429) after retries",
    "server_error": "server error (HTTP 5xx) after retries",
    "unreachable": "the API cannot be reached",
    "timeout": "the API did not answer in time",
    "unaddressable": "the id cannot be put in a URL safely",
    "internal_error": "processing it failed inside the monitor",
}


@dataclass(frozen=True)
class ReadFailure:
    subject: str  # a run id, or "wallet"
    kind: str
    error: str

    @property
    def cause(self) -> str:
        return _CAUSES.get(self.kind, self.kind)

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "cause": self.cause, "error": self.error}


def _failure(subject: str, health: RunHealth) -> ReadFailure:
    return ReadFailure(subject=subject, kind=health.last_kind, error=health.last_error or health.last_kind)


@dataclass(frozen=True)
class PassResult:
    watched: list[str]
    runs: dict[str, RunSnapshot]
    failures: dict[str, ReadFailure]
    evaluations: list[Evaluation]
    wallet: WalletSnapshot | None
    unauthorized: bool
    # True when nothing at all could be read: the API is down or unreachable.
    unreachable: bool

    @classmethod
    def from_runtime(
        cls, runtime: RuntimeState, *, watched: list[str], settings: Settings, now_mono: float
    ) -> PassResult:
        failures = {
            run_id: _failure(run_id, health)
            for run_id, health in runtime.health.items()
            if health.consecutive_failures > 0 and run_id in watched
        }
        if runtime.wallet_health.last_poll_failed:
            failures["wallet"] = _failure("wallet", runtime.wallet_health)
        causes = blind_causes(settings, runtime, now=0.0, now_mono=now_mono, has_runs=bool(watched))
        # In one pass a 401 everywhere is the key, whatever the time thresholds of the daemon say.
        unauthorized = any(c.cause == KEY_REFUSED for c in causes) or (
            runtime.unauthorized_since is not None and runtime.last_seen_mono is None
        )
        return cls(
            watched=watched,
            runs={run_id: snap for run_id, snap in runtime.runs.items() if run_id in watched or snap.terminal},
            failures=failures,
            evaluations=list(runtime.evaluations.values()),
            wallet=runtime.wallet,
            unauthorized=unauthorized,
            unreachable=runtime.last_seen_mono is None,
        )

    @property
    def breached(self) -> list[Evaluation]:
        return [ev for ev in self.evaluations if ev.breached]

    @property
    def exit_code(self) -> int:
        if self.unauthorized or self.unreachable:
            return EXIT_API
        if self.breached:
            return EXIT_BREACH
        return EXIT_UNREADABLE if self.failures else EXIT_OK

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
                    "inference_split_is_estimate": True,
                }
                for snap in self.runs.values()
            ],
            "failures": {subject: failure.to_json() for subject, failure in self.failures.items()},
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
        run_failures = {s: f for s, f in self.failures.items() if s != "wallet"}
        for run_id, failure in run_failures.items():
            table.add_row(escape(run_id), "", "", "[red]unreadable[/red]", *[""] * 8, escape(failure.cause[:60]))
        console.print(table)
        console.print("* the inference input/output split is an estimate derived from prices", style="dim")
        if self.wallet is not None:
            walletline = f"wallet {escape(self.wallet.wallet_id)}: balance ${self.wallet.balance_usd:,.2f}"
            wallet_evals = by_run.get(self.wallet.wallet_id, [])
            if wallet_evals:
                walletline += "  " + escape(_budget_cell(wallet_evals))
            console.print(walletline)
        for subject, failure in self.failures.items():
            what = "the wallet" if subject == "wallet" else f"run {escape(subject)}"
            console.print(f"[red]Could not read {what}: {escape(failure.cause)}[/red] ({escape(failure.error[:300])})")
        if self.unauthorized:
            console.print("[red]The API refused the key (401): check PRIME_API_KEY.[/red]")
        elif self.unreachable:
            console.print("[red]Nothing could be read from the API: is it reachable?[/red]")
        breached = self.breached
        if breached:
            console.print(f"[red]{len(breached)} rule(s) breached[/red]")
        elif self.failures or self.unreachable or self.unauthorized:
            console.print(
                f"[yellow]no rule breached among what could be read; {len(self.failures)} unreadable:"
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
