"""The public API: the four spec paths plus the delete path the official `prime` CLI calls."""

from __future__ import annotations

import json
import math
from typing import Any

import structlog
from aiohttp import web
from pydantic import ValidationError

from monitor.api.models import CreateDedicatedRunRequest
from monitor.sim.context import SIM_CONTEXT, detail, json_model, unauthorized, validation_errors
from monitor.sim.engine import RunNotFound, UnknownTeam
from monitor.sim.rates import ConfigProblem

log = structlog.get_logger(__name__)

RUN_NOT_FOUND = "Run not found"
# Route name -> the endpoint name faults and request counts use.
ENDPOINT_OF_ROUTE = {
    "usage": "usage",
    "wallet": "wallet",
    "create": "create",
    "delete": "delete",
    "delete-rft": "delete",
}


class ParamError(ValueError):
    def __init__(self, param: str, details: str) -> None:
        super().__init__(details)
        self.param = param
        self.details = details


def int_param(query: Any, name: str, *, default: int, minimum: int, maximum: int | None = None) -> int:
    """A query integer validated as the spec says; ParamError names the parameter."""
    raw = query.get(name)
    if raw is None:
        return default
    text = raw.strip()
    try:
        value = int(text)
    except ValueError:
        # JSON Schema counts 5.0 as an integer; anything else is not one.
        try:
            number = float(text)
        except ValueError:
            raise ParamError(name, "Input should be a valid integer") from None
        if not math.isfinite(number) or not number.is_integer():
            raise ParamError(name, "Input should be a valid integer") from None
        value = int(number)
    if value < minimum:
        raise ParamError(name, f"Input should be greater than or equal to {minimum}")
    if maximum is not None and value > maximum:
        raise ParamError(name, f"Input should be less than or equal to {maximum}")
    return value


async def get_run_usage(request: web.Request) -> web.Response:
    ctx = request.app[SIM_CONTEXT]
    try:
        usage = ctx.engine.run_usage(request.match_info["run_id"])
    except RunNotFound:
        return detail(RUN_NOT_FOUND, status=404)
    return json_model(usage)


async def get_wallet(request: web.Request) -> web.Response:
    ctx = request.app[SIM_CONTEXT]
    errors: list[tuple[str, str]] = []
    limit = offset = 0
    try:
        limit = int_param(request.query, "limit", default=20, minimum=1, maximum=100)
    except ParamError as exc:
        errors.append((exc.param, exc.details))
    try:
        offset = int_param(request.query, "offset", default=0, minimum=0)
    except ParamError as exc:
        errors.append((exc.param, exc.details))
    if errors:
        return validation_errors(errors)
    team_id = request.query.get("teamId")
    try:
        wallet = ctx.engine.wallet(team_id=team_id, limit=limit, offset=offset)
    except UnknownTeam:
        return unauthorized("Not a member of this team")
    return json_model(wallet)


def _pydantic_errors(exc: ValidationError) -> list[tuple[str, str]]:
    # Only the location and message: the input may hold a secret (wandbApiKey, hfToken).
    return [
        (".".join(str(part) for part in item["loc"]) or "body", item["msg"])
        for item in exc.errors(include_url=False, include_input=False)
    ]


async def create_run(request: web.Request) -> web.Response:
    ctx = request.app[SIM_CONTEXT]
    raw = await request.read()
    if not raw.strip():
        return validation_errors([("body", "Field required")])
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return validation_errors([("body", "Invalid JSON")])
    if not isinstance(data, dict):
        return validation_errors([("body", "Input should be a valid dictionary or object")])
    try:
        body = CreateDedicatedRunRequest.model_validate(data)
    except ValidationError as exc:
        return validation_errors(_pydantic_errors(exc))
    try:
        created = ctx.engine.create_run(body)
    except UnknownTeam:
        return unauthorized("Not a member of this team")
    except ConfigProblem as problem:
        return validation_errors([(problem.param, problem.details)])
    log.info("sim_run_created", run_id=created.run_id, job_id=created.job_id)
    return json_model(created, status=201)


async def delete_run(request: web.Request) -> web.Response:
    ctx = request.app[SIM_CONTEXT]
    try:
        deleted = ctx.engine.delete_run(request.match_info["run_id"], path=request.path)
    except RunNotFound:
        return detail(RUN_NOT_FOUND, status=404)
    return json_model(deleted)


def add_public_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/billing/runs/{run_id}/usage", get_run_usage, name="usage", allow_head=False)
    app.router.add_get("/api/v1/billing/wallet", get_wallet, name="wallet", allow_head=False)
    app.router.add_post("/api/v1/training/runs", create_run, name="create")
    app.router.add_delete("/api/v1/training/runs/{run_id}", delete_run, name="delete")
    # What `prime train delete ID -f` calls (the backend routes dedicated runs to the same delete).
    app.router.add_delete("/api/v1/rft/runs/{run_id}", delete_run, name="delete-rft")
