"""Fixtures: the real daemon (`python -m monitor run`) as a subprocess, for end-to-end tests.

    def test_x(simulator, fake_slack, daemon_factory):
        daemon = daemon_factory(simulator, rules=[...], slack=fake_slack, poll={"interval": 1})
        daemon.start()
        daemon.wait_for_log("alert_published", lambda e: e["rule"] == "run-cap")
        assert daemon.stop() == 0          # SIGTERM, bounded wait

`daemon_factory(sim, *, rules, slack=None, **sections)` writes a config file in tmp_path (state
file there too, metrics on a free loopback port) and returns a `DaemonProcess`. The same
factory call with `state_path=` reuses a state file, which is how a restart is tested:
`daemon.start()` again after `stop()` or `kill()` starts a new process on the same config.
Logs are JSON lines on stderr, kept in a file; `logs()` parses them, `wait_for_log()` polls them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.simulator import SimulatorHandle

LogEvent = dict[str, Any]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class DaemonProcess:
    def __init__(self, *, config_path: Path, workdir: Path, env: dict[str, str], metrics_port: int) -> None:
        self.config_path = config_path
        self.workdir = workdir
        self.env = env
        self.metrics_port = metrics_port
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_path = workdir / "daemon.log"

    def start(self, *, once: bool = False) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        args = [sys.executable, "-m", "monitor", "run", "--config", str(self.config_path)]
        if once:
            args.append("--once")
        with self.log_path.open("ab") as log:
            log.write(f'{{"event": "__test_start__", "start": {self.starts}}}\n'.encode())
        self.proc = subprocess.Popen(
            args,
            cwd=self.workdir,
            env=self.env,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def run_once(self, timeout: float = 60) -> int:
        self.start(once=True)
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def logs(self) -> list[LogEvent]:
        events: list[LogEvent] = []
        if not self.log_path.exists():
            return events
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                events.append({"event": "__raw__", "line": line})
                continue
            if isinstance(event, dict):
                events.append(event)
        return events

    def events(self, name: str, where: Callable[[LogEvent], bool] | None = None) -> list[LogEvent]:
        return [e for e in self.logs() if e.get("event") == name and (where is None or where(e))]

    def wait_for_log(
        self, name: str, where: Callable[[LogEvent], bool] | None = None, *, timeout: float = 30.0, count: int = 1
    ) -> list[LogEvent]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(name, where)
            if len(found) >= count:
                return found
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {count}x {name!r} within {timeout}s; log tail:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)


DaemonFactory = Callable[..., DaemonProcess]


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[DaemonFactory]:
    made: list[DaemonProcess] = []

    def factory(
        sim: SimulatorHandle,
        *,
        rules: list[dict[str, Any]],
        slack: Any = None,
        state_path: Path | None = None,
        name: str = "daemon",
        **sections: Any,
    ) -> DaemonProcess:
        workdir = tmp_path / name
        workdir.mkdir(exist_ok=True)
        port = free_port()
        config: dict[str, Any] = {
            "api": {"base_url": sim.base_url, "timeout": "3s", "max_retries": 2},
            "poll": {"interval": 1, "min_interval": 1, "wallet_interval": 1, "burn_window": 30},
            "rules": rules,
            "server": {"listen": f"127.0.0.1:{port}"},
            "state": {"path": str(state_path or workdir / "state.db")},
            "notify": {"retry_base": 0.5, "retry_max": 2},
            "log": {"format": "json", "level": "info"},
        }
        if slack is not None:
            config["notify"]["slack"] = {"token": slack.token, "channel": "#budgets", "base_url": slack.base_url}
        for section, values in sections.items():
            config[section] = {**config.get(section, {}), **values}
        # Every run read at least every `interval` unless a test says otherwise: most tests here are
        # about what the monitor does with readings, not how it spaces them.
        config["poll"].setdefault("max_interval", config["poll"]["interval"])
        config_path = workdir / "config.yml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PRIME_", "SLACK_"))}
        env["PRIME_API_KEY"] = sim.api_key
        env["PYTHONUNBUFFERED"] = "1"
        process = DaemonProcess(config_path=config_path, workdir=workdir, env=env, metrics_port=port)
        made.append(process)
        return process

    yield factory
    for process in made:
        if process.proc is not None and process.proc.poll() is None:
            process.kill()
