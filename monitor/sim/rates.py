"""Token rates of a run, derived from the prime-rl style config posted to create it.

Per training step, with B = batch size (rollouts per step), S = sequence length and
C = max completion tokens (C <= S):

    training tokens          = B * S
    inference output tokens  = B * C
    inference input tokens   = B * (S - C)

A step takes `step_seconds` of simulated time, so each meter burns its per-step tokens
divided by `step_seconds` per second, until `max_steps` steps are done (no `max_steps`:
until the run is deleted).

Keys are read where prime-rl puts them or at the top level; the first one present wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Where each setting may live in the config, first match wins.
MODEL_NAME_PATHS = ("model.name", "trainer.model.name", "orchestrator.model.name", "inference.model.name", "model")
MAX_STEPS_PATHS = ("max_steps", "trainer.max_steps", "orchestrator.max_steps")
SEQ_LEN_PATHS = ("seq_len", "trainer.model.seq_len", "trainer.seq_len", "orchestrator.seq_len", "model.seq_len")
BATCH_SIZE_PATHS = ("orchestrator.batch_size", "batch_size", "trainer.batch_size")
MAX_COMPLETION_PATHS = (
    "max_completion_tokens",
    "orchestrator.max_completion_tokens",
    "orchestrator.sampling.max_tokens",
    "sampling.max_tokens",
    "max_tokens",
)


class ConfigProblem(ValueError):
    """A config value the simulator cannot use; `param` is the dotted path, as in a 422 body."""

    def __init__(self, param: str, details: str) -> None:
        super().__init__(f"{param}: {details}")
        self.param = param
        self.details = details


@dataclass(frozen=True)
class MeterRates:
    """Tokens per second of simulated running time on each meter."""

    training: float
    inference_input: float
    inference_output: float


@dataclass(frozen=True)
class DerivedRun:
    model_name: str | None
    model_param: str | None
    max_steps: int | None
    batch_size: int
    seq_len: int
    max_completion_tokens: int
    rates: MeterRates


def _lookup(config: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _first(config: Mapping[str, Any], paths: tuple[str, ...]) -> tuple[str, Any] | None:
    for path in paths:
        found, value = _lookup(config, path)
        # `model` as a table is the prime-rl layout; only a string there names the model.
        if found and not (path == "model" and isinstance(value, Mapping)):
            return f"config.{path}", value
    return None


def _positive_int(config: Mapping[str, Any], paths: tuple[str, ...], default: int | None) -> int | None:
    hit = _first(config, paths)
    if hit is None:
        return default
    param, value = hit
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigProblem(param, "must be a positive integer")
    return value


def derive_run(
    config: Mapping[str, Any],
    *,
    step_seconds: float,
    default_batch_size: int,
    default_seq_len: int,
    default_max_completion_tokens: int,
) -> DerivedRun:
    """Read the settings that drive token burn; raises ConfigProblem naming the bad key."""
    model_hit = _first(config, MODEL_NAME_PATHS)
    model_name: str | None = None
    model_param: str | None = None
    if model_hit is not None:
        param, value = model_hit
        model_param = param
        if not isinstance(value, str) or not value.strip():
            raise ConfigProblem(param, "must be a model name such as 'Qwen/Qwen3.5-4B'")
        model_name = value.strip()
    max_steps = _positive_int(config, MAX_STEPS_PATHS, None)
    batch_size = _positive_int(config, BATCH_SIZE_PATHS, default_batch_size)
    seq_len = _positive_int(config, SEQ_LEN_PATHS, default_seq_len)
    completion = _positive_int(config, MAX_COMPLETION_PATHS, None)
    assert batch_size is not None and seq_len is not None
    if completion is None:
        completion = min(default_max_completion_tokens, seq_len)
    elif completion > seq_len:
        hit = _first(config, MAX_COMPLETION_PATHS)
        raise ConfigProblem(hit[0] if hit else "config", f"must not exceed seq_len ({seq_len})")
    return DerivedRun(
        model_name=model_name,
        model_param=model_param,
        max_steps=max_steps,
        batch_size=batch_size,
        seq_len=seq_len,
        max_completion_tokens=completion,
        rates=rates_per_second(
            batch_size=batch_size, seq_len=seq_len, max_completion_tokens=completion, step_seconds=step_seconds
        ),
    )


def rates_per_second(*, batch_size: int, seq_len: int, max_completion_tokens: int, step_seconds: float) -> MeterRates:
    """The formula in the module docstring."""
    return MeterRates(
        training=batch_size * seq_len / step_seconds,
        inference_input=batch_size * (seq_len - max_completion_tokens) / step_seconds,
        inference_output=batch_size * max_completion_tokens / step_seconds,
    )
