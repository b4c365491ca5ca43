"""The simulated Prime API's state: runs, wallets and the ledger, on an injected clock.

Pure logic, no I/O: the HTTP layer (server.py) calls these methods and renders the models
they return. Thread-safe, so tests may read it from another thread while the server runs.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import string
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from monitor.clock import Clock, ManualClock
from monitor.models import (
    BillingEntry,
    CreateDedicatedRunRequest,
    CreateDedicatedRunResponse,
    DeleteRunResponse,
    RunPricing,
    RunUsageBreakdown,
    RunUsageResponse,
    WalletResponse,
)
from monitor.sim.accounting import SimRun
from monitor.sim.rates import ConfigProblem
from monitor.sim.scenario import RunSpec, Scenario, ScenarioError, resolve_run

log = structlog.get_logger(__name__)

_ID_ALPHABET = string.ascii_lowercase + string.digits


class RunNotFound(LookupError):
    pass


class UnknownTeam(LookupError):
    """The caller is not a member of the team it named (the API answers 401)."""


class DuplicateRun(ValueError):
    pass


class ClockNotManual(RuntimeError):
    pass


def iso(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


@dataclass
class SimWallet:
    wallet_id: str
    team_id: str | None
    starting_balance_usd: float
    currency: str
    static_rows: list[BillingEntry] = field(default_factory=list)


class Engine:
    def __init__(self, scenario: Scenario, *, clock: Clock, source: str = "scenario") -> None:
        self.scenario = scenario
        self.meter_interval = scenario.meter_interval
        self._clock = clock
        self._lock = threading.RLock()
        self._ids = random.Random(f"ids:{scenario.seed}")
        self.wallets: dict[str | None, SimWallet] = {}
        self.runs: dict[str, SimRun] = {}
        now = clock.now()
        for spec in scenario.wallets:
            label = spec.team_id or "personal"
            wallet = SimWallet(
                wallet_id=spec.wallet_id or f"wallet-{label}",
                team_id=spec.team_id,
                starting_balance_usd=spec.starting_balance_usd,
                currency=spec.currency,
            )
            for index, row in enumerate(spec.billings):
                at = iso(now - row.billed_ago)
                wallet.static_rows.append(
                    BillingEntry(
                        id=row.id or f"bill-{label}-{row.resource_type}-{index + 1}",
                        created_at=at,
                        updated_at=at,
                        last_billed_at=at,
                        amount_usd=row.amount_usd,
                        currency=spec.currency,
                        resource_type=row.resource_type,
                        resource_id=row.resource_id,
                    )
                )
            self.wallets[spec.team_id] = wallet
        for index, run_spec in enumerate(scenario.runs):
            try:
                self.add_run(run_spec, source="scenario")
            except (ConfigProblem, UnknownTeam, DuplicateRun) as exc:
                raise ScenarioError(f"{source}: runs[{index}]: {exc}") from None

    # --- the clock -------------------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        return self._clock

    def now(self) -> float:
        return self._clock.now()

    @property
    def manual_clock(self) -> bool:
        return isinstance(self._clock, ManualClock)

    def use_manual_clock(self) -> ManualClock:
        """Freeze simulated time where it is now; from here on only `advance` moves it."""
        with self._lock:
            if not isinstance(self._clock, ManualClock):
                self._clock = ManualClock(start=self._clock.now())
            return self._clock

    def advance(self, seconds: float) -> float:
        with self._lock:
            if not isinstance(self._clock, ManualClock):
                raise ClockNotManual("the simulator is not on a manual clock")
            if seconds < 0:
                raise ValueError("time only moves forward")
            self._clock.advance(seconds)
            return self._clock.now()

    # --- runs ------------------------------------------------------------------------------

    def _new_id(self, prefix: str, length: int = 20) -> str:
        return prefix + "".join(self._ids.choices(_ID_ALPHABET, k=length))

    def add_run(self, spec: RunSpec, *, source: str = "admin") -> SimRun:
        """Register a run; raises ConfigProblem, UnknownTeam or DuplicateRun."""
        resolved = resolve_run(spec, self.scenario.defaults)
        with self._lock:
            wallet = self.wallets.get(spec.team_id)
            if wallet is None:
                raise UnknownTeam(f"no wallet for team {spec.team_id!r}")
            run_id = spec.id or self._new_id("rft_")
            if run_id in self.runs:
                raise DuplicateRun(f"a run with id {run_id!r} exists")
            run = SimRun(
                run_id=run_id,
                name=spec.name,
                base_model=resolved.base_model,
                team_id=spec.team_id,
                wallet_id=wallet.wallet_id,
                price=resolved.price,
                rates=resolved.rates,
                created_at=self.now() - spec.started_ago,
                queue_seconds=resolved.queue_seconds,
                step_seconds=resolved.step_seconds,
                max_steps=resolved.max_steps,
                fail_after=spec.fail_after,
                source=source,
                job_id=self._new_id("job_"),
            )
            self.runs[run_id] = run
        log.info("sim_run_added", run_id=run_id, base_model=run.base_model, team_id=run.team_id, source=source)
        return run

    def create_run(self, request: CreateDedicatedRunRequest) -> CreateDedicatedRunResponse:
        """POST /api/v1/training/runs. The token is returned once and kept only as a fingerprint."""
        spec = RunSpec(name=request.name, team_id=request.team_id, config=request.config)
        if request.team_id not in self.wallets:
            raise UnknownTeam(f"not a member of team {request.team_id!r}")
        run = self.add_run(spec, source="api")
        token = "pit_" + secrets.token_urlsafe(32)
        received = tuple(
            name for name, value in (("wandbApiKey", request.wandb_api_key), ("hfToken", request.hf_token)) if value
        )
        with self._lock:
            run.token_fingerprint = "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:16]
            run.secrets_received = received
        return CreateDedicatedRunResponse(run_id=run.run_id, job_id=run.job_id, token_value=token)

    def delete_run(self, run_id: str, *, path: str) -> DeleteRunResponse:
        """Both delete paths. Idempotent: every DELETE of a known run answers deleted=true."""
        with self._lock:
            run = self._run(run_id)
            first = run.record_delete(self.now(), path)
        log.info("sim_run_deleted", run_id=run_id, first=first, delete_count=run.delete_count)
        return DeleteRunResponse(run_id=run_id, deleted=True)

    def _run(self, run_id: str) -> SimRun:
        run = self.runs.get(run_id)
        if run is None:
            raise RunNotFound(run_id)
        return run

    # --- the public views --------------------------------------------------------------------

    def run_usage(self, run_id: str) -> RunUsageResponse:
        with self._lock:
            run = self._run(run_id)
            now = self.now()
            view = run.billed(now, meter_interval=self.meter_interval)
            status = run.status(now)
        usage = view.usage
        return RunUsageResponse(
            run_id=run.run_id,
            run_name=run.name,
            base_model=run.base_model,
            status=status,
            training=RunUsageBreakdown(tokens=usage.training_tokens, cost_usd=usage.training_cost_usd),
            inference=RunUsageBreakdown(
                tokens=usage.inference_tokens,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost_usd=usage.inference_cost_usd,
            ),
            total_tokens=usage.total_tokens,
            total_cost_usd=usage.total_cost_usd,
            pricing=RunPricing(
                training_per_mtok=run.price.training_per_mtok,
                inference_input_per_mtok=run.price.inference_input_per_mtok,
                inference_output_per_mtok=run.price.inference_output_per_mtok,
            ),
            record_count=view.record_count,
        )

    def _billing_rows(self, wallet: SimWallet, now: float) -> tuple[list[BillingEntry], float]:
        """All rows of a wallet, newest first by last_billed_at, and the billed run total."""
        rows = list(wallet.static_rows)
        billed = 0.0
        for run in self.runs.values():
            if run.wallet_id != wallet.wallet_id:
                continue
            view = run.billed(now, meter_interval=self.meter_interval)
            if view.record_count == 0 or view.first_billed_at is None or view.last_billed_at is None:
                continue
            billed += view.usage.total_cost_usd
            rows.append(
                BillingEntry(
                    id=f"bill_{run.run_id}",
                    created_at=iso(view.first_billed_at),
                    updated_at=iso(view.last_billed_at),
                    last_billed_at=iso(view.last_billed_at),
                    amount_usd=view.usage.total_cost_usd,
                    currency=wallet.currency,
                    resource_type="training",
                    resource_id=run.run_id,
                )
            )
        epoch = datetime.fromtimestamp(0, tz=UTC)
        rows.sort(key=lambda row: (row.last_billed_at or epoch, row.id), reverse=True)
        return rows, billed

    def wallet(self, *, team_id: str | None, limit: int, offset: int) -> WalletResponse:
        with self._lock:
            wallet = self.wallets.get(team_id)
            if wallet is None:
                raise UnknownTeam(f"not a member of team {team_id!r}")
            rows, billed = self._billing_rows(wallet, self.now())
        return WalletResponse(
            wallet_id=wallet.wallet_id,
            team_id=wallet.team_id,
            balance_usd=wallet.starting_balance_usd - billed,
            currency=wallet.currency,
            total_billings=len(rows),
            recent_billings=rows[offset : offset + limit],
        )

    # --- the ledger (admin API) --------------------------------------------------------------

    def run_ledger(self, run_id: str) -> dict[str, Any]:
        with self._lock:
            return self._run_ledger(self._run(run_id), self.now())

    def _run_ledger(self, run: SimRun, now: float) -> dict[str, Any]:
        accrued = run.accrued(now)
        view = run.billed(now, meter_interval=self.meter_interval)
        end_at, reason = run.end()
        ended = reason is not None and end_at <= now
        return {
            "run_id": run.run_id,
            "name": run.name,
            "base_model": run.base_model,
            "team_id": run.team_id,
            "wallet_id": run.wallet_id,
            "source": run.source,
            "job_id": run.job_id,
            "status": run.status(now),
            "created_at": run.created_at,
            # A run deleted while queued never started.
            "started_at": run.started_at if now >= run.started_at and end_at > run.started_at else None,
            "ended_at": end_at if ended else None,
            "end_reason": reason if ended else None,
            "first_delete_at": run.first_delete_at,
            "delete_count": run.delete_count,
            "deletes": [{"at": at, "path": path} for at, path in run.deletes],
            "max_steps": run.max_steps,
            "step_seconds": run.step_seconds,
            "steps_done": run.steps_done(now),
            "running_seconds": run.running_seconds(now),
            "rates_per_second": {
                "training": run.rates.training,
                "inference_input": run.rates.inference_input,
                "inference_output": run.rates.inference_output,
            },
            "pricing": {
                "training_per_mtok": run.price.training_per_mtok,
                "inference_input_per_mtok": run.price.inference_input_per_mtok,
                "inference_output_per_mtok": run.price.inference_output_per_mtok,
                "assumed": run.price.assumed,
            },
            "accrued": accrued.as_dict(),
            "billed": {
                **view.usage.as_dict(),
                "record_count": view.record_count,
                "first_billed_at": view.first_billed_at,
                "last_billed_at": view.last_billed_at,
            },
            "unbilled_cost_usd": accrued.total_cost_usd - view.usage.total_cost_usd,
            "token_fingerprint": run.token_fingerprint,
            "secrets_received": list(run.secrets_received),
        }

    def ledger(self) -> dict[str, Any]:
        with self._lock:
            now = self.now()
            runs = {run_id: self._run_ledger(run, now) for run_id, run in self.runs.items()}
            wallets: dict[str, Any] = {}
            for wallet in self.wallets.values():
                members = [r for r in runs.values() if r["wallet_id"] == wallet.wallet_id]
                billed = sum(r["billed"]["total_cost_usd"] for r in members)
                wallets[wallet.wallet_id] = {
                    "wallet_id": wallet.wallet_id,
                    "team_id": wallet.team_id,
                    "currency": wallet.currency,
                    "starting_balance_usd": wallet.starting_balance_usd,
                    "billed_usd": billed,
                    "accrued_usd": sum(r["accrued"]["total_cost_usd"] for r in members),
                    "balance_usd": wallet.starting_balance_usd - billed,
                    "run_ids": [r["run_id"] for r in members],
                }
        return {
            "now": now,
            "manual_clock": self.manual_clock,
            "meter_interval": self.meter_interval,
            "runs": runs,
            "wallets": wallets,
        }
