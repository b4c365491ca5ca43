"""Token and cost figures on a run's three meters, and the arithmetic corrections need.

A `Usage` is what the usage endpoint shows (and what the ledger shows as accrued or billed):
tokens and dollars on training, inference input and inference output. Totals are always the
sums of the meters, so `total_cost_usd == training + input + output` holds by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from monitor.sim.pricing import ModelPrice

# Keeps 2.9999999 tokens from flooring to 2 through float noise.
TOKEN_EPSILON = 1e-6


@dataclass(frozen=True)
class Usage:
    training_tokens: int
    input_tokens: int
    output_tokens: int
    training_cost_usd: float
    input_cost_usd: float
    output_cost_usd: float

    @property
    def inference_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def inference_cost_usd(self) -> float:
        return self.input_cost_usd + self.output_cost_usd

    @property
    def total_tokens(self) -> int:
        return self.training_tokens + self.inference_tokens

    @property
    def total_cost_usd(self) -> float:
        return self.training_cost_usd + self.inference_cost_usd

    def plus(self, other: Usage) -> Usage:
        return Usage(
            training_tokens=self.training_tokens + other.training_tokens,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            training_cost_usd=self.training_cost_usd + other.training_cost_usd,
            input_cost_usd=self.input_cost_usd + other.input_cost_usd,
            output_cost_usd=self.output_cost_usd + other.output_cost_usd,
        )

    def minus(self, other: Usage) -> Usage:
        return Usage(
            training_tokens=self.training_tokens - other.training_tokens,
            input_tokens=self.input_tokens - other.input_tokens,
            output_tokens=self.output_tokens - other.output_tokens,
            training_cost_usd=self.training_cost_usd - other.training_cost_usd,
            input_cost_usd=self.input_cost_usd - other.input_cost_usd,
            output_cost_usd=self.output_cost_usd - other.output_cost_usd,
        )

    def as_dict(self) -> dict[str, float | int]:
        return {
            "training_tokens": self.training_tokens,
            "inference_input_tokens": self.input_tokens,
            "inference_output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "training_cost_usd": self.training_cost_usd,
            "inference_input_cost_usd": self.input_cost_usd,
            "inference_output_cost_usd": self.output_cost_usd,
            "inference_cost_usd": self.inference_cost_usd,
            "total_cost_usd": self.total_cost_usd,
        }


ZERO_USAGE = Usage(
    training_tokens=0, input_tokens=0, output_tokens=0, training_cost_usd=0.0, input_cost_usd=0.0, output_cost_usd=0.0
)


def price_usage(*, training: int, input_: int, output: int, price: ModelPrice) -> Usage:
    return Usage(
        training_tokens=training,
        input_tokens=input_,
        output_tokens=output,
        training_cost_usd=training * price.training_per_mtok / 1e6,
        input_cost_usd=input_ * price.inference_input_per_mtok / 1e6,
        output_cost_usd=output * price.inference_output_per_mtok / 1e6,
    )


def _kept_cost(cost: float, tokens_after: int, tokens_before: int) -> float:
    return cost * tokens_after / tokens_before if tokens_before else 0.0


def shrink(usage: Usage, *, fraction: float, one_price: ModelPrice | None) -> Usage:
    """`usage` less `fraction` of it on every meter: tokens floored, costs recomputed.

    With `one_price` (every token of the run was priced alike) each meter's cost is its kept
    tokens x that price. After a price change the tokens carry different prices, so each
    meter keeps the same share of its cost as of its tokens (the correction takes the same
    share from every price segment).
    """
    keep = 1.0 - fraction
    training, input_, output = (
        math.floor(tokens * keep + TOKEN_EPSILON)
        for tokens in (usage.training_tokens, usage.input_tokens, usage.output_tokens)
    )
    if one_price is not None:
        return price_usage(training=training, input_=input_, output=output, price=one_price)
    return Usage(
        training_tokens=training,
        input_tokens=input_,
        output_tokens=output,
        training_cost_usd=_kept_cost(usage.training_cost_usd, training, usage.training_tokens),
        input_cost_usd=_kept_cost(usage.input_cost_usd, input_, usage.input_tokens),
        output_cost_usd=_kept_cost(usage.output_cost_usd, output, usage.output_tokens),
    )
