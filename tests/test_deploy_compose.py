"""The compose stack (deploy/compose), checked without a Docker engine (none runs here).

The compose file parses under the Compose Specification (the `compose_spec` Rust crate through
PyPI's compose-spec, strict: unknown keys and bad values are errors), every file a service mounts
exists, and each config passes its own tool: promtool for Prometheus, amtool for Alertmanager,
`prime-cost-monitor validate` for the monitor, the simulator's loader for the demo scenario.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_spec import PyOptions

from monitor.sim.scenario import load_scenario
from tests.support.deploy_files import COMPOSE, DASHBOARD, RULES, run_tool, start_as_shipped, validate_config
from tests.support.simulator import SimulatorHandle

COMPOSE_FILE = COMPOSE / "compose.yml"


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return loaded


def _parse_compose_spec(text: str) -> Any:
    options = PyOptions()
    options.apply_merge = True  # YAML merge keys (`<<: *monitor`), as Docker Compose applies them
    return options.from_yaml(text)


def test_the_compose_file_follows_the_compose_specification() -> None:
    project = _parse_compose_spec(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert set(project.service_names()) == {
        "monitor",
        "simulator",
        "monitor-demo",
        "prometheus",
        "alertmanager",
        "grafana",
    }


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("restart: unless-stopped", "restart: sometimes", "unknown variant `sometimes`"),
        ('    profiles: ["live"]', '    profilez: ["live"]', "profilez"),
    ],
)
def test_the_compose_check_catches_a_broken_file(old: str, new: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        _parse_compose_spec(COMPOSE_FILE.read_text(encoding="utf-8").replace(old, new, 1))


def test_the_demo_profile_needs_no_account_and_the_live_one_reads_secrets_from_files() -> None:
    services = _compose()["services"]
    always = {name for name, service in services.items() if "profiles" not in service}
    assert always == {"prometheus", "alertmanager", "grafana"}
    assert {name for name, s in services.items() if s.get("profiles") == ["demo"]} == {"simulator", "monitor-demo"}
    assert services["monitor"]["profiles"] == ["live"]
    # Both monitors answer as `monitor` (the Prometheus target).
    assert "monitor" in services["monitor-demo"]["networks"]["default"]["aliases"]
    # The live monitor reads its key from a mounted file; no secret is written in the file.
    assert "./secrets:/run/secrets:ro" in services["monitor"]["volumes"]
    # Only the name of the file is in the compose file, never a secret: the monitor reads the file.
    assert services["monitor"]["environment"] == {"PRIME_API_KEY_FILE": "/run/secrets/prime_api_key"}
    assert services["monitor-demo"]["environment"] == {"PRIME_API_KEY": "sim-key"}  # the simulator's public key
    assert (COMPOSE / "secrets" / ".gitignore").read_text().splitlines()[0] == "*"


def test_every_mounted_file_exists() -> None:
    services = _compose()["services"]
    mounts = [volume for service in services.values() for volume in service.get("volumes", [])]
    bind_sources = [mount.split(":")[0] for mount in mounts if mount.startswith(".")]
    assert len(bind_sources) >= 9
    for source in bind_sources:
        assert (COMPOSE / source).exists(), source
    # Prometheus finds the rules where its config says, inside the container as in the repository.
    container_rules = Path("/etc/prometheus") / "../prometheus/prime-cost-monitor.rules.yml"
    rules_mount = next(m for m in services["prometheus"]["volumes"] if m.startswith("../prometheus/"))
    assert rules_mount.split(":")[1] == str(Path(*container_rules.parts).resolve())
    assert (COMPOSE / rules_mount.split(":")[0]).resolve() == RULES
    grafana_mount = next(m for m in services["grafana"]["volumes"] if m.startswith("../grafana/"))
    assert (COMPOSE / grafana_mount.split(":")[0]).resolve() == DASHBOARD


def test_promtool_accepts_the_prometheus_config_and_its_rules() -> None:
    result = run_tool("promtool", "check", "config", COMPOSE / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout
    config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["prime-cost-monitor"]["static_configs"][0]["targets"] == ["monitor:9477"]


def test_amtool_accepts_the_alertmanager_config_with_slack_from_a_file() -> None:
    result = run_tool("amtool", "check-config", COMPOSE / "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((COMPOSE / "alertmanager.yml").read_text())
    slack = config["receivers"][0]["slack_configs"][0]
    assert slack["api_url_file"] == "/run/secrets/slack_webhook_url"
    assert "api_url" not in slack


def test_the_monitor_configs_pass_validate(tmp_path: Path) -> None:
    live = validate_config(COMPOSE / "monitor.yml", env={"PRIME_API_KEY": "from-file", "SLACK_BOT_TOKEN": "xoxb-x"})
    assert live.returncode == 0, live.stderr
    demo = validate_config(COMPOSE / "demo" / "monitor.yml", env={"PRIME_API_KEY": "sim-key"})
    assert demo.returncode == 0, demo.stderr


def test_the_demo_scenario_loads_and_accepts_the_demo_key() -> None:
    scenario = load_scenario(COMPOSE / "demo" / "scenario.yml")
    assert "sim-key" in [key.get_secret_value() for key in scenario.api_keys]
    assert len(scenario.runs) == 4


def test_grafana_is_provisioned_with_the_datasource_and_the_dashboard() -> None:
    provisioning = COMPOSE / "grafana" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards" / "prime-cost-monitor.yml").read_text())["providers"][0]
    grafana_mount = next(m for m in _compose()["services"]["grafana"]["volumes"] if m.startswith("../grafana/"))
    assert Path(grafana_mount.split(":")[1]).parent == Path(provider["options"]["path"])


def test_the_live_monitor_starts_with_its_key_from_the_secret_file(simulator: SimulatorHandle, tmp_path: Path) -> None:
    """The `live` profile's monitor as shipped: ./monitor.yml, the key read from the file its
    PRIME_API_KEY_FILE names (./secrets mounted at /run/secrets), the image's HEALTHCHECK path."""
    service = _compose()["services"]["monitor"]
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    env: dict[str, str] = {}
    for name, value in service["environment"].items():
        if name.endswith("_FILE"):
            secret_file = secrets / Path(value).relative_to("/run/secrets")
            secret_file.write_text(simulator.api_key + "\n")  # as `echo KEY > secrets/prime_api_key` leaves it
            secret_file.chmod(0o600)
            value = str(secret_file)
        env[name] = value
    assert "PRIME_API_KEY" not in env and "PRIME_API_KEY_FILE" in env
    start_as_shipped(
        COMPOSE / "monitor.yml", env=env, simulator=simulator, workdir=tmp_path, probes=["/healthz", "/readyz"]
    )
