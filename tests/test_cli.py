"""The CLI as a user runs it: `check` exit codes against the simulator, the state commands, and no
traceback for anything a user can type."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.cli.main import main
from tests.support.simulator import SimulatorHandle


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def config_file(tmp_path: Path, base_url: str, threshold: float, **extra: Any) -> Path:
    config = {
        "api": {"base_url": base_url, "max_retries": 1, "timeout": "2s"},
        "rules": [
            {"name": "run-cap", "metric": "total_cost_usd", "threshold": threshold, "warn_at": [0.5]},
            {"name": "wallet-floor", "scope": "wallet", "metric": "balance_usd", "below": 10},
        ],
        "state": {"path": str(tmp_path / "unused.db")},
        **extra,
    }
    path = tmp_path / f"check-{threshold}.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_check_exit_codes(simulator: SimulatorHandle, tmp_path: Path) -> None:
    env = simulator.env()
    within = cli("check", "--config", str(config_file(tmp_path, simulator.base_url, 10_000)), env=env)
    assert within.returncode == 0, within.stdout + within.stderr
    assert "run-qwen4b" in within.stdout and "all within budget" in within.stdout

    breached = cli("check", "--json", "--config", str(config_file(tmp_path, simulator.base_url, 0.01)), env=env)
    assert breached.returncode == 1, breached.stderr
    document = json.loads(breached.stdout)
    ledger = simulator.run_ledger("run-qwen4b")
    run = next(r for r in document["runs"] if r["run_id"] == "run-qwen4b")
    assert run["total_cost_usd"] == ledger["billed"]["total_cost_usd"]
    assert any(e["breached"] and e["subject"] == "run-qwen4b" for e in document["evaluations"])
    # check keeps no state and writes nothing.
    assert not (tmp_path / "unused.db").exists()

    bad = tmp_path / "bad.yml"
    bad.write_text("rules: [{name: run-cap, threshold: nope}]")
    assert cli("check", "--config", str(bad), env=env).returncode == 2

    refused = cli(
        "check",
        "--config",
        str(config_file(tmp_path, simulator.base_url, 1)),
        env=env | {"PRIME_API_KEY": "not-the-key-0123456789"},
    )
    assert refused.returncode == 3
    assert "not-the-key-0123456789" not in refused.stdout + refused.stderr

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    # PRIME_API_BASE_URL would win over the file (env beats file), so point it at the closed port.
    unreachable = cli(
        "check", "--config", str(config_file(tmp_path, closed, 1)), env=env | {"PRIME_API_BASE_URL": closed}
    )
    assert unreachable.returncode == 3
    assert "reachable" in unreachable.stdout


def test_protect_unprotect_and_status(tmp_path: Path) -> None:
    state = str(tmp_path / "state.db")
    from monitor.store.state_store import StateStore

    StateStore(state).close()  # as a daemon would have created it
    assert cli("protect", "run-a", "--for", "6h", "--reason", "baseline", "--state", state).returncode == 0
    assert cli("protect", "run-b", "--state", state).returncode == 0
    status = cli("status", "--json", "--state", state)
    assert status.returncode == 0, status.stderr
    protections = {p["run_id"]: p for p in json.loads(status.stdout)["protections"]}
    assert set(protections) == {"run-a", "run-b"}
    assert protections["run-a"]["reason"] == "baseline" and protections["run-a"]["until"] is not None
    assert protections["run-b"]["until"] is None
    removed = cli("unprotect", "run-a", "--state", state)
    assert removed.returncode == 0 and "removed" in removed.stdout
    after = json.loads(cli("status", "--json", "--state", state).stdout)
    assert [p["run_id"] for p in after["protections"]] == ["run-b"]
    table = cli("status", "--state", state)
    assert table.returncode == 0 and "run-b" in table.stdout
    assert cli("protect", "run-c", "--for", "soon", "--state", state).returncode == 2


def test_status_on_a_missing_state_file_says_so(tmp_path: Path) -> None:
    result = cli("status", "--state", str(tmp_path / "none.db"))
    assert result.returncode == 2
    assert "none.db" in result.stderr


def test_version_and_help() -> None:
    assert "prime-cost-monitor" in cli("--version").stdout
    help_text = cli("--help").stdout
    for command in ("run", "check", "validate", "status", "protect", "simulate", "demo"):
        assert command in help_text


def test_check_table_shows_hostile_run_names_literally(simulator: SimulatorHandle, tmp_path: Path) -> None:
    simulator.add_run(
        id="run-hostile",
        name='[red]evil[/red] "q" \\ ✨',
        base_model="Qwen/Qwen3.5-4B",
        rates={"training": 10, "inference_input": 10, "inference_output": 10},
        queue_seconds=0,
        started_ago=120,
    )
    config = config_file(tmp_path, simulator.base_url, 10_000, watch={"runs": ["run-hostile"], "discover": False})
    result = cli("check", "--config", str(config), env=simulator.env())
    assert result.returncode == 0, result.stderr
    assert '[red]evil[/red] "q" \\ ✨' in result.stdout


def state_store_knowing(tmp_path: Path, *run_ids: str) -> str:
    from monitor.store.state_store import StateStore

    state = str(tmp_path / "state.db")
    with StateStore(state) as store:
        for run_id in run_ids:
            store.remember_run(run_id, source="discovered", seen_at=1.0)
    return state


@pytest.mark.parametrize(
    ("run_id", "duration", "expected"),
    [
        ("", None, "empty"),
        ("..", None, "dot segment"),
        ("a/b", None, "'/'"),
        ("run-\u200b", None, "U+200B"),
        ("exp-*", None, "enforce.protect"),
        ("run-[ab]", None, "runtime protections are exact run ids"),
        ("run-a", "nan", "--for"),
        ("run-a", "inf", "--for"),
        ("run-a", "1e400", "--for"),
        ("run-a", "-1h", "--for"),
        ("run-a", "0", "--for: must be longer than 0"),
        ("run-a", "soon", "--for"),
    ],
)
def test_protect_refuses_what_it_cannot_honour(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], run_id: str, duration: str | None, expected: str
) -> None:
    state = state_store_knowing(tmp_path, "run-a")
    args = ["protect", run_id, "--state", state, *([f"--for={duration}"] if duration is not None else [])]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert main(["status", "--json", "--state", state]) == 0
    assert json.loads(capsys.readouterr().out)["protections"] == []


def test_protect_warns_on_a_run_the_store_never_saw_and_protects_it_anyway(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = state_store_knowing(tmp_path, "run-known")
    assert main(["protect", "run-knwon", "--state", state]) == 0
    err = capsys.readouterr().err
    assert "never seen run 'run-knwon'" in err
    assert main(["protect", "run-known", "--for", "2h", "--state", state]) == 0
    assert "never seen" not in capsys.readouterr().err
    assert main(["status", "--json", "--state", state]) == 0
    assert {p["run_id"] for p in json.loads(capsys.readouterr().out)["protections"]} == {"run-knwon", "run-known"}


def test_an_internal_error_is_one_line_without_a_traceback_and_secrets_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import monitor.cli.main
    from monitor.logs import register_secrets

    register_secrets(["hook-secret-0123456789"])

    def broken(_args: object) -> int:
        raise RuntimeError("posting to https://hooks.slack.com/services/T0/B0/hook-secret-0123456789 broke")

    monkeypatch.setattr(monitor.cli.main, "_dispatch", broken)
    assert main(["validate", "whatever.yml"]) == monitor.cli.main.EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "internal error: RuntimeError" in err and "--debug" in err
    assert "Traceback" not in err and "hook-secret" not in err
    assert main(["--debug", "validate", "whatever.yml"]) == monitor.cli.main.EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "Traceback" in err and "hook-secret" not in err


def test_demo_with_a_bad_duration_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--duration", "nan", "--no-live"]) == 2
    assert "--duration" in capsys.readouterr().err
