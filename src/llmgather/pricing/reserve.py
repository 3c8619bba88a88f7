"""What a request reserves of a cost cap (`--max-cost`), and what its answer settles it to,
in whole nano-dollars (the cap's unit, in-process and in Redis alike).

The worst case is the bound of everything sent as input (`request_input_bound`) priced at the
higher of the input and cache-write rates, and the max tokens sent (times `n`) at output, by
the same `Pricer` that prices the answer's line, so a tiered model's worst case is read at the tier
its input falls in. The settlement is the line's cost, to the nano-dollar as the line shows it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from decimal import ROUND_CEILING, Decimal
from typing import Any, Protocol

import orjson

from llmgather._types import COST_QUANTUM, Request, Usage
from llmgather.limits.base import Cost
from llmgather.limits.budgets import NANO
from llmgather.limits.tokens import PER_MESSAGE_OVERHEAD
from llmgather.pricing.pricer import Pricer

__all__ = [
    "SpendLedger",
    "capped_cost",
    "capped_cost_bounded",
    "choices",
    "nano_usd",
    "request_input_bound",
]


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


def capped_cost(
    cost: Cost, request: Request, pricer: Pricer, *, default_max_tokens: int | None = None
) -> Cost | None:
    """`cost` with its worst case in nano-dollars and the pricing of its real usage; None when
    the model has no price (the caller refuses to send it under a cap: fail closed).

    The output is bounded by what the request sends as its max tokens: its own, else the
    provider's default (`default_max_tokens`, which an API that requires one is sent), else
    the estimate already in `cost`; times the answers it asks for (`n`)."""
    given = request.max_tokens if request.max_tokens is not None else default_max_tokens
    output = (cost.output_tokens if given is None else given) * choices(request.extra)
    if output != cost.output_tokens:
        cost = dataclasses.replace(cost, output_tokens=output)
    return capped_cost_bounded(cost, request_input_bound(request), request.model, pricer)


def capped_cost_bounded(
    cost: Cost, input_bound: int, model: str | None, pricer: Pricer
) -> Cost | None:
    """As `capped_cost`, given the input's token bound (a relayed body's length in bytes: it
    holds everything the prompt is made of at least once; `model` None: the pricer's).

    The input is priced at the higher of the input and cache-write rates: a provider may
    write any of it to its prompt cache (Anthropic's writes cost up to twice the input)."""
    plain = pricer.cost(model, Usage(input_bound, cost.output_tokens))
    if plain is None:
        return None
    written = pricer.cost(
        model, Usage(input_bound, cost.output_tokens, cache_write_tokens=input_bound)
    )
    worst = plain if written is None else max(plain, written)

    def priced(usage: Usage) -> int:
        found = pricer.cost(model, usage)
        # Unknown for this usage (it never is for a model priced above): keep it all.
        return reserve if found is None else nano_usd(found)

    reserve = int((worst * NANO).to_integral_value(ROUND_CEILING))
    return dataclasses.replace(cost, nano_usd=reserve, priced=priced)


def request_input_bound(request: Request) -> int:
    """At most how many tokens the request's input can be: the UTF-8 bytes of everything sent
    that the provider counts as input (no tokenizer makes more tokens than bytes). A message
    of plain text counts its text (as `input_token_bound`); any other (parts, images, tool
    calls) its JSON; so do the tools, the JSON schema, the tool choice and the `extra` fields.
    One serialization of each, so it stays cheap per request."""
    total = 0
    for message in request.messages:
        content = message.get("content", "")
        if isinstance(content, str) and len(message) <= 2:  # role and text: the common case
            total += PER_MESSAGE_OVERHEAD + len(content.encode())
        else:
            total += PER_MESSAGE_OVERHEAD + _json_size(message)
    for part in (request.tools, request.json_schema, request.tool_choice, request.extra):
        if part:
            total += _json_size(part)
    return total


def choices(extra: Mapping[str, Any] | None) -> int:
    """How many answers a request asks for (OpenAI's `n`, Gemini's `candidateCount`): each
    is billed its output."""
    if not extra:
        return 1
    config = extra.get("generationConfig")
    counts = (
        extra.get("n"),
        extra.get("candidateCount"),
        config.get("candidateCount") if isinstance(config, Mapping) else None,
    )
    return max([1, *(c for c in counts if isinstance(c, int) and not isinstance(c, bool))])


def _json_size(value: Any) -> int:
    return len(orjson.dumps(value, default=str))
