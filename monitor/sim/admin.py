"""The admin API under /_sim/ (outside the spec), behind the `X-Sim-Admin-Token` header.

GET    /_sim/health                 liveness and the simulated time
GET    /_sim/clock                  {"now", "manual", "speed"}
POST   /_sim/clock/advance          {"seconds": N} (manual clock only; 409 otherwise)
POST   /_sim/runs                   a run, same fields as a scenario run -> 201 {"run_id", "run"}
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
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from monitor.sim.context import SIM_CONTEXT, detail, validation_errors
from monitor.sim.engine import ClockNotManual, DuplicateRun, RunNotFound, UnknownTeam
from monitor.sim.faults import FaultSpec
from monitor.sim.rates import ConfigProblem
from monitor.sim.scenario import RunSpec

ADMIN_TOKEN_HEADER = "X-Sim-Admin-Token"


class _Advance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0, le=10 * 365 * 86400)


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
        errors = [
            (".".join(str(p) for p in item["loc"]) or "body", item["msg"])
            for item in exc.errors(include_url=False, include_input=False)
        ]
        raise _BadBody(validation_errors(errors)) from None


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
    router.add_get("/_sim/ledger", ledger, allow_head=False)
    router.add_get("/_sim/ledger/{run_id}", run_ledger, allow_head=False)
    router.add_get("/_sim/faults", list_faults, allow_head=False)
    router.add_put("/_sim/faults", set_faults)
    router.add_post("/_sim/faults", add_fault)
    router.add_delete("/_sim/faults", clear_faults)
    router.add_get("/_sim/requests", requests, allow_head=False)
    router.add_delete("/_sim/requests", reset_requests)
