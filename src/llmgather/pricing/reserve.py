"""What a request reserves of a cost cap (`--max-cost`), and what its answer settles it to,
in whole nano-dollars (the cap's unit, in-process and in Redis alike).

The worst case is the prompt's token bound priced at input and `max_tokens` at output, by the
same `Pricer` that prices the answer's line, so a tiered model's worst case is read at the tier
its input falls in. The settlement is the line's cost, to the nano-dollar as the line shows it.
"""

from __future__ import annotations

import dataclasses
from decimal import ROUND_CEILING, Decimal
from typing import Protocol

from llmgather._types import COST_QUANTUM, Request, Usage
from llmgather.limits.base import Cost
from llmgather.limits.budgets import NANO
from llmgather.limits.tokens import input_token_bound
from llmgather.pricing.pricer import Pricer

__all__ = ["SpendLedger", "capped_cost", "capped_cost_bounded", "nano_usd"]


class SpendLedger(Protocol):
    """Where a capped run keeps what each attempt reserved and what it settled to (a job's
    store), so a resumed job goes on from what was really spent. `attempt` names one send."""

    async def reserved(self, attempt: str, nano_usd: int) -> None:
        """Returns once the reservation is durable: only then is the request sent."""
        ...

    def settled(self, attempt: str, nano_usd: int) -> None:
        """The attempt's real cost (0: the server took nothing); kept as it comes."""
        ...


def nano_usd(cost: Decimal) -> int:
    """A line's cost (USD, rounded to the nano-dollar as the line is) in nano-dollars."""
    return int(cost.quantize(COST_QUANTUM) * NANO)


def capped_cost(cost: Cost, request: Request, pricer: Pricer) -> Cost | None:
    """`cost` with its worst case in nano-dollars and the pricing of its real usage; None when
    the model has no price (the caller refuses to send it under a cap: fail closed)."""
    return capped_cost_bounded(cost, input_token_bound(request.messages), request.model, pricer)


def capped_cost_bounded(
    cost: Cost, input_bound: int, model: str | None, pricer: Pricer
) -> Cost | None:
    """As `capped_cost`, given the input's token bound (a relayed body's length in bytes: it
    holds the prompt's text at least once; `model` None: the pricer's)."""
    worst = pricer.cost(model, Usage(input_bound, cost.output_tokens))
    if worst is None:
        return None

    def priced(usage: Usage) -> int:
        found = pricer.cost(model, usage)
        # Unknown for this usage (it never is for a model priced above): keep it all.
        return reserve if found is None else nano_usd(found)

    reserve = int((worst * NANO).to_integral_value(ROUND_CEILING))
    return dataclasses.replace(cost, nano_usd=reserve, priced=priced)
