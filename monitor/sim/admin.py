"""The admin API under /_sim/ (outside the spec), behind the `X-Sim-Admin-Token` header.

GET    /_sim/health                 liveness and the simulated time
GET    /_sim/clock                  {"now", "manual", "speed"}
POST   /_sim/clock/advance          {"seconds": N} (manual clock only; 409 otherwise)
POST   /_sim/runs                   a run, same fields as a scenario run -> 201 {"run_id", "run"}
POST   /_sim/runs/bulk              {"runs": [...]} many runs, all or none -> 201 {"count", "run_ids"}
POST   /_sim/runs/{run_id}/correction  {"fraction", "records"} a billing correction -> 201 {"run_id", "correction"}
POST   /_sim/runs/{run_id}/pricing     new $/Mtok from now on -> 200 {"run_id", "at", "pricing", "price_segments"}
GET    /_sim/ledger                 every run's true and billed figures, and every wallet
GET    /_sim/ledger/{run_id}        one run's ledger entry (404 if unknown)
GET    /_sim/faults                 the active faults, with what is left of their counts
PUT    /_sim/faults                 {"faults": [...]} replaces them all
POST   /_sim/faults                 one fault -> 201 {"id"}
DELETE /_sim/faults                 clears them
GET    /_sim/requests               counts per endpoint and status, and recent requests
DELETE /_sim/requests               resets the counts and the log
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from monitor.sim.context import SIM_CONTEXT, detail, validation_errors
from monitor.sim.engine import BulkProblem, ClockNotManual, DuplicateRun, RunNotFound, UnknownTeam
from monitor.sim.faults import FaultSpec
from monitor.sim.rates import ConfigProblem
from monitor.sim.scenario import RunSpec

ADMIN_TOKEN_HEADER = "X-Sim-Admin-Token"


class _Advance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0, le=10 * 365 * 86400)


class _BulkRuns(BaseModel):
    model_config = ConfigDict(extra="forbid")
    runs: list[RunSpec] = Field(min_length=1, max_length=100_000)


class _Correction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fraction: float = Field(gt=0, le=1, description="share taken off every meter, billed and accrued")
    records: int = Field(default=0, ge=0, description="taken off record_count (not below 0)")


class _Pricing(BaseModel):
    """New $ per Mtok; a meter left out keeps its price."""

    model_config = ConfigDict(extra="forbid")
    training_per_mtok: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    inference_input_per_mtok: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    inference_output_per_mtok: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _some_price(self) -> _Pricing:
        if all(getattr(self, name) is None for name in type(self).model_fields):
            raise ConfigProblem("body", f"give at least one of {', '.join(type(self).model_fields)}")
        return self


class _FaultList(BaseModel):
    model_config = ConfigDict(extra="forbid")
    faults: list[FaultSpec]


class _BadBody(Exception):
    def __init__(self, response: web.Response) -> None:
        super().__init__("bad admin request body")
        self.response = response


async def _body(request: web.Request, model: type[BaseModel]) -> Any:
    raw = await request.read()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise _BadBody(validation_errors([("body", "Invalid JSON")])) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _BadBody(validation_errors(_named_errors(exc))) from None


def _named_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """(param, details) per error; a check that names its own field (ConfigProblem) is placed there."""
    errors: list[tuple[str, str]] = []
    for item in exc.errors(include_url=False, include_input=False):
        loc = [str(part) for part in item["loc"]]
        message = item["msg"]
        problem = item.get("ctx", {}).get("error")
        if isinstance(problem, ConfigProblem):
            loc, message = [*loc, problem.param], problem.details
        errors.append((".".join(loc) or "body", message))
    return errors


@web.middleware
async def admin_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except _BadBody as bad:
        return bad.response
    return response


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "now": request.app[SIM_CONTEXT].engine.now()})


async def clock(request: web.Request) -> web.Response:
    ctx = request.app[SIM_CONTEXT]
    return web.json_response({"now": ctx.engine.now(), "manual": ctx.engine.manual_clock, "speed": ctx.speed})


async def advance(request: web.Request) -> web.Response:
    ctx = request.app[SIM_CONTEXT]
    body: _Advance = await _body(request, _Advance)
    try:
        now = ctx.engine.advance(body.seconds)
    except ClockNotManual as exc:
        return detail(str(exc), status=409)
    return web.json_response({"now": now})


async def add_run(request: web.Request) -> web.Response:
    ctx = request.app[SIM_CONTEXT]
    spec: RunSpec = await _body(request, RunSpec)
    try:
        run = ctx.engine.add_run(spec, source="admin")
    except ConfigProblem as problem:
        return validation_errors([(problem.param, problem.details)])
    except UnknownTeam:
        return validation_errors([("team_id", f"no wallet has team_id {spec.team_id!r}")])
    except DuplicateRun as exc:
        return detail(str(exc), status=409)
    return web.json_response({"run_id": run.run_id, "run": ctx.engine.run_ledger(run.run_id)}, status=201)


async def add_runs(request: web.Request) -> web.Response:
    ctx = request.app[SIM_CONTEXT]
    body: _BulkRuns = await _body(request, _BulkRuns)
    try:
        runs = ctx.engine.add_runs(body.runs, source="admin")
    except BulkProblem as bad:
        where, problem = f"runs.{bad.index}", bad.problem
        if isinstance(problem, ConfigProblem):
            return validation_errors([(f"{where}.{problem.param}", problem.details)])
        if isinstance(problem, UnknownTeam):
            return validation_errors([(f"{where}.team_id", f"no wallet has team_id {body.runs[bad.index].team_id!r}")])
        return detail(f"{where}: {problem}", status=409)
    return web.json_response({"count": len(runs), "run_ids": [run.run_id for run in runs]}, status=201)


async def correct_run(request: web.Request) -> web.Response:
    ctx = request.app[SIM_CONTEXT]
    body: _Correction = await _body(request, _Correction)
    run_id = request.match_info["run_id"]
    try:
        correction = ctx.engine.correct_run(run_id, fraction=body.fraction, records=body.records)
    except RunNotFound:
        return detail("Run not found", status=404)
    return web.json_response({"run_id": run_id, "correction": correction}, status=201)


async def set_pricing(request: web.Request) -> web.Response:
    ctx = request.app[SIM_CONTEXT]
    body: _Pricing = await _body(request, _Pricing)
    try:
        answer = ctx.engine.set_pricing(request.match_info["run_id"], **body.model_dump())
    except RunNotFound:
        return detail("Run not found", status=404)
    return web.json_response(answer)


async def ledger(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIM_CONTEXT].engine.ledger())


async def run_ledger(request: web.Request) -> web.Response:
    try:
        entry = request.app[SIM_CONTEXT].engine.run_ledger(request.match_info["run_id"])
    except RunNotFound:
        return detail("Run not found", status=404)
    return web.json_response(entry)


async def list_faults(request: web.Request) -> web.Response:
    return web.json_response({"faults": request.app[SIM_CONTEXT].faults.describe()})


async def set_faults(request: web.Request) -> web.Response:
    ctx = request.app[SIM_CONTEXT]
    body: _FaultList = await _body(request, _FaultList)
    ids = ctx.faults.replace(body.faults)
    return web.json_response({"ids": ids, "faults": ctx.faults.describe()})


async def add_fault(request: web.Request) -> web.Response:
    ctx = request.app[SIM_CONTEXT]
    spec: FaultSpec = await _body(request, FaultSpec)
    return web.json_response({"id": ctx.faults.add(spec)}, status=201)


async def clear_faults(request: web.Request) -> web.Response:
    request.app[SIM_CONTEXT].faults.clear()
    return web.json_response({"faults": []})


async def requests(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIM_CONTEXT].requests.snapshot())


async def reset_requests(request: web.Request) -> web.Response:
    request.app[SIM_CONTEXT].requests.reset()
    return web.json_response({"reset": True})


def add_admin_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/_sim/health", health, allow_head=False)
    router.add_get("/_sim/clock", clock, allow_head=False)
    router.add_post("/_sim/clock/advance", advance)
    router.add_post("/_sim/runs", add_run)
    router.add_post("/_sim/runs/bulk", add_runs)
    router.add_post("/_sim/runs/{run_id}/correction", correct_run)
    router.add_post("/_sim/runs/{run_id}/pricing", set_pricing)
    router.add_get("/_sim/ledger", ledger, allow_head=False)
    router.add_get("/_sim/ledger/{run_id}", run_ledger, allow_head=False)
    router.add_get("/_sim/faults", list_faults, allow_head=False)
    router.add_put("/_sim/faults", set_faults)
    router.add_post("/_sim/faults", add_fault)
    router.add_delete("/_sim/faults", clear_faults)
    router.add_get("/_sim/requests", requests, allow_head=False)
    router.add_delete("/_sim/requests", reset_requests)
