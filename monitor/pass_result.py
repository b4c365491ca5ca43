"""The result of one full pass (`check`, `run --once`): what was read, what failed and why, the exit
code, and JSON for scripts (the table for people: monitor.cli.check).

Exit codes: 0 everything was read and is within budget; 1 a rule is breached; 2 bad config; 3 the
monitor could see nothing (key refused, API unreachable); 4 some watched run or the wallet could
not be read (each named with its cause), and nothing read is breached. A pass never says "all within
budget" about a run it could not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from monitor.config.settings import Settings
from monitor.exporter.health import KEY_REFUSED, blind_causes
from monitor.exporter.live import RuntimeState
from monitor.exporter.read_health import RunHealth
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
