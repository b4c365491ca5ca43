"""What the simulator's HTTP handlers share: the engine, faults, request log and secrets."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel, SecretStr

from monitor.sim.engine import Engine
from monitor.sim.faults import FaultBook
from monitor.sim.requestlog import RequestLog


@dataclass
class SimContext:
    engine: Engine
    faults: FaultBook
    requests: RequestLog
    api_keys: list[SecretStr] = field(repr=False)
    admin_token: SecretStr = field(repr=False)
    speed: float = 1.0
    # Set when the server stops, so sleeping faults (latency, hang) end at once.
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)

    def api_key_ok(self, presented: str | None) -> bool:
        if not presented:
            return False
        given = presented.encode()
        # Compare against every key (no early exit) so timing does not tell which key is close.
        return any([hmac.compare_digest(given, key.get_secret_value().encode()) for key in self.api_keys])

    def admin_token_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(
            (presented or "").encode(), self.admin_token.get_secret_value().encode()
        )

    async def pause(self, seconds: float) -> None:
        """Sleep in wall time, cut short when the server stops."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.shutdown.wait(), timeout=seconds)


SIM_CONTEXT: web.AppKey[SimContext] = web.AppKey("sim_context", SimContext)


def json_model(model: BaseModel, *, status: int = 200) -> web.Response:
    """Render a spec model exactly as the wire format: aliases, ISO datetimes."""
    return web.json_response(model.model_dump(mode="json", by_alias=True), status=status)


def detail(message: str, *, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"detail": message}, status=status, headers=headers)


def validation_errors(errors: list[tuple[str, str]]) -> web.Response:
    """A 422 in the spec's ErrorResponse shape."""
    body: dict[str, Any] = {"errors": [{"param": param, "details": details} for param, details in errors]}
    return web.json_response(body, status=422)


def unauthorized(message: str = "Not authenticated") -> web.Response:
    return detail(message, status=401, headers={"WWW-Authenticate": "Bearer"})
