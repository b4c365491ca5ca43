"""Fault injection: which faults apply to a request, drawn from a seeded RNG.

Each fault names an endpoint (`usage`, `wallet`, `create`, `delete` or `any`; `delete` covers
both delete paths), a probability (default 1), an optional `count` (it applies to the next N
matching requests, then expires) and an optional `run_id` filter. Faults are checked in the
order they were added: every matching `latency` fault adds its delay, and the first matching
fault of any other kind decides the answer.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from monitor.durations import Duration

FaultKind = Literal["latency", "error", "rate_limit", "hang", "malformed", "drift", "unauthorized"]
FaultEndpoint = Literal["usage", "wallet", "create", "delete", "any"]
PUBLIC_ENDPOINTS = ("usage", "wallet", "create", "delete")

# The longest a hang may last, so a forgotten fault cannot hold a socket forever.
MAX_HANG_SECONDS = 3600.0
# What a drift fault drops when it does not name a field: a required field of each answer.
DEFAULT_DRIFT_FIELD = {"usage": "total_cost_usd", "wallet": "balance_usd", "create": "runId", "delete": "deleted"}


class FaultSpec(BaseModel):
    """One fault, as written in a scenario or posted to the admin API."""

    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    endpoint: FaultEndpoint = "any"
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    count: int | None = Field(default=None, ge=1, description="apply to the next N matching requests only")
    run_id: str | None = Field(default=None, description="only requests about this run")
    latency: Duration = Field(default=0.0, description="latency: fixed delay")
    jitter: Duration = Field(default=0.0, description="latency: plus a uniform random delay up to this")
    status: int = Field(default=500, description="error: 500, 502, 503 or 504")
    after_effect: bool = Field(default=False, description="error: the request takes effect, then the error is sent")
    retry_after: int = Field(default=1, ge=0, le=86400, description="rate_limit: Retry-After seconds")
    hang_seconds: Duration = Field(default=120.0, description="hang: how long before a 504")
    field: str | None = Field(default=None, description="drift: dotted path of the field to drop")

    @model_validator(mode="after")
    def _check_kind_fields(self) -> FaultSpec:
        if self.kind == "error" and self.status not in (500, 502, 503, 504):
            raise ValueError("status must be one of 500, 502, 503, 504 for an error fault")
        if self.kind == "hang" and not 0 < self.hang_seconds <= MAX_HANG_SECONDS:
            raise ValueError(f"hang_seconds must be in (0, {MAX_HANG_SECONDS:.0f}]")
        if self.kind == "latency" and self.latency + self.jitter <= 0:
            raise ValueError("a latency fault needs latency or jitter above 0")
        return self

    def drift_field(self, endpoint: str) -> str:
        return self.field or DEFAULT_DRIFT_FIELD.get(endpoint, "detail")


@dataclass
class ActiveFault:
    fault_id: str
    spec: FaultSpec
    remaining: int | None
    applied: int = 0

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.fault_id,
            **self.spec.model_dump(mode="json", exclude_none=True),
            "remaining": self.remaining,
            "applied": self.applied,
        }


@dataclass
class FaultPlan:
    """What to do to one request: sleep `delay` seconds, then apply `fault` (None: answer normally)."""

    delay: float = 0.0
    fault: FaultSpec | None = None
    fault_id: str | None = None
    applied_ids: list[str] = field(default_factory=list)


class FaultBook:
    def __init__(self, *, seed: int | str) -> None:
        self._rng = random.Random(f"faults:{seed}")
        self._faults: list[ActiveFault] = []
        self._next_id = 1
        self._lock = threading.Lock()

    def add(self, spec: FaultSpec) -> str:
        with self._lock:
            fault_id = f"fault-{self._next_id}"
            self._next_id += 1
            self._faults.append(ActiveFault(fault_id=fault_id, spec=spec, remaining=spec.count))
            return fault_id

    def replace(self, specs: list[FaultSpec]) -> list[str]:
        self.clear()
        return [self.add(spec) for spec in specs]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [fault.describe() for fault in self._faults]

    def plan(self, endpoint: str, run_id: str | None) -> FaultPlan:
        """Draw the faults for one request to a public endpoint; consumes `count`s of those applied."""
        plan = FaultPlan()
        with self._lock:
            for fault in self._faults:
                spec = fault.spec
                if spec.endpoint not in ("any", endpoint):
                    continue
                if spec.run_id is not None and spec.run_id != run_id:
                    continue
                if spec.kind != "latency" and plan.fault is not None:
                    continue
                if self._rng.random() >= spec.probability:
                    continue
                if spec.kind == "latency":
                    plan.delay += spec.latency + (self._rng.uniform(0.0, spec.jitter) if spec.jitter else 0.0)
                else:
                    plan.fault = spec
                    plan.fault_id = fault.fault_id
                fault.applied += 1
                plan.applied_ids.append(fault.fault_id)
                if fault.remaining is not None:
                    fault.remaining -= 1
            self._faults = [f for f in self._faults if f.remaining is None or f.remaining > 0]
        return plan


def drop_field(body: Any, dotted: str) -> bool:
    """Remove `a.b.c` from a JSON object in place; True when something was removed."""
    parts = dotted.split(".")
    node = body
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    if isinstance(node, dict) and parts[-1] in node:
        del node[parts[-1]]
        return True
    return False
