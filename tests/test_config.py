"""Config: every shipped example validates; bad input names the file, the rule and the field."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from monitor.config.load import load_settings
from monitor.config.settings import ConfigError, Settings
from monitor.sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILES = [*sorted((ROOT / "config").glob("*.yml")), ROOT / "deploy/kubernetes/base/config.yml"]


def readme_yaml_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```yaml\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_every_shipped_config_validates(path: Path) -> None:
    if path.name.startswith("scenario-"):
        assert load_scenario(path).runs
    else:
        settings = load_settings(path)
        assert settings.rules, f"{path} documents no rule"
        # Everything shipped is dry-run.
        assert settings.enforce.dry_run is True


def test_readme_yaml_blocks_validate(tmp_path: Path) -> None:
    blocks = readme_yaml_blocks()
    assert len(blocks) >= 2
    for index, block in enumerate(blocks):
        path = tmp_path / f"readme-{index}.yml"
        path.write_text(block, encoding="utf-8")
        assert yaml.safe_load(block), block
        load_settings(path)


# Keys example.yml shows with a value other than the default, to show the syntax.
EXAMPLE_NOT_DEFAULT = {"enforce.protect": ["prod-*"]}
# Keys example.yml leaves out on purpose: secrets belong in the environment.
EXAMPLE_LEFT_OUT = {"api.api_key"}


def test_example_documents_every_key_with_its_default() -> None:
    raw = yaml.safe_load((ROOT / "config/example.yml").read_text())
    example, defaults = load_settings(ROOT / "config/example.yml"), Settings()
    assert set(raw) == set(Settings.model_fields)
    for section in Settings.model_fields:
        if section != "rules":
            assert_documents_defaults(raw[section], getattr(example, section), getattr(defaults, section), section)


def assert_documents_defaults(raw: object, shown: BaseModel, default: BaseModel, where: str) -> None:
    assert isinstance(raw, dict), where
    documented = {f"{where}.{key}" for key in raw}
    every = {f"{where}.{key}" for key in type(default).model_fields}
    assert documented == every - EXAMPLE_LEFT_OUT, f"{where}: undocumented {every - documented - EXAMPLE_LEFT_OUT}"
    for key in raw:
        path, value = f"{where}.{key}", getattr(shown, key)
        if isinstance(value, BaseModel):
            assert_documents_defaults(raw[key], value, getattr(default, key), path)
        else:
            assert value == EXAMPLE_NOT_DEFAULT.get(path, getattr(default, key)), path


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules: [{name: cap, thresold: 5}]", "rules[0] (cap).thresold"),
        ("rules: [{name: cap, threshold: -1}]", "rules[0] (cap).threshold"),
        ("rules: [{name: cap, threshold: 5, warn_at: [1.5]}]", "rules[0] (cap).warn_at"),
        ("rules: [{name: floor, scope: wallet, metric: balance_usd, threshold: 5}]", "give `below`"),
        (
            "rules: [{name: floor, scope: wallet, metric: balance_usd, below: 5, action: delete}]",
            "rules[0] (floor).action",
        ),
        ("rules: [{name: r, metric: burn_rate_usd_per_hour, threshold: 5, action: delete}]", "rules[0] (r)"),
        ("rules: [{name: a, threshold: 1}, {name: a, threshold: 2}]", "two rules are named 'a'"),
        ("poll: {interval: soon}", "poll.interval"),
        ("server: {listen: nowhere}", "server.listen"),
        ("api: {base_url: ftp://x}", "api.base_url"),
        ("bogus: {}", "bogus"),
        ("rules: [{name: x, threshold: 1, scope: planet}]", "rules[0]"),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert str(path) in message
    assert expected in message, message


def test_yaml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "api:\n  base_url: [unclosed\n")
    with pytest.raises(ConfigError, match=r"line \d+"):
        load_settings(path)


def test_validate_exits_2_and_names_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, "rules: [{name: run-cap, thresold: 50}]")
    result = subprocess.run(
        [sys.executable, "-m", "monitor", "validate", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "rules[0] (run-cap).thresold" in result.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "monitor", "validate", str(ROOT / "config/example.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "monitor", "validate", str(tmp_path / "nope.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "nope.yml" in missing.stderr


def test_env_overrides_file_and_prime_cli_names_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "poll: {interval: 30s}\napi: {base_url: 'http://file:1'}")
    monkeypatch.setenv("PRIME_MONITOR_POLL__INTERVAL", "15s")
    monkeypatch.setenv("PRIME_API_BASE_URL", "http://from-env:2/api/v1/")
    monkeypatch.setenv("PRIME_API_KEY", "key-from-env-0123456789")
    monkeypatch.setenv("PRIME_TEAM_ID", "team-x")
    settings = load_settings(path)
    assert settings.poll.interval == 15.0
    assert settings.api.base_url == "http://from-env:2"
    assert settings.api.team_id == "team-x"
    assert settings.api.api_key is not None
    assert settings.api.api_key.get_secret_value() == "key-from-env-0123456789"
    # The key never shows in a repr, a dump or the config hash input.
    assert "key-from-env" not in repr(settings)
    assert "key-from-env" not in settings.model_dump_json()


def test_durations_read_units() -> None:
    settings = load_settings(None, overrides={"poll": {"interval": "1m30s", "min_interval": "500ms"}})
    assert settings.poll.interval == 90.0
    assert settings.poll.min_interval == 0.5


def test_config_hash_changes_with_rules_but_not_with_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    base = load_settings(None, overrides={"rules": [{"name": "a", "threshold": 1}]})
    other = load_settings(None, overrides={"rules": [{"name": "a", "threshold": 2}]})
    monkeypatch.setenv("PRIME_API_KEY", "another-key-0123456789")
    same = load_settings(None, overrides={"rules": [{"name": "a", "threshold": 1}]})
    assert base.config_hash() != other.config_hash()
    assert base.config_hash() == same.config_hash()


def test_the_metric_catalog_and_the_config_schema_agree_and_mark_the_price_split_derived() -> None:
    from typing import get_args

    from monitor.rules.catalog import CATALOG, RUN_METRICS, RUN_TOTALS, WALLET_METRICS, is_measured
    from monitor.rules.config import RunMetric, WalletMetric
    from monitor.snapshots import RunSnapshot

    assert list(RUN_METRICS) == list(get_args(RunMetric))
    assert list(WALLET_METRICS) == list(get_args(WalletMetric))
    # What the usage endpoint reports as figures of its own: the only metrics a delete may act on.
    assert {name for name, spec in CATALOG.items() if spec.may_delete} == {
        "total_cost_usd",
        "training_cost_usd",
        "inference_cost_usd",
        "total_tokens",
        "training_tokens",
        "inference_input_tokens",
        "inference_output_tokens",
    }
    assert not is_measured("inference_input_cost_usd") and not is_measured("projected_cost_usd")
    assert "estimate" in CATALOG["inference_input_cost_usd"].noun
    snapshot = RunSnapshot(run_id="r", taken_at=0.0)
    for name in RUN_TOTALS:  # every total in the catalog is one a reading can give
        read = CATALOG[name].read
        assert read is not None and read(snapshot) == 0.0
    assert all(CATALOG[name].read is None for name in RUN_METRICS if name not in RUN_TOTALS)
    for derived in ("inference_input_cost_usd", "inference_output_cost_usd"):
        alert = load_settings(None, overrides={"rules": [{"name": "a", "metric": derived, "threshold": 5}]}, environ={})
        assert alert.run_rules[0].metric == derived  # alerting on an estimate is fine
