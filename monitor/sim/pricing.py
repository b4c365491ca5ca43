"""Per-million-token prices by base model, and a forgiving lookup by model name.

Published prices come from Prime Intellect's public price list; rows marked `assumed` are
not published and were picked to sit plausibly beside their neighbours (say so wherever
they are shown). A run snapshots its prices when it is created, as the real service does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelPrice:
    """Dollars per million tokens on each of a run's three meters."""

    model: str
    inference_input_per_mtok: float
    inference_output_per_mtok: float
    training_per_mtok: float
    assumed: bool = False


def _price(model: str, input_: float, output: float, train: float, *, assumed: bool = False) -> ModelPrice:
    return ModelPrice(
        model=model,
        inference_input_per_mtok=input_,
        inference_output_per_mtok=output,
        training_per_mtok=train,
        assumed=assumed,
    )


PRICE_TABLE: tuple[ModelPrice, ...] = (
    _price("Qwen/Qwen3.5-0.8B", 0.02, 0.06, 0.06),
    _price("Qwen/Qwen3.5-2B", 0.05, 0.15, 0.15),
    _price("Qwen/Qwen3.5-4B", 0.10, 0.30, 0.30),
    _price("Qwen/Qwen3.5-9B", 0.20, 0.60, 0.60),
    _price("Qwen/Qwen3.5-35B-A3B", 0.25, 0.75, 1.00),
    _price("Qwen/Qwen3.5-122B-A10B", 0.50, 1.50, 2.00),
    _price("Qwen/Qwen3.5-397B-A17B", 1.00, 3.00, 4.00),
    _price("meta-llama/Llama-3.2-1B", 0.02, 0.06, 0.06),
    _price("meta-llama/Llama-3.2-3B", 0.05, 0.15, 0.15),
    _price("nvidia/Nemotron-30B-A3B", 0.15, 0.45, 0.60),
    _price("openai/gpt-oss-20b", 0.10, 0.30, 0.40),
    # Not published: sized against the published rows above.
    _price("openai/gpt-oss-120b", 0.30, 0.90, 1.20, assumed=True),
    _price("Qwen/Qwen3-0.6B", 0.02, 0.06, 0.06, assumed=True),
    _price("Qwen/Qwen3-4B", 0.10, 0.30, 0.30, assumed=True),
    _price("Qwen/Qwen3-30B-A3B", 0.25, 0.75, 1.00, assumed=True),
    _price("meta-llama/Llama-3.1-8B", 0.20, 0.60, 0.60, assumed=True),
)

# Suffixes that name a variant of the same weights (same price): stripped before matching.
_VARIANT_SUFFIXES = ("-instruct", "-base", "-chat", "-it", "-hf", "-bf16", "-fp8", "-thinking", "-2507")
# Other spellings seen for the same model, already in normalised form.
_ALIASES = {
    "nemotron-30b-a3b": (
        "nvidia-nemotron-3-nano-30b-a3b",
        "nemotron-3-nano-30b-a3b",
        "nemotron-nano-30b-a3b",
        "nemotron-3-30b-a3b",
    ),
}


def normalise_model_name(name: str) -> str:
    """'Qwen/Qwen3.5-4B-Instruct' -> 'qwen3.5-4b': no organisation, lower case, no variant suffix."""
    key = name.strip().lower().rsplit("/", 1)[-1].replace("_", "-").replace(" ", "-")
    key = re.sub(r"-+", "-", key)
    # Bounded: each pass removes one suffix, and there are finitely many.
    for _ in range(len(_VARIANT_SUFFIXES)):
        stripped = next((key[: -len(s)] for s in _VARIANT_SUFFIXES if key.endswith(s) and len(key) > len(s)), None)
        if stripped is None:
            break
        key = stripped
    return key


def _build_index() -> dict[str, ModelPrice]:
    index: dict[str, ModelPrice] = {}
    for price in PRICE_TABLE:
        key = normalise_model_name(price.model)
        index[key] = price
        for alias in _ALIASES.get(key, ()):
            index[alias] = price
    return index


_INDEX = _build_index()


def lookup_price(model_name: str) -> ModelPrice | None:
    """The price row for a model name in any usual spelling, or None when the model is unknown."""
    return _INDEX.get(normalise_model_name(model_name))


def known_models() -> list[str]:
    return [price.model for price in PRICE_TABLE]


def price_table_markdown() -> str:
    """The table as Markdown, for the README."""
    lines = [
        "| model | input $/Mtok | output $/Mtok | training $/Mtok | source |",
        "| --- | --- | --- | --- | --- |",
    ]
    for p in PRICE_TABLE:
        source = "assumed" if p.assumed else "published"
        lines.append(
            f"| {p.model} | {p.inference_input_per_mtok:.2f} | {p.inference_output_per_mtok:.2f} "
            f"| {p.training_per_mtok:.2f} | {source} |"
        )
    return "\n".join(lines)
