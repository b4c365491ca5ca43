"""Pydantic models of every schema in the vendored Prime Training API spec.

Tolerant of unknown fields (the service adds fields without notice) and strict on the
required ones, so a response that drifts from the spec fails validation naming the field.
Shared by the API client (parsing responses) and the simulator (rendering them), so the two
cannot disagree about the wire format.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
    amount_usd: float
    currency: str
    resource_type: str
    resource_id: str | None = None


class WalletResponse(_ApiModel):
    wallet_id: str
    team_id: str | None = None
    balance_usd: float
    currency: str
    total_billings: int
    recent_billings: list[BillingEntry]


class RunUsageBreakdown(_ApiModel):
    tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


class RunPricing(_ApiModel):
    training_per_mtok: float | None = None
    inference_input_per_mtok: float | None = None
    inference_output_per_mtok: float | None = None


class RunUsageResponse(_ApiModel):
    run_id: str
    run_name: str | None = None
    base_model: str | None = None
    status: str | None = None
    training: RunUsageBreakdown
    inference: RunUsageBreakdown
    total_tokens: int
    total_cost_usd: float
    pricing: RunPricing
    record_count: int = 0


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
    deleted: bool


# Run statuses as the official CLI knows them. PAUSED counts as terminal: a paused run
# bills nothing until resumed, and resuming creates a new run id.
RUN_STATUSES = ("QUEUED", "PENDING", "RUNNING", "PAUSING", "PAUSED", "COMPLETED", "FAILED", "STOPPED")
TERMINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "STOPPED", "PAUSED"})


def is_terminal(status: str | None) -> bool:
    return status is not None and status.upper() in TERMINAL_STATUSES
