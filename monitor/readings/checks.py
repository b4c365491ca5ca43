"""Sanity checks on one reading on its own, beyond the schema: a reading that fails one is logged,
counted and never acted on (no alert, no delete), exactly like a response that failed schema
validation. How a reading compares with the ones before it is monitor.readings.model' question."""

from __future__ import annotations

import math

from monitor.snapshots import RunSnapshot

# The API rounds costs; totals may disagree with the sum of meters by a cent or so.
_COST_TOLERANCE_USD = 0.02
_COST_TOLERANCE_RATIO = 0.001


def usage_problem(snapshot: RunSnapshot, *, requested_run_id: str) -> str | None:
    """Why this reading cannot be trusted, or None when it can."""
    if snapshot.run_id != requested_run_id:
        return f"asked for run {requested_run_id!r} but the API answered for {snapshot.run_id!r}"
    numbers = {
        "training.tokens": snapshot.training_tokens,
        "inference.input_tokens": snapshot.inference_input_tokens,
        "inference.output_tokens": snapshot.inference_output_tokens,
        "training.cost_usd": snapshot.training_cost_usd,
        "inference.cost_usd": snapshot.inference_cost_usd,
        "total_tokens": snapshot.total_tokens,
        "total_cost_usd": snapshot.total_cost_usd,
    }
    for name, value in numbers.items():
        if not math.isfinite(value):
            return f"{name} is not a finite number"
        if value < 0:
            return f"{name} is negative ({value})"
    meters = snapshot.training_cost_usd + snapshot.inference_cost_usd
    tolerance = max(_COST_TOLERANCE_USD, _COST_TOLERANCE_RATIO * max(meters, snapshot.total_cost_usd))
    if abs(meters - snapshot.total_cost_usd) > tolerance:
        return (
            f"total_cost_usd {snapshot.total_cost_usd:.4f} is not the sum of its meters "
            f"(training {snapshot.training_cost_usd:.4f} + inference {snapshot.inference_cost_usd:.4f})"
        )
    return None
