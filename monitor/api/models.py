"""Pydantic models of every schema in the vendored Prime Training API spec.

Tolerant of unknown fields (the service adds fields without notice) and strict on the
required ones, so a response that drifts from the spec fails validation naming the field.
Shared by the API client (parsing responses) and the simulator (rendering them), so the two
cannot disagree about the wire format.

Numbers are strict (no "12" for 12, no true for 1, no 5.0 for a count) and bounded, so a value no
billing system reports fails here, naming the field, before any rule or metric sees it:

- token counts, `record_count`, `total_billings`: integers in 0 .. 1e15 (a count is never negative;
  1e15 tokens is dozens of times the largest published pretraining run);
- costs, `amount_usd`, `balance_usd`: finite, -1e12 .. 1e12 (beyond any real account; NaN and
  infinity poison every sum and comparison after them);
- prices per Mtok: finite, 0 .. 1e6 (the public prices are cents to a few dollars).

Negative money is allowed here on purpose. A wallet balance can be negative (usage lands after the
fact, so an account can be overdrawn) and a billing row can be a credit or a refund. A negative
*run* cost is not plausible, but judging plausibility (negative, a jump that the run's tokens cannot
explain, a correction) is the reading model's job, which rejects and counts such a reading; this
module refuses only what cannot be a figure at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict

MAX_COUNT = 10**15
MAX_USD = 1e12
MAX_PRICE_PER_MTOK = 1e6

Count = Annotated[int, Strict(), Field(ge=0, le=MAX_COUNT)]
Usd = Annotated[float, Strict(), Field(ge=-MAX_USD, le=MAX_USD, allow_inf_nan=False)]
PricePerMtok = Annotated[float, Strict(), Field(ge=0, le=MAX_PRICE_PER_MTOK, allow_inf_nan=False)]


class _ApiModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ErrorDetail(_ApiModel):
    param: str
    details: str


class ErrorResponse(_ApiModel):
    errors: list[ErrorDetail]


class BillingEntry(_ApiModel):
    id: str
    created_at: datetime
    updated_at: datetime
    last_billed_at: datetime | None = None
    amount_usd: Usd
    currency: str
    resource_type: str
    resource_id: str | None = None


class WalletResponse(_ApiModel):
    wallet_id: str
    team_id: str | None = None
    balance_usd: Usd
    currency: str
    total_billings: Count
    recent_billings: list[BillingEntry]


class RunUsageBreakdown(_ApiModel):
    tokens: Count = 0
    input_tokens: Count = 0
    output_tokens: Count = 0
    cost_usd: Usd = 0.0


class RunPricing(_ApiModel):
    training_per_mtok: PricePerMtok | None = None
    inference_input_per_mtok: PricePerMtok | None = None
    inference_output_per_mtok: PricePerMtok | None = None


class RunUsageResponse(_ApiModel):
    run_id: str
    run_name: str | None = None
    base_model: str | None = None
    status: str | None = None
    training: RunUsageBreakdown
    inference: RunUsageBreakdown
    total_tokens: Count
    total_cost_usd: Usd
    pricing: RunPricing
    record_count: Count = 0


class CreateDedicatedRunRequest(_ApiModel):
    config: dict[str, Any]
    image_tag: str = Field(default="main", alias="imageTag")
    name: str | None = None
    team_id: str | None = Field(default=None, alias="teamId")
    # Secrets: accepted, never stored, never echoed.
    wandb_api_key: str | None = Field(default=None, alias="wandbApiKey", repr=False)
    hf_token: str | None = Field(default=None, alias="hfToken", repr=False)


class CreateDedicatedRunResponse(_ApiModel):
    run_id: str = Field(alias="runId")
    job_id: str = Field(alias="jobId")
    token_value: str = Field(alias="tokenValue", repr=False)


class DeleteRunResponse(_ApiModel):
    run_id: str = Field(alias="runId")
    deleted: Annotated[bool, Strict()]


# Run statuses as the official CLI knows them. PAUSED counts as terminal: a paused run
# bills nothing until resumed, and resuming creates a new run id.
RUN_STATUSES = ("QUEUED", "PENDING", "RUNNING", "PAUSING", "PAUSED", "COMPLETED", "FAILED", "STOPPED")
TERMINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "STOPPED", "PAUSED"})


def is_terminal(status: str | None) -> bool:
    return status is not None and status.upper() in TERMINAL_STATUSES
