"""Scenario files, the price table, the token-rate formula and simulated time."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.clock import ManualClock
from monitor.sim.pricing import lookup_price, normalise_model_name
from monitor.sim.rates import ConfigProblem, derive_run
from monitor.sim.scenario import ScenarioError, load_scenario
from monitor.sim.server import SimulatorServer
from monitor.sim.simclock import ScaledClock

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "config").glob("scenario-*.yml"))


def test_the_embedded_default_scenario_loads() -> None:
    scenario = load_scenario(None)
    assert scenario.api_key_values() == ["sim-key"]
    assert scenario.admin_token.get_secret_value() == "sim-admin"
    assert 2 <= len(scenario.runs) <= 3
    server = SimulatorServer(None)
    assert set(server.engine.runs) == {run.id for run in scenario.runs}


def test_there_are_basic_and_fault_examples() -> None:
    names = {path.name for path in EXAMPLES}
    assert {"scenario-basic.yml", "scenario-faults.yml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_scenarios_load(path: Path) -> None:
    server = SimulatorServer(path)
    assert server.engine.runs
    if path.name == "scenario-faults.yml":
        assert {fault["kind"] for fault in server.faults.describe()} >= {"latency", "error", "hang", "drift"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("meter_interval: -5\n", "meter_interval"),
        ("runs:\n  - {id: a, colour: red}\n", "runs[0].colour"),
        ("runs:\n  - {id: a, base_model: no-such-model}\n", "runs[0].base_model"),
        ("runs:\n  - {id: a, config: {max_steps: zero}}\n", "runs[0].config.max_steps"),
        ("runs:\n  - {id: a, team_id: team-x}\n", "runs[0].team_id"),
        ("runs:\n  - {id: a}\n  - {id: a}\n", "same id"),
        ("faults:\n  - {kind: error, status: 418}\n", "faults[0]"),
        ("faults:\n  - {kind: hang, hang_seconds: 2d}\n", "faults[0]"),
        ("api_keys: []\n", "api_keys"),
        ("runs: [\n", "line"),
        ("- just a list\n", "top level"),
    ],
)
def test_a_bad_scenario_names_the_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "broken.yml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert str(path) in message
    assert expected in message


def test_a_missing_scenario_file_is_a_scenario_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "nope.yml")


def test_secrets_stay_out_of_the_scenario_repr() -> None:
    scenario = load_scenario({"api_keys": ["key-123-secret"], "admin_token": "admin-456-secret"})
    assert "key-123-secret" not in repr(scenario)
    assert "admin-456-secret" not in repr(scenario)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Qwen/Qwen3.5-4B", "Qwen/Qwen3.5-4B"),
        ("qwen3.5-4b", "Qwen/Qwen3.5-4B"),
        ("Qwen3.5-35B-A3B-Instruct", "Qwen/Qwen3.5-35B-A3B"),
        ("meta-llama/Llama-3.2-3B-Instruct", "meta-llama/Llama-3.2-3B"),
        ("nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", "nvidia/Nemotron-30B-A3B"),
        ("openai/gpt-oss-20b", "openai/gpt-oss-20b"),
        ("GPT-OSS-120B", "openai/gpt-oss-120b"),
    ],
)
def test_model_names_match_flexibly(name: str, expected: str) -> None:
    price = lookup_price(name)
    assert price is not None
    assert price.model == expected


def test_published_and_assumed_prices() -> None:
    big = lookup_price("Qwen/Qwen3.5-397B-A17B")
    assert big is not None
    assert (big.inference_input_per_mtok, big.inference_output_per_mtok, big.training_per_mtok) == (1.0, 3.0, 4.0)
    assert not big.assumed
    oss = lookup_price("openai/gpt-oss-120b")
    assert oss is not None and oss.assumed
    assert lookup_price("Qwen/Qwen3.5-5B") is None
    assert normalise_model_name("Org/Some_Model-Instruct") == "some-model"


def test_prime_rl_sub_tables_and_top_level_keys_give_the_same_rates() -> None:
    nested = {
        "max_steps": 10,
        "model": {"name": "Qwen/Qwen3.5-2B"},
        "trainer": {"model": {"seq_len": 1024}},
        "orchestrator": {"batch_size": 16, "sampling": {"max_tokens": 256}},
    }
    flat = {
        "max_steps": 10,
        "model": "Qwen/Qwen3.5-2B",
        "seq_len": 1024,
        "batch_size": 16,
        "max_completion_tokens": 256,
    }
    a, b = (
        derive_run(config, step_seconds=20.0, default_batch_size=1, default_seq_len=1, default_max_completion_tokens=1)
        for config in (nested, flat)
    )
    assert a.rates == b.rates
    assert a.model_name == b.model_name == "Qwen/Qwen3.5-2B"
    assert a.rates.training == 16 * 1024 / 20
    assert a.rates.inference_output == 16 * 256 / 20
    assert a.rates.inference_input == 16 * (1024 - 256) / 20


def test_missing_keys_take_the_defaults() -> None:
    derived = derive_run(
        {}, step_seconds=10.0, default_batch_size=8, default_seq_len=512, default_max_completion_tokens=128
    )
    assert (derived.model_name, derived.max_steps) == (None, None)
    assert derived.rates.training == 8 * 512 / 10


def test_a_wrong_type_names_the_key() -> None:
    with pytest.raises(ConfigProblem) as caught:
        derive_run(
            {"orchestrator": {"batch_size": "big"}},
            step_seconds=10.0,
            default_batch_size=8,
            default_seq_len=512,
            default_max_completion_tokens=128,
        )
    assert caught.value.param == "config.orchestrator.batch_size"


def test_speed_scales_simulated_time() -> None:
    inner = ManualClock(start=1_000.0)
    scaled = ScaledClock(inner, speed=60)
    inner.advance(2)
    assert scaled.now() == 1_000.0 + 120
    server = SimulatorServer({"speed": 60})
    assert isinstance(server.engine.clock, ScaledClock)
    assert server.engine.clock.speed == 60
    overridden = SimulatorServer(None, speed=10)
    assert isinstance(overridden.engine.clock, ScaledClock)
    assert overridden.engine.clock.speed == 10
