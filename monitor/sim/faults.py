"""Fault injection: which faults apply to a request, drawn from a seeded RNG.

Each fault names an endpoint (`usage`, `wallet`, `create`, `delete` or `any`; `delete` covers
both delete paths), a probability (default 1), an optional `count` (it applies to the next N
matching requests, then expires) and an optional `run_id` filter. Faults are checked in the
order they were added: every matching `latency` fault adds its delay, and the first matching
fault of any other kind decides the answer.

`override` scripts the answer: after the real handler ran (the request takes effect), a 2xx
answer gets `set` deep-merged onto its JSON body, or is replaced by `raw_body` verbatim.
"""

from __future__ import annotations

import copy
import random
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from monitor.config.durations import Duration
from monitor.sim.rates import ConfigProblem

FaultKind = Literal[
    "latency", "error", "rate_limit", "hang", "malformed", "drift", "unauthorized", "forbidden", "override"
]
FaultEndpoint = Literal["usage", "wallet", "create", "delete", "any"]
PUBLIC_ENDPOINTS = ("usage", "wallet", "create", "delete")

# The longest a hang may last, so a forgotten fault cannot hold a socket forever.
MAX_HANG_SECONDS = 3600.0
# The largest raw_body an override may send (deep nesting and huge numbers fit well within it).
MAX_RAW_BODY_CHARS = 16 * 1024 * 1024
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
    set: dict[str, Any] | None = Field(default=None, description="override: deep-merged onto the real JSON answer")
    raw_body: str | None = Field(
        default=None, max_length=MAX_RAW_BODY_CHARS, description="override: sent verbatim as the answer's body"
    )

    @model_validator(mode="after")
    def _check_override(self) -> FaultSpec:
        if self.kind == "override":
            if (self.set is None) == (self.raw_body is None):
                raise ConfigProblem("set", "an override fault needs exactly one of set or raw_body")
            if self.set is not None and not self.set:
                raise ConfigProblem("set", "must name at least one field")
        else:
            for name in ("set", "raw_body"):
                if getattr(self, name) is not None:
                    raise ConfigProblem(name, "only an override fault takes it")
        return self

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


def _item_index(key: str, length: int) -> int | None:
    return int(key) if key.isdigit() and int(key) < length else None


def merge_patch(target: Any, patch: Any) -> Any:
    """`patch` laid over `target` (changed in place where it can be) and returned.

    Objects merge key by key, recursively; a key the target lacks is added. An object whose
    keys are item numbers ("0", "3") patches those items of a list (numbers past its end are
    ignored). Anything else replaces the target's value: null sets a field to null (use a
    drift fault to drop it), a list replaces the whole list.
    """
    if isinstance(patch, dict) and isinstance(target, dict):
        for key, value in patch.items():
            target[key] = merge_patch(target[key], value) if key in target else copy.deepcopy(value)
        return target
    if isinstance(patch, dict) and isinstance(target, list) and patch and all(k.isdigit() for k in patch):
        for key, value in patch.items():
            index = _item_index(key, len(target))
            if index is not None:
                target[index] = merge_patch(target[index], value)
        return target
    return copy.deepcopy(patch)
