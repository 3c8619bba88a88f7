"""`Client(max_cost=...)`: the library's hard budget, against the embedded simulator."""

from __future__ import annotations

from decimal import Decimal

import pytest

import llmgather


async def test_a_client_spends_no_more_than_its_cap_and_fails_the_rest_unsent() -> None:
    prompts = [f"Question {i}: why do birds migrate?" for i in range(120)]
    cap = Decimal("0.0005")
    async with llmgather.Client(
        "sim:gpt-4o-mini", env={}, max_cost=float(cap), defaults={"max_tokens": 64}
    ) as client:
        results = await client.gather(prompts)
    ok = [r for r in results if r.ok]
    unsent = [r for r in results if not r.ok]
    assert ok and unsent and len(ok) + len(unsent) == len(prompts)
    assert all(r.error is not None and r.error.type == "budget_exhausted" for r in unsent)
    assert all(r.attempts == 0 for r in unsent)
    assert isinstance(unsent[0].exception, llmgather.BudgetExhaustedError)
    spent = sum(r.cost for r in ok if r.cost is not None)
    # One request's worst case here: ~40 bytes of prompt at $0.15/M, 64 tokens at $0.60/M.
    assert spent <= cap + Decimal("0.00005")


async def test_a_client_with_a_cap_refuses_a_model_it_cannot_price() -> None:
    with pytest.raises(llmgather.ConfigurationError, match=r"my-local-model.*--prices"):
        llmgather.Client("my-local-model", base_url="http://127.0.0.1:9/v1", api_key="k",
                         max_cost=1.0, env={})  # fmt: skip
    with pytest.raises(llmgather.ConfigurationError, match="cost="):
        await llmgather.run_job(_echo, "in.jsonl", "out.jsonl", max_cost=1.0, name="echo")


async def _echo(line: dict) -> str:
    return str(line)
