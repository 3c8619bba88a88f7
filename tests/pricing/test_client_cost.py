"""The library's results carry their cost: `Client` against the embedded simulator prices
`sim:gpt-4o-mini` as OpenAI's gpt-4o-mini, and `Client(prices=...)` takes the user's own."""

from __future__ import annotations

from decimal import Decimal

import genai_prices

import llmgather


def genai_cost(model: str, usage: llmgather.Usage) -> Decimal:
    priced = genai_prices.Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)
    return genai_prices.calc_price(priced, model, provider_id="openai").total_price


async def test_gather_results_carry_their_exact_cost() -> None:
    async with llmgather.Client("sim:gpt-4o-mini", env={}) as client:
        results = await client.gather(["Why do birds migrate?", "Name three rivers."])
    for result in results:
        assert result.ok and result.usage is not None
        assert result.cost == genai_cost("gpt-4o-mini", result.usage)
        assert result.cost_basis == "standard"
        assert result.to_dict()["cost"] == float(result.cost)


async def test_the_users_prices_price_the_answers() -> None:
    prices = {"gpt-4o-mini": {"input": 1, "output": 1}}
    async with llmgather.Client("sim:gpt-4o-mini", env={}, prices=prices) as client:
        result = await client.complete_result("Hello")
    assert result.usage is not None
    assert result.cost == Decimal(result.usage.total_tokens) / 1_000_000
