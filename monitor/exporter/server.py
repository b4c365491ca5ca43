"""The daemon's HTTP endpoints: /metrics, /healthz, /readyz and a tiny index at /.

aiohttp on the daemon's own event loop. Nothing here writes to the runtime.

- /metrics: the registry in the text format Prometheus asked for (OpenMetrics when its `Accept`
  header prefers it, else text 0.0.4), gzip when accepted. Through monitor.exporter.scrape_cache:
  the per-run series are re-rendered only for runs that changed (in the background, a second at
  most after the change), in slices that let polls run, and gzip is computed in a worker thread; a
  scrape never holds the loop for long, and the scrapes of a burst share one rendering (the runs'
  series at most a second old; the monitor's own families always fresh).
- /healthz: liveness (monitor.exporter.health): 503 with the reason when the scheduler's heartbeat stops or
  every job (or the state store) has failed for longer than `health.unhealthy_after`, so that an
  orchestrator restarts the daemon; else 200.
- /readyz: readiness (monitor.exporter.health): 200 only while the monitor can see (config loaded, key
  accepted, API answering, data fresher than `health.stale_intervals` poll intervals, store
  working); else 503 naming each problem. Runs failing on their own are listed as warnings.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from monitor.exporter.health import MonitorHealth
from monitor.exporter.scrape_cache import MAX_AGE_SECONDS, ScrapeCache

log = structlog.get_logger(__name__)

_TEXT = "text/plain"
_INDEX = """prime-cost-monitor
/metrics  Prometheus metrics
/healthz  liveness: 200 while the scheduler runs and not every job fails
/readyz   readiness: 200 while the monitor can see (key accepted, API answering, data fresh, store working)
"""


class MonitorHttpServer:
    def __init__(
        self,
        *,
        registry: CollectorRegistry,
        health: MonitorHealth,
        host: str,
        port: int,
        metrics_max_age: float = MAX_AGE_SECONDS,
    ) -> None:
        # A burst of scrapes shares one rendering of the runs' series, at most `metrics_max_age` old.
        self._exposition = ScrapeCache(registry, max_age=metrics_max_age)
        self._health = health
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None
        self._refresher: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Listen on host:port (port 0: a free one) and return the bound port."""
        if self._runner is not None:
            raise RuntimeError("server already started")
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        # No access log: Prometheus scrapes every few seconds. Signals belong to the daemon.
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._bound_port = _port_of(runner)
        # Runs' lines rendered as they change, a second at most after, so a scrape finds them ready.
        self._refresher = asyncio.create_task(self._exposition.keep_fresh(), name="metrics-refresh")
        log.info("http_server_started", host=self._host, port=self._bound_port)
        return self._bound_port

    async def stop(self) -> None:
        refresher, self._refresher = self._refresher, None
        if refresher is not None:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
        await self._exposition.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            log.info("http_server_stopped", port=self._bound_port)

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("server not started")
        return self._bound_port

    @property
    def url(self) -> str:
        """Where a client on this machine reaches the server (a wildcard host maps to loopback)."""
        return f"http://{_client_host(self._host)}:{self.port}"

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text=_INDEX, content_type=_TEXT)

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        try:
            scrape = await self._exposition.scrape(
                accept=request.headers.get("Accept", ""), accept_encoding=request.headers.get("Accept-Encoding", "")
            )
        except Exception:
            # A bug in rendering must show as a failed scrape (`up` stays 1 but the target errors),
            # with the traceback in the log, never as a crashed server.
            log.exception("metrics_render_failed")
            return web.Response(status=500, text="metrics rendering failed; see the daemon log\n", content_type=_TEXT)
        response = web.StreamResponse(headers={"Content-Type": scrape.content_type, "Vary": "Accept-Encoding"})
        if scrape.content_encoding is not None:
            response.headers["Content-Encoding"] = scrape.content_encoding
        response.content_length = scrape.size
        await response.prepare(request)
        # The parts as they are (about a megabyte per family at 10,000 runs), never joined into one copy.
        for part in scrape.parts:
            await response.write(part)
        await response.write_eof()
        return response

    async def _healthz(self, request: web.Request) -> web.Response:
        problem = self._health.liveness()
        if problem is None:
            return web.Response(text="ok\n", content_type=_TEXT)
        return web.Response(status=503, text=f"unhealthy: {problem}\n", content_type=_TEXT)

    async def _readyz(self, request: web.Request) -> web.Response:
        problems, warnings = self._health.readiness()
        notes = "".join(f"warning: {warning}\n" for warning in warnings)
        if not problems:
            return web.Response(text="ready\n" + notes, content_type=_TEXT)
        return web.Response(status=503, text=f"not ready: {'; '.join(problems)}\n" + notes, content_type=_TEXT)


def _port_of(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError(f"server bound no TCP address: {runner.addresses!r}")


def _client_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass  # a host name
    return host
