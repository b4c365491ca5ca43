"""The simulated Prime API's state: runs, wallets and the ledger, on an injected clock.

Pure logic, no I/O: the HTTP layer (server.py) calls these methods and renders the models
they return. Thread-safe, so tests may read it from another thread while the server runs.
Beyond the spec (for the admin API): bulk runs, billing corrections and price changes.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import string
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from monitor.api.models import (
    BillingEntry,
    CreateDedicatedRunRequest,
    CreateDedicatedRunResponse,
    DeleteRunResponse,
    RunPricing,
    RunUsageBreakdown,
    RunUsageResponse,
    WalletResponse,
)
from monitor.clock import Clock, ManualClock
from monitor.sim.accounting import SimRun
from monitor.sim.billing import StaticRow, iso, per_record_page, per_run_page
from monitor.sim.ledger import correction_entry, price_dict, price_segments, run_entry
from monitor.sim.pricing import ModelPrice
from monitor.sim.rates import ConfigProblem
from monitor.sim.scenario import ResolvedRun, RunSpec, Scenario, ScenarioError, resolve_run

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


class BulkProblem(ValueError):
    """One run of a bulk add is bad (nothing was added); `index` is its place in the list."""

    def __init__(self, index: int, problem: Exception) -> None:
        super().__init__(f"runs[{index}]: {problem}")
        self.index = index
        self.problem = problem


@dataclass
class SimWallet:
    wallet_id: str
    team_id: str | None
    starting_balance_usd: float
    currency: str
    static_rows: list[StaticRow] = field(default_factory=list)


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
                at = now - row.billed_ago
                entry = BillingEntry(
                    id=row.id or f"bill-{label}-{row.resource_type}-{index + 1}",
                    created_at=iso(at),
                    updated_at=iso(at),
                    last_billed_at=iso(at),
                    amount_usd=row.amount_usd,
                    currency=spec.currency,
                    resource_type=row.resource_type,
                    resource_id=row.resource_id,
                )
                wallet.static_rows.append(StaticRow(at=at, entry=entry))
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

    def _new_run(self, spec: RunSpec, resolved: ResolvedRun, *, wallet: SimWallet, source: str) -> SimRun:
        return SimRun(
            run_id=spec.id or self._new_id("rft_"),
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

    def add_run(self, spec: RunSpec, *, source: str = "admin") -> SimRun:
        """Register a run; raises ConfigProblem, UnknownTeam or DuplicateRun."""
        resolved = resolve_run(spec, self.scenario.defaults)
        with self._lock:
            wallet = self.wallets.get(spec.team_id)
            if wallet is None:
                raise UnknownTeam(f"no wallet for team {spec.team_id!r}")
            if spec.id is not None and spec.id in self.runs:
                raise DuplicateRun(f"a run with id {spec.id!r} exists")
            run = self._new_run(spec, resolved, wallet=wallet, source=source)
            self.runs[run.run_id] = run
        log.info("sim_run_added", run_id=run.run_id, base_model=run.base_model, team_id=run.team_id, source=source)
        return run

    def add_runs(self, specs: Sequence[RunSpec], *, source: str = "admin") -> list[SimRun]:
        """Register many runs at once, all or none; raises BulkProblem naming the first bad one."""
        resolved: list[tuple[RunSpec, ResolvedRun, SimWallet]] = []
        for index, spec in enumerate(specs):
            try:
                wallet = self.wallets.get(spec.team_id)
                if wallet is None:
                    raise UnknownTeam(f"no wallet for team {spec.team_id!r}")
                resolved.append((spec, resolve_run(spec, self.scenario.defaults), wallet))
            except (ConfigProblem, UnknownTeam) as problem:
                raise BulkProblem(index, problem) from None
        with self._lock:
            seen: set[str] = set()
            for index, spec in enumerate(specs):
                if spec.id is not None and (spec.id in self.runs or spec.id in seen):
                    raise BulkProblem(index, DuplicateRun(f"a run with id {spec.id!r} exists"))
                if spec.id is not None:
                    seen.add(spec.id)
            runs = [self._new_run(spec, res, wallet=wallet, source=source) for spec, res, wallet in resolved]
            for run in runs:
                self.runs[run.run_id] = run
        # One event for the batch: thousands of per-run lines would drown the log.
        log.info("sim_runs_added", count=len(runs), source=source)
        return runs

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

    def correct_run(self, run_id: str, *, fraction: float, records: int) -> dict[str, Any]:
        """A billing correction now: `fraction` off the run's landed and accrued usage, `records` off its count."""
        if not 0 < fraction <= 1:
            raise ValueError("fraction must be above 0 and at most 1")
        if records < 0:
            raise ValueError("records must be 0 or more")
        with self._lock:
            run = self._run(run_id)
            correction = run.correct(self.now(), fraction=fraction, records=records, meter_interval=self.meter_interval)
        log.info("sim_run_corrected", run_id=run_id, fraction=fraction, records_removed=correction.records_removed)
        return correction_entry(correction)

    def set_pricing(
        self,
        run_id: str,
        *,
        training_per_mtok: float | None = None,
        inference_input_per_mtok: float | None = None,
        inference_output_per_mtok: float | None = None,
    ) -> dict[str, Any]:
        """New prices from now on (omitted meters keep theirs); earlier tokens keep their prices."""
        with self._lock:
            run = self._run(run_id)
            now = self.now()
            old = run.latest_price
            new = ModelPrice(
                model=old.model,
                training_per_mtok=old.training_per_mtok if training_per_mtok is None else training_per_mtok,
                inference_input_per_mtok=(
                    old.inference_input_per_mtok if inference_input_per_mtok is None else inference_input_per_mtok
                ),
                inference_output_per_mtok=(
                    old.inference_output_per_mtok if inference_output_per_mtok is None else inference_output_per_mtok
                ),
                assumed=old.assumed,
            )
            run.change_price(now, new)
            segments = price_segments(run, now)
        log.info("sim_run_repriced", run_id=run_id, segments=len(segments))
        return {"run_id": run_id, "at": now, "pricing": price_dict(new), "price_segments": segments}

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
            price = run.latest_price
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
                training_per_mtok=price.training_per_mtok,
                inference_input_per_mtok=price.inference_input_per_mtok,
                inference_output_per_mtok=price.inference_output_per_mtok,
            ),
            record_count=view.record_count,
        )

    def wallet(self, *, team_id: str | None, limit: int, offset: int) -> WalletResponse:
        with self._lock:
            wallet = self.wallets.get(team_id)
            if wallet is None:
                raise UnknownTeam(f"not a member of team {team_id!r}")
            now = self.now()
            runs = [run for run in self.runs.values() if run.wallet_id == wallet.wallet_id]
            billed = [(run, run.billed(now, meter_interval=self.meter_interval)) for run in runs]
            spent = sum(view.usage.total_cost_usd for _, view in billed)
            statics, currency, interval = wallet.static_rows, wallet.currency, self.meter_interval
            if self.scenario.billing_rows == "per_record":
                total, rows = per_record_page(
                    runs=runs,
                    statics=statics,
                    now=now,
                    currency=currency,
                    meter_interval=interval,
                    limit=limit,
                    offset=offset,
                )
            else:
                total, rows = per_run_page(
                    billed=billed,
                    statics=statics,
                    currency=currency,
                    meter_interval=interval,
                    limit=limit,
                    offset=offset,
                )
        return WalletResponse(
            wallet_id=wallet.wallet_id,
            team_id=wallet.team_id,
            balance_usd=wallet.starting_balance_usd - spent,
            currency=wallet.currency,
            total_billings=total,
            recent_billings=rows,
        )

    # --- the ledger (admin API) --------------------------------------------------------------

    def run_ledger(self, run_id: str) -> dict[str, Any]:
        with self._lock:
            return run_entry(self._run(run_id), self.now(), meter_interval=self.meter_interval)

    def ledger(self) -> dict[str, Any]:
        with self._lock:
            now = self.now()
            runs = {
                run_id: run_entry(run, now, meter_interval=self.meter_interval) for run_id, run in self.runs.items()
            }
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
