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
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus" / "prime-cost-monitor.rules.yml"
RULES_TESTS = DEPLOY / "prometheus" / "prime-cost-monitor.rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "prime-cost-monitor.json"
COMPOSE = DEPLOY / "compose"
KUBERNETES = DEPLOY / "kubernetes"
TOOL_TIMEOUT_S = 60


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
