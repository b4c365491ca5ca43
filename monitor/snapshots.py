"""Readings the daemon takes: one run's usage totals, or the wallet, at a moment.

Immutable, plain data: what the poller produces, the state store keeps, and the rules, the
metrics collector and the status views read. `taken_at` is when the reading arrived (epoch s).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from monitor.api.models import RunUsageResponse, WalletResponse, is_terminal


def _cost(tokens: int, price_per_mtok: float | None) -> float | None:
    return None if price_per_mtok is None else tokens * price_per_mtok / 1_000_000


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    run_id: str
    taken_at: float
    run_name: str | None = None
    base_model: str | None = None
    status: str | None = None
    team_id: str | None = None
    training_tokens: int = 0
    inference_input_tokens: int = 0
    inference_output_tokens: int = 0
    training_cost_usd: float = 0.0
    inference_cost_usd: float = 0.0
    total_tokens: int = 0
    total_cost_usd: float = 0.0
    training_price_per_mtok: float | None = None
    inference_input_price_per_mtok: float | None = None
    inference_output_price_per_mtok: float | None = None
    record_count: int = 0
    # The inference input/output split is not reported: the API bills inference as one figure. The
    # reading model derives it per usage increment at the prices of that moment and keeps the running
    # estimate here (None: not derived yet, fall back to tokens x the latest price).
    inference_input_cost_estimate_usd: float | None = None
    # Monotonic time of the reading in this process (never stored): orders readings and measures gaps
    # when the host clock jumps. None for readings loaded from the store.
    taken_mono: float | None = None

    @classmethod
    def from_response(
        cls, usage: RunUsageResponse, *, taken_at: float, team_id: str | None = None, taken_mono: float | None = None
    ) -> RunSnapshot:
        return cls(
            run_id=usage.run_id,
            taken_at=taken_at,
            run_name=usage.run_name,
            base_model=usage.base_model,
            status=usage.status.upper() if usage.status else None,
            team_id=team_id,
            training_tokens=usage.training.tokens,
            inference_input_tokens=usage.inference.input_tokens,
            inference_output_tokens=usage.inference.output_tokens,
            training_cost_usd=usage.training.cost_usd,
            inference_cost_usd=usage.inference.cost_usd,
            total_tokens=usage.total_tokens,
            total_cost_usd=usage.total_cost_usd,
            training_price_per_mtok=usage.pricing.training_per_mtok,
            inference_input_price_per_mtok=usage.pricing.inference_input_per_mtok,
            inference_output_price_per_mtok=usage.pricing.inference_output_per_mtok,
            record_count=usage.record_count,
            taken_mono=taken_mono,
        )

    @property
    def terminal(self) -> bool:
        return is_terminal(self.status)

    @property
    def display_name(self) -> str:
        return self.run_name or self.run_id

    @property
    def inference_input_cost_usd(self) -> float:
        """An estimate: the API bills inference as one figure. The reading model derives the split per
        usage increment (see monitor.readings.model); before that, tokens x the latest price, as the official
        CLI shows it, and without prices the split follows the token counts."""
        if self.inference_input_cost_estimate_usd is not None:
            return min(max(self.inference_input_cost_estimate_usd, 0.0), self.inference_cost_usd)
        return self.inference_input_cost_at_latest_price()

    def inference_input_cost_at_latest_price(self) -> float:
        derived = _cost(self.inference_input_tokens, self.inference_input_price_per_mtok)
        if derived is not None:
            return min(derived, self.inference_cost_usd) if self.inference_cost_usd else derived
        tokens = self.inference_input_tokens + self.inference_output_tokens
        return self.inference_cost_usd * self.inference_input_tokens / tokens if tokens else 0.0

    @property
    def inference_output_cost_usd(self) -> float:
        return max(self.inference_cost_usd - self.inference_input_cost_usd, 0.0)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["taken_mono"]  # only meaningful inside the process that took the reading
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSnapshot:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class BillingRow:
    id: str
    resource_type: str
    resource_id: str | None
    amount_usd: float
    created_at: float
    last_billed_at: float | None = None


@dataclass(frozen=True, slots=True)
class WalletSnapshot:
    wallet_id: str
    taken_at: float
    balance_usd: float
    currency: str = "USD"
    team_id: str | None = None
    total_billings: int = 0
    billings: tuple[BillingRow, ...] = field(default_factory=tuple)

    @classmethod
    def from_response(cls, wallet: WalletResponse, *, taken_at: float) -> WalletSnapshot:
        rows = tuple(
            BillingRow(
                id=row.id,
                resource_type=row.resource_type,
                resource_id=row.resource_id,
                amount_usd=row.amount_usd,
                created_at=row.created_at.timestamp(),
                last_billed_at=row.last_billed_at.timestamp() if row.last_billed_at else None,
            )
            for row in wallet.recent_billings
        )
        return cls(
            wallet_id=wallet.wallet_id,
            taken_at=taken_at,
            balance_usd=wallet.balance_usd,
            currency=wallet.currency,
            team_id=wallet.team_id,
            total_billings=wallet.total_billings,
            billings=rows,
        )

    def training_run_ids(self) -> list[str]:
        """Run ids from `resource_type: training` rows, newest first, each once: how runs are discovered."""
        seen: dict[str, None] = {}
        for row in self.billings:
            if row.resource_type == "training" and row.resource_id:
                seen.setdefault(row.resource_id, None)
        return list(seen)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WalletSnapshot:
        rows = tuple(BillingRow(**row) for row in data.get("billings", ()))
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "billings"}
        return cls(**fields, billings=rows)
