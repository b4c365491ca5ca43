"""The admin API's ledger: the truth about each run and wallet at a moment, as JSON-ready dicts.

`accrued` is the true usage (landed or not) and `billed` what has landed, both after
corrections and with each token priced in the segment it accrued in: these per-meter costs
(inference input and output apart) are what a client's derived split can be checked against.
"""

from __future__ import annotations

from typing import Any

from monitor.sim.accounting import BillingView, Correction, SimRun
from monitor.sim.pricing import ModelPrice
from monitor.sim.usage import Usage


def price_dict(price: ModelPrice) -> dict[str, Any]:
    return {
        "training_per_mtok": price.training_per_mtok,
        "inference_input_per_mtok": price.inference_input_per_mtok,
        "inference_output_per_mtok": price.inference_output_per_mtok,
    }


def _billed_dict(usage: Usage, record_count: int) -> dict[str, Any]:
    return {**usage.as_dict(), "record_count": record_count}


def correction_entry(correction: Correction) -> dict[str, Any]:
    return {
        "at": correction.at,
        "fraction": correction.fraction,
        "records_requested": correction.records_requested,
        "records_removed": correction.records_removed,
        "amount_usd": correction.amount_usd,
        "billed_before": _billed_dict(correction.billed_before, correction.record_count_before),
        "billed_after": _billed_dict(
            correction.billed_after, correction.record_count_before - correction.records_removed
        ),
        "accrued_before": correction.accrued_before.as_dict(),
        "accrued_after": correction.accrued_after.as_dict(),
    }


def price_segments(run: SimRun, now: float) -> list[dict[str, Any]]:
    """Each price segment, with the tokens and cost accrued in it by `now` (before corrections)."""
    segments = run.segments
    out: list[dict[str, Any]] = []
    for index, segment in enumerate(segments):
        until = segments[index + 1].starts_at if index + 1 < len(segments) else None
        out.append(
            {
                "from": segment.starts_at,
                "until": until,
                **price_dict(segment.price),
                "accrued": run.segment_usage(index, now).as_dict(),
            }
        )
    return out


def run_entry(run: SimRun, now: float, *, meter_interval: float) -> dict[str, Any]:
    accrued = run.accrued(now)
    view: BillingView = run.billed(now, meter_interval=meter_interval)
    end_at, reason = run.end()
    ended = reason is not None and end_at <= now
    return {
        "run_id": run.run_id,
        "name": run.name,
        "base_model": run.base_model,
        "team_id": run.team_id,
        "wallet_id": run.wallet_id,
        "source": run.source,
        "job_id": run.job_id,
        "status": run.status(now),
        "created_at": run.created_at,
        # A run deleted while queued never started.
        "started_at": run.started_at if now >= run.started_at and end_at > run.started_at else None,
        "ended_at": end_at if ended else None,
        "end_reason": reason if ended else None,
        "first_delete_at": run.first_delete_at,
        "delete_count": run.delete_count,
        "deletes": [{"at": at, "path": path} for at, path in run.deletes],
        "max_steps": run.max_steps,
        "step_seconds": run.step_seconds,
        "steps_done": run.steps_done(now),
        "running_seconds": run.running_seconds(now),
        "rates_per_second": {
            "training": run.rates.training,
            "inference_input": run.rates.inference_input,
            "inference_output": run.rates.inference_output,
        },
        # The latest prices (what the usage endpoint shows); `assumed` is about the table row.
        "pricing": {**price_dict(run.latest_price), "assumed": run.price.assumed},
        "price_segments": price_segments(run, now),
        "accrued": accrued.as_dict(),
        "billed": {
            **_billed_dict(view.usage, view.record_count),
            "first_billed_at": view.first_billed_at,
            "last_billed_at": view.last_billed_at,
            "updated_at": view.updated_at,
        },
        "corrections": [correction_entry(c) for c in run.corrections],
        "unbilled_cost_usd": accrued.total_cost_usd - view.usage.total_cost_usd,
        "token_fingerprint": run.token_fingerprint,
        "secrets_received": list(run.secrets_received),
    }
