"""The simulator's HTTP server: aiohttp app, fault injection, auth, and the entry points.

- `SimulatorServer(scenario, host=..., port=..., manual_clock=...)`: `await start()` -> base URL,
  `await stop()`. For in-process use (tests, `demo`).
- `serve(host=..., port=..., scenario_path=...)`: runs until cancelled (the `simulate` command).
- `enable_manual_clock(server)`: freeze simulated time; `POST /_sim/clock/advance` moves it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from monitor.clock import SYSTEM_CLOCK, Clock, ManualClock
from monitor.sim.admin import ADMIN_TOKEN_HEADER, add_admin_routes, admin_errors
from monitor.sim.api import ENDPOINT_OF_ROUTE, add_public_routes
from monitor.sim.context import SIM_CONTEXT, SimContext, detail, unauthorized
from monitor.sim.engine import Engine
from monitor.sim.faults import FaultBook, FaultSpec, drop_field, merge_patch
from monitor.sim.requestlog import LoggedRequest, RequestLog
from monitor.sim.scenario import Scenario, load_scenario
from monitor.sim.simclock import ScaledClock

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Admin bodies may carry 10,000 runs (bulk add) or a large scripted raw_body.
MAX_REQUEST_BYTES = 64 * 1024 * 1024
# Proxies in front of the real API answer 502/504 with HTML, the app itself with JSON.
_HTML_STATUSES = {502: "Bad Gateway", 504: "Gateway Timeout"}
_JSON_STATUSES = {500: "Internal Server Error", 503: "Service Unavailable"}


def _error_response(status: int) -> web.Response:
    if status in _HTML_STATUSES:
        reason = _HTML_STATUSES[status]
        html = f"<html><head><title>{status} {reason}</title></head><body><h1>{status} {reason}</h1></body></html>"
        return web.Response(status=status, text=html, content_type="text/html")
    return detail(_JSON_STATUSES.get(status, "Server Error"), status=status)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def _call(handler: Handler, request: web.Request) -> web.StreamResponse:
    """Run a handler; aiohttp's own 404/405 become JSON bodies, as FastAPI sends them."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return detail(exc.reason, status=exc.status, headers=headers)


async def _before(ctx: SimContext, fault: FaultSpec) -> web.StreamResponse | None:
    """Faults that answer instead of the API (the request has no effect)."""
    if fault.kind == "hang":
        await ctx.pause(fault.hang_seconds)
        return _error_response(504)
    if fault.kind == "error" and not fault.after_effect:
        return _error_response(fault.status)
    if fault.kind == "rate_limit":
        return detail("Too Many Requests", status=429, headers={"Retry-After": str(fault.retry_after)})
    if fault.kind == "unauthorized":
        return unauthorized("Invalid API key")
    if fault.kind == "forbidden":
        # The key is valid but may not touch this resource (another team's run).
        return detail("Not allowed to access this run", status=403)
    return None


def _after(fault: FaultSpec, endpoint: str, response: web.StreamResponse) -> web.StreamResponse:
    """Faults that spoil the real answer (the request did take effect)."""
    if fault.kind == "error":
        return _error_response(fault.status)
    if not isinstance(response, web.Response) or response.text is None:
        return response
    text = response.text
    if fault.kind == "malformed":
        # Any proper prefix of a JSON object is not JSON.
        return web.Response(
            status=response.status, text=text[: max(1, len(text) // 2)], content_type="application/json"
        )
    if fault.kind == "drift" and 200 <= response.status < 300:
        body = json.loads(text)
        drop_field(body, fault.drift_field(endpoint))
        return web.json_response(body, status=response.status)
    if fault.kind == "override" and 200 <= response.status < 300:
        if fault.raw_body is not None:
            return web.Response(status=response.status, text=fault.raw_body, content_type="application/json")
        # json.dumps writes NaN, Infinity and 1e300 as given: the script decides what is sent.
        patched = merge_patch(json.loads(text), fault.set)
        return web.Response(status=response.status, text=json.dumps(patched), content_type="application/json")
    return response


async def _public(
    request: web.Request, handler: Handler, ctx: SimContext, endpoint: str
) -> tuple[web.StreamResponse, str | None]:
    if endpoint == "other":
        # Unknown path or method: routing answers before auth, as FastAPI does.
        return await _call(handler, request), None
    plan = ctx.faults.plan(endpoint, request.match_info.get("run_id"))
    label = plan.fault.kind if plan.fault is not None else ("latency" if plan.delay > 0 else None)
    await ctx.pause(plan.delay)
    if plan.fault is not None:
        early = await _before(ctx, plan.fault)
        if early is not None:
            return early, label
    if not ctx.api_key_ok(_bearer(request)):
        return unauthorized(), label
    response = await _call(handler, request)
    if plan.fault is not None:
        response = _after(plan.fault, endpoint, response)
    return response, label


@web.middleware
async def sim_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[SIM_CONTEXT]
    if request.path.startswith("/_sim/"):
        if not ctx.admin_token_ok(request.headers.get(ADMIN_TOKEN_HEADER)):
            return detail(f"missing or wrong {ADMIN_TOKEN_HEADER}", status=401)
        return await _call(handler, request)
    resource = request.match_info.route.resource
    endpoint = ENDPOINT_OF_ROUTE.get(resource.name or "", "other") if resource is not None else "other"
    label: str | None = None
    try:
        response, label = await _public(request, handler, ctx, endpoint)
    except Exception:
        log.exception("sim_handler_failed", method=request.method, path=request.path)
        response = detail("Internal Server Error", status=500)
    ctx.requests.record(
        LoggedRequest(
            method=request.method,
            path=request.path,
            raw_path=request.raw_path.split("?", 1)[0],
            endpoint=endpoint,
            status=response.status,
            at=ctx.engine.now(),
            fault=label,
        )
    )
    log.debug("sim_request", method=request.method, path=request.path, status=response.status, fault=label)
    return response


def build_app(ctx: SimContext) -> web.Application:
    app = web.Application(middlewares=[sim_middleware, admin_errors], client_max_size=MAX_REQUEST_BYTES)
    app[SIM_CONTEXT] = ctx
    add_public_routes(app)
    add_admin_routes(app)
    return app


def _clock_for(scenario: Scenario, *, manual_clock: bool) -> Clock:
    if manual_clock:
        return ManualClock()
    if scenario.speed != 1.0:
        return ScaledClock(SYSTEM_CLOCK, speed=scenario.speed)
    return SYSTEM_CLOCK


class SimulatorServer:
    """The simulator on a socket, for in-process use. Port 0 picks a free port."""

    def __init__(
        self,
        scenario: Scenario | dict[str, Any] | str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        manual_clock: bool = False,
        speed: float | None = None,
        clock: Clock | None = None,
        shutdown_timeout: float = 1.0,
    ) -> None:
        self.scenario = load_scenario(scenario)
        if speed is not None:
            if not 0 < speed <= 100_000:
                raise ValueError("speed must be above 0 and at most 100000")
            self.scenario = self.scenario.model_copy(update={"speed": speed})
        source = str(scenario) if isinstance(scenario, str | Path) else "scenario"
        self.engine = Engine(
            self.scenario, clock=clock or _clock_for(self.scenario, manual_clock=manual_clock), source=source
        )
        self.faults = FaultBook(seed=self.scenario.seed)
        self.faults.replace(list(self.scenario.faults))
        self.requests = RequestLog(capacity=self.scenario.request_log_size)
        self.host = host
        self.port = port
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self._ctx: SimContext | None = None
        self.base_url: str | None = None

    def __repr__(self) -> str:
        return f"SimulatorServer(base_url={self.base_url!r}, runs={len(self.engine.runs)})"

    @property
    def api_key(self) -> str:
        """The first accepted API key (the one to hand to clients)."""
        return self.scenario.api_keys[0].get_secret_value()

    @property
    def admin_token(self) -> str:
        return self.scenario.admin_token.get_secret_value()

    async def start(self) -> str:
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        self._ctx = SimContext(
            engine=self.engine,
            faults=self.faults,
            requests=self.requests,
            api_keys=list(self.scenario.api_keys),
            admin_token=self.scenario.admin_token,
            speed=self.scenario.speed,
        )
        runner = web.AppRunner(build_app(self._ctx), access_log=None, shutdown_timeout=self._shutdown_timeout)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.port = port
        shown_host = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{shown_host}:{port}"
        log.info("sim_started", base_url=self.base_url, runs=len(self.engine.runs))
        return self.base_url

    async def stop(self) -> None:
        if self._ctx is not None:
            self._ctx.shutdown.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        log.info("sim_stopped", base_url=self.base_url)


def enable_manual_clock(server: SimulatorServer) -> ManualClock:
    """Freeze simulated time at its current value; only `POST /_sim/clock/advance` moves it from now on."""
    return server.engine.use_manual_clock()


async def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    scenario_path: str | None = None,
    manual_clock: bool = False,
    speed: float | None = None,
) -> None:
    """Run the simulator until cancelled. Prints where it listens and the env a client needs.

    `speed` overrides the scenario's (simulated seconds per real second); a bad scenario raises
    ScenarioError (a ConfigError) naming the file and field before anything listens.
    """
    server = SimulatorServer(scenario_path, host=host, port=port, manual_clock=manual_clock, speed=speed)
    url = await server.start()
    print(f"simulator listening on {url}", flush=True)
    # The simulator's own key for its own loopback API: printing it is the point.
    print(f"  export PRIME_API_BASE_URL={url} PRIME_API_KEY={server.api_key}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
