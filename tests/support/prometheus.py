"""Fixture: a real Prometheus (the Debian package `prometheus`) scraping targets the test names.

    async def test_x(prometheus_factory):
        prom = await prometheus_factory(targets=["127.0.0.1:9477"])
        samples = await prom.wait_for_query('prime_run_cost_usd_total{run_id="r1"}')

Each call starts its own prometheus on a free 127.0.0.1 port with a temp config (scrape every
1 s) and a temp TSDB, never the system service; the fixture stops every one it started. The
process is asyncio-driven so the test's event loop keeps serving the scraped endpoints while
the test waits. Tests skip when the binary is missing.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

STARTUP_TIMEOUT_S = 30.0
QUERY_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.25
STOP_TIMEOUT_S = 10.0


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass
class PrometheusProcess:
    process: asyncio.subprocess.Process
    url: str
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def _get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=5.0) as client:
            return await client.get(path, params=params)

    async def query(self, promql: str) -> list[Sample]:
        """An instant query; raises with Prometheus's own error for bad PromQL."""
        response = await self._get("/api/v1/query", {"query": promql})
        body: dict[str, Any] = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"query {promql!r} failed: {json.dumps(body)[:500]}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [Sample(labels={}, value=float(data["result"][1]))]
        return [Sample(labels=dict(item["metric"]), value=float(item["value"][1])) for item in data["result"]]

    async def wait_for_query(self, promql: str, *, within_seconds: float = QUERY_TIMEOUT_S) -> list[Sample]:
        """Poll an instant query until it returns samples (a scrape or two after the target is up)."""
        deadline = time.monotonic() + within_seconds
        while True:
            samples = await self.query(promql)
            if samples:
                return samples
            if time.monotonic() > deadline:
                targets = (await self._get("/api/v1/targets")).text[:1500]
                raise AssertionError(f"no samples for {promql!r} after {within_seconds:g}s; targets: {targets}")
            await asyncio.sleep(POLL_INTERVAL_S)

    async def targets(self) -> list[dict[str, Any]]:
        response = await self._get("/api/v1/targets")
        active: list[dict[str, Any]] = response.json()["data"]["activeTargets"]
        return active

    async def stop(self) -> None:
        if self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


def _config(targets: list[str], *, scrape_interval: str, metrics_path: str, rule_files: Sequence[Path] = ()) -> str:
    # JSON is YAML: no quoting surprises with target strings.
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": "prime-cost-monitor",
                "scrape_interval": scrape_interval,
                "scrape_timeout": scrape_interval,
                "metrics_path": metrics_path,
                "static_configs": [{"targets": targets}],
            }
        ],
    }
    return json.dumps(config, indent=2)


def _write_config(workdir: Path, config: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "prometheus.yml"
    config_path.write_text(config)
    return config_path


async def start_prometheus(
    *,
    targets: list[str],
    workdir: Path,
    scrape_interval: str = "1s",
    metrics_path: str = "/metrics",
    rule_files: Sequence[Path] = (),
) -> PrometheusProcess:
    """Start prometheus and wait until it is ready; a lost port race is retried with a new port.
    `rule_files` are loaded and evaluated every scrape_interval (recording rules and alerts)."""
    binary = prometheus_binary()
    if binary is None:
        pytest.skip("prometheus binary not found: install the Debian package `prometheus`")
    config = _config(targets, scrape_interval=scrape_interval, metrics_path=metrics_path, rule_files=rule_files)
    config_path = _write_config(workdir, config)
    last_log = ""
    for attempt in range(3):
        port = _free_port()
        log_path = workdir / f"prometheus-{attempt}.log"
        with log_path.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / f'tsdb-{attempt}'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )
        prom = PrometheusProcess(process=process, url=f"http://127.0.0.1:{port}", log_path=log_path)
        if await _wait_ready(prom):
            return prom
        await prom.stop()
        last_log = prom.log_tail()
    raise AssertionError(f"prometheus did not become ready; last log:\n{last_log}")


async def _wait_ready(prom: PrometheusProcess) -> bool:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if prom.process.returncode is not None:
            return False  # exited: most likely the port was taken between probe and bind
        try:
            if (await prom._get("/-/ready")).status_code == 200:
                return True
        except httpx.TransportError:
            pass  # not listening yet
        await asyncio.sleep(POLL_INTERVAL_S)
    return False


PrometheusFactory = Callable[..., Awaitable[PrometheusProcess]]


@pytest.fixture
async def prometheus_factory(tmp_path: Path) -> AsyncIterator[PrometheusFactory]:
    """`await prometheus_factory(targets=["127.0.0.1:PORT"], scrape_interval="1s")` -> PrometheusProcess."""
    started: list[PrometheusProcess] = []

    async def factory(
        *, targets: list[str], scrape_interval: str = "1s", metrics_path: str = "/metrics"
    ) -> PrometheusProcess:
        prom = await start_prometheus(
            targets=targets,
            workdir=tmp_path / f"prometheus-{len(started)}",
            scrape_interval=scrape_interval,
            metrics_path=metrics_path,
        )
        started.append(prom)
        return prom

    yield factory
    for prom in started:
        await prom.stop()
