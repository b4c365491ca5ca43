"""The container image, checked without a Docker engine (none runs here): hadolint on the
Dockerfile, what it copies exists and is not ignored, the image's default config starts with only
PRIME_API_KEY, and its HEALTHCHECK (deploy/docker/healthcheck.py) asks the port the daemon really
listens on, against the real daemon."""

from __future__ import annotations

import fnmatch
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support.daemon import DaemonFactory, free_port
from tests.support.deploy_files import DEPLOY, REPO, clean_env, run_tool, start_as_shipped, validate_config
from tests.support.simulator import SimulatorHandle

DOCKERFILE = REPO / "Dockerfile"
HEALTHCHECK = DEPLOY / "docker" / "healthcheck.py"
IMAGE_CONFIG = DEPLOY / "docker" / "config.yml"


def test_hadolint_finds_nothing() -> None:
    result = run_tool("hadolint", DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_the_image_is_labelled_and_checks_its_health_with_the_script() -> None:
    instructions = _instructions()
    labels = " ".join(argument for name, argument in instructions if name == "LABEL")
    for key in ("title", "description", "version", "revision", "created", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels
    healthcheck = next(argument for name, argument in instructions if name == "HEALTHCHECK")
    assert "9477" not in healthcheck
    assert '["prime-cost-monitor-healthcheck"]' in healthcheck
    assert any(
        "deploy/docker/healthcheck.py /usr/local/bin/prime-cost-monitor-healthcheck" in a for _, a in instructions
    )


def test_everything_the_dockerfile_copies_exists_and_is_not_dockerignored() -> None:
    ignored = [
        line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and line[0] != "#"
    ]

    def excluded(path: str) -> bool:
        verdict = False
        for pattern in ignored:  # later lines win, `!` re-includes, as Docker reads them
            negate = pattern.startswith("!")
            pattern = pattern.lstrip("!")
            if fnmatch.fnmatch(path, pattern) or any(
                fnmatch.fnmatch(str(parent), pattern) for parent in Path(path).parents if str(parent) != "."
            ):
                verdict = not negate
        return verdict

    sources = []
    for name, argument in _instructions():
        if name == "COPY":
            words = [word for word in argument.split() if not word.startswith("--")]
            sources += words[:-1]
    assert "deploy/docker/config.yml" in sources
    for source in sources:
        assert (REPO / source).exists(), source
        assert not excluded(source), f"{source} is in .dockerignore"


def test_the_image_config_starts_with_only_the_api_key() -> None:
    result = validate_config(IMAGE_CONFIG, env={"PRIME_API_KEY": "k", "PRIME_MONITOR_STATE__PATH": "/data/x.db"})
    assert result.returncode == 0, result.stderr
    with_slack = validate_config(
        IMAGE_CONFIG,
        env={"PRIME_API_KEY": "k", "SLACK_BOT_TOKEN": "xoxb-k", "PRIME_MONITOR_NOTIFY__SLACK__CHANNEL": "#budgets"},
    )
    assert with_slack.returncode == 0, with_slack.stderr
    cmd = next(argument for name, argument in _instructions() if name == "CMD")
    assert '"/etc/prime-cost-monitor/config.yml"' in cmd


def test_the_image_starts_with_only_the_api_key_and_passes_its_healthcheck(
    simulator: SimulatorHandle, tmp_path: Path
) -> None:
    """The image's CMD config with nothing but PRIME_API_KEY (as `docker run -e PRIME_API_KEY=...`)."""
    start_as_shipped(
        IMAGE_CONFIG,
        env={"PRIME_API_KEY": simulator.api_key},
        simulator=simulator,
        workdir=tmp_path,
        probes=["/healthz", "/readyz"],
    )


def _healthcheck(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env(env or {}),
        check=False,
    )


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def test_the_healthcheck_follows_server_listen(simulator: SimulatorHandle, daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory(simulator, rules=[])
    daemon.start()
    assert daemon.proc is not None
    _wait_listening(daemon.metrics_port)
    # The config named by --config in the daemon's command line (PID 1's, in the image).
    found = _healthcheck("--pid", str(daemon.proc.pid))
    assert found.returncode == 0, found.stdout
    assert f"127.0.0.1:{daemon.metrics_port}/healthz: 200" in found.stdout
    # PRIME_MONITOR_SERVER__LISTEN beats the file, as it does for the daemon: nothing listens there.
    elsewhere = free_port()
    moved = _healthcheck("--pid", str(daemon.proc.pid), env={"PRIME_MONITOR_SERVER__LISTEN": f"0.0.0.0:{elsewhere}"})
    assert moved.returncode == 1
    assert f"127.0.0.1:{elsewhere}/healthz: unreachable" in moved.stdout
    assert daemon.stop() == 0
    stopped = _healthcheck("--config", str(daemon.config_path))
    assert stopped.returncode == 1


def test_the_healthcheck_reads_the_image_default_and_a_disabled_server(tmp_path: Path) -> None:
    text = _healthcheck("--config", str(IMAGE_CONFIG), "--pid", str(os.getpid()))
    assert "http://127.0.0.1:9477/healthz" in text.stdout  # 0.0.0.0 is probed on loopback
    disabled = tmp_path / "off.yml"
    disabled.write_text("server: {enabled: false}\n")
    result = _healthcheck("--config", str(disabled))
    assert result.returncode == 0
    assert re.search(r"server.enabled is false", result.stdout)
