"""A loopback HTTP server that answers every request with the bytes a test sets: hostile API answers.

The simulator answers like the real API; this answers like a broken one, for the client's tests
of what it refuses (oversized, trickled, compressed, mislabelled, non-JSON, deep, out-of-bounds
bodies) and for the hypothesis sweep over mutated answers. It runs on the caller's event loop:

    async with serve_canned_api() as api:
        api.reply = CannedReply(status=200, body=b"{...}")
        client = PrimeClient(base_url=api.base_url, ...)

`reply` is a CannedReply, or a callable that takes the aiohttp request and returns one. Every
request is recorded in `received` as (method, raw path as it arrived, query string cut off).
A reply with `chunks` is streamed chunk by chunk, `chunk_delay` seconds apart (a trickle; no
Content-Length, so chunked encoding); `chunks_sent` counts what was written before the peer went
away. `CannedApi.start()` / `stop()` run it without a context manager (e.g. on a loop a sync
hypothesis test drives with `run_until_complete`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

MiB = 1024 * 1024
# A usage answer the client accepts: what the tests of its limits and pools break or repeat.
GOOD_USAGE: dict[str, Any] = {
    "run_id": "run-1",
    "training": {"tokens": 1000, "cost_usd": 0.3},
    "inference": {"tokens": 500, "input_tokens": 300, "output_tokens": 200, "cost_usd": 0.1},
    "total_tokens": 1500,
    "total_cost_usd": 0.4,
    "pricing": {"training_per_mtok": 0.3, "inference_input_per_mtok": 0.1, "inference_output_per_mtok": 0.3},
    "record_count": 2,
}


@dataclass(frozen=True)
class CannedReply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Sequence[bytes] | None = None
    chunk_delay: float = 0.0


ReplySource = CannedReply | Callable[[web.Request], CannedReply]


class CannedApi:
    def __init__(self) -> None:
        self.reply: ReplySource = CannedReply()
        self.received: list[tuple[str, str]] = []
        self.chunks_sent = 0
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.received.append((request.method, request.raw_path.split("?", 1)[0]))
        reply = self.reply(request) if callable(self.reply) else self.reply
        if reply.chunks is None:
            response = web.Response(status=reply.status, body=reply.body, headers=reply.headers)
            response.content_type = reply.content_type
            return response
        stream = web.StreamResponse(status=reply.status, headers=reply.headers)
        stream.content_type = reply.content_type
        self.chunks_sent = 0
        try:
            await stream.prepare(request)
            for chunk in reply.chunks:
                await stream.write(chunk)
                self.chunks_sent += 1
                if reply.chunk_delay:
                    await asyncio.sleep(reply.chunk_delay)
            await stream.write_eof()
        except ConnectionError:
            # The client stopped reading and closed the connection: what this test wants to see.
            pass
        return stream


@asynccontextmanager
async def serve_canned_api() -> AsyncIterator[CannedApi]:
    api = CannedApi()
    await api.start()
    try:
        yield api
    finally:
        await api.stop()


@pytest.fixture
async def api() -> AsyncIterator[CannedApi]:
    """A canned API on the test's event loop."""
    async with serve_canned_api() as server:
        yield server
