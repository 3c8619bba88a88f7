"""`Client(max_cost=...)`: the library's hard budget, against the embedded simulator."""

from __future__ import annotations

from decimal import Decimal

import pytest

import llmgather
from llmgather.limits import Cost


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


TOOL = {
    "name": "lookup",
    "description": "Looks a word up. " + "Say which word, and which sense of it. " * 1000,
    "parameters": {"type": "object", "properties": {"word": {"type": "string"}}},
}


# (model, prompt, a cap its worst case passes, a cap it fits): each worst case is far above
# what the prompt's text and max_tokens alone (at the input rate, 256 tokens when unset)
# come to, which is below both caps.
BILLED_BEYOND_THE_TEXT = {
    # ~39 KB of tool schema at $0.15/M: ~$0.006.
    "tools": (
        "sim:gpt-4o-mini",
        {"prompt": "Which tool?", "tools": [TOOL], "max_tokens": 64},
        0.003,
        0.01,
    ),
    # Anthropic is sent 1024 output tokens when none is given: $0.0041 at $4/M.
    "anthropic's default max tokens": (
        "sim:anthropic:claude-3-5-haiku-latest",
        {"prompt": "Why do birds migrate?"},
        0.002,
        0.006,
    ),
    # Three answers of up to 1000 tokens at $0.60/M: $0.0018.
    "n answers": (
        "sim:gpt-4o-mini",
        {"prompt": "Name a bird.", "max_tokens": 1000, "extra": {"n": 3}},
        0.001,
        0.003,
    ),
    # 100 KB of prompt, which Anthropic may write to its cache at $1/M (input: $0.80/M).
    "a cache write": (
        "sim:anthropic:claude-3-5-haiku-latest",
        {"prompt": "Summarise: " + "the birds fly south. " * 5000, "max_tokens": 1},
        0.09,
        0.11,
    ),
}


@pytest.mark.parametrize("case", BILLED_BEYOND_THE_TEXT)
async def test_the_worst_case_counts_everything_that_is_billed(case: str) -> None:
    model, prompt, too_small, enough = BILLED_BEYOND_THE_TEXT[case]
    async with llmgather.Client(model, env={}, max_cost=too_small) as client:
        [refused] = await client.gather([prompt])
        stats = client.statistics()
    assert refused.error is not None and refused.error.type == "budget_exhausted"
    assert refused.attempts == 0 and stats.sent == 0
    assert stats.unsent == 1 and stats.failed == 0  # left by the cap, not failed
    async with llmgather.Client(model, env={}, max_cost=enough) as client:
        [answered] = await client.gather([prompt])
    assert answered.ok, answered.error
    assert answered.cost is not None and answered.cost <= Decimal(str(enough))


async def test_a_callable_under_a_cap_needs_its_worst_case_and_reserves_it() -> None:
    runs: list[str] = []

    async def answer(word: str) -> str:
        runs.append(word)
        return word.upper()

    async with llmgather.Client("sim:gpt-4o-mini", env={}, max_cost=0.001) as client:
        # Its price is not known here: without a worst case it would reserve nothing.
        with pytest.raises(llmgather.ConfigurationError, match="cost="):
            await client.call(answer, "unpriced")
        with pytest.raises(llmgather.ConfigurationError, match="cost="):
            client.map_calls(answer, ["a", "b"])
        assert runs == []
        # $0.0004 each, kept whole (no `priced` to settle it with): two fit in $0.001.
        worst = Cost(nano_usd=400_000)
        assert await client.call(answer, "one", cost=worst) == "ONE"
        results = [
            r async for r in client.map_calls(answer, ["two", "three"], cost=lambda _: worst)
        ]
        stats = client.statistics()
    assert sorted(r.ok for r in results) == [False, True]
    [unsent] = [r for r in results if not r.ok]
    assert unsent.error is not None and unsent.error.type == "budget_exhausted"
    assert len(runs) == 2 and stats.unsent == 1
