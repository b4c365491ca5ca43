"""Helpers for the tests of deploy/: where the files are, the real tools that check them, and
`prime-cost-monitor validate` run as a user (or a container) would run it.

    result = run_tool("promtool", "check", "rules", RULES)   # skips the test when promtool is missing
    result = validate_config(path, env={"PRIME_API_KEY": "k"})  # `python -m monitor validate` in a clean env
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.daemon import DaemonProcess, free_port
from tests.support.simulator import SimulatorHandle

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus" / "prime-cost-monitor.rules.yml"
RULES_TESTS = DEPLOY / "prometheus" / "prime-cost-monitor.rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "prime-cost-monitor.json"
COMPOSE = DEPLOY / "compose"
KUBERNETES = DEPLOY / "kubernetes"
TOOL_TIMEOUT_S = 60
START_TIMEOUT_S = 45


def tool(name: str) -> str:
    """The path of a CLI tool: the venv's own first (hadolint, kubectl from their wheels), then PATH."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not found (.ci/run installs it)")
    return found


def run_tool(name: str, *args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool(name), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        cwd=cwd,
        check=False,
    )


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The test process's environment without any PRIME_* or Slack variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRIME_", "SLACK_"))}
    env.update(extra)
    return env


def validate_config(path: Path, *, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`prime-cost-monitor validate PATH` with exactly `env` on top of a clean environment."""
    return subprocess.run(
        [sys.executable, "-m", "monitor", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        env=clean_env(env),
        check=False,
    )


def _probe(port: int, path: str) -> int | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code
    except httpx.HTTPError:
        return None


def start_as_shipped(
    config: Path, *, env: dict[str, str], simulator: SimulatorHandle, workdir: Path, probes: list[str]
) -> None:
    """Run `prime-cost-monitor run` on a shipped config and environment until every probe path answers
    200, then SIGTERM it: it must not exit early, must stop with 0 and log no error and no non-JSON
    line. Only what this sandbox forces is changed: the API is the simulator (no network), the server
    listens on loopback, and the state file is in `workdir`, not on a volume."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PRIME_", "SLACK_"))}
    full_env.update(env)
    full_env.update(
        PRIME_API_BASE_URL=simulator.base_url,
        PRIME_MONITOR_SERVER__LISTEN=f"127.0.0.1:{port}",
        PRIME_MONITOR_STATE__PATH=str(workdir / "state.db"),
        PYTHONUNBUFFERED="1",
    )
    daemon = DaemonProcess(config_path=config, workdir=workdir, env=full_env, metrics_port=port)
    daemon.start()
    assert daemon.proc is not None
    answers: dict[str, int | None] = {}
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and daemon.proc.poll() is None:
            answers = {path: _probe(port, path) for path in probes}
            if all(code == 200 for code in answers.values()):
                break
            time.sleep(0.5)
        assert daemon.proc.poll() is None, f"the daemon exited ({daemon.proc.returncode}):\n{daemon.tail()}"
        assert answers == dict.fromkeys(probes, 200), daemon.tail()
        assert daemon.events("daemon_started"), daemon.tail()
    finally:
        code = daemon.stop()
    assert code == 0, daemon.tail()
    assert not [e for e in daemon.logs() if e.get("level") in ("error", "critical")], daemon.tail()
    assert not daemon.events("__raw__"), daemon.tail()
