"""Usage normalised before pricing, end to end: a long system prompt sent twice is written to the
simulator's prompt cache, then read from it; every dialect reports it its provider's way (read
here by the official SDKs' own types and by our adapters), and the line's cost is the price of
the normalised usage (uncached input, cache reads, cache writes and output at their own rates)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import aiohttp
import genai_prices
import openai
from anthropic import AsyncAnthropic
from google import genai
from google.genai import types

import llmgather
from llmgather import Request, Result, Usage
from llmgather.limits.tokens import estimate_prompt_tokens
from llmgather.sim import RunningSimulator

SYSTEM = "You are a careful assistant who answers in one short paragraph. " * 80
SYSTEM_TOKENS = estimate_prompt_tokens([{"role": "system", "content": SYSTEM}])
PROMPTS = ("Why do some birds migrate?", "Name three rivers.")
# By target: genai-prices' provider id and model, and whether the dialect reports cache writes.
TARGETS = {
    "sim:gpt-4o-mini": ("openai", "gpt-4o-mini", False),
    "sim:anthropic:claude-3-5-haiku-latest": ("anthropic", "claude-3-5-haiku-latest", True),
    "sim:gemini:gemini-2.0-flash": ("google", "gemini-2.0-flash", False),
}


def priced(provider_id: str, model: str, usage: Usage) -> Decimal:
    """genai-prices' own price of a usage (its input counts the cached tokens, as ours does)."""
    counted = genai_prices.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
    )
    return genai_prices.calc_price(counted, model, provider_id=provider_id).total_price


async def test_our_adapters_read_the_cache_the_same_in_every_dialect_and_price_it() -> None:
    assert SYSTEM_TOKENS >= 1024  # what the simulator caches, as OpenAI and Anthropic do
    seen: dict[str, list[Usage]] = {}
    for target, (provider_id, model, writes) in TARGETS.items():
        for stream in (False, True):
            async with llmgather.Client(target, env={}, stream=stream) as client:
                results = [
                    await client.complete_result(Request.from_prompt(p, system=SYSTEM))
                    for p in PROMPTS
                ]
            first, second = (result.usage for result in results)
            assert first is not None and second is not None
            seen[f"{target} stream={stream}"] = [first, second]
            # The input counts every prompt token, cached or not, whatever the dialect says.
            plain = estimate_prompt_tokens(
                [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPTS[0]}]
            )
            assert first.input_tokens == plain
            assert (first.cache_read_tokens, first.cache_write_tokens) == (
                0,
                SYSTEM_TOKENS if writes else 0,
            )
            assert (second.cache_read_tokens, second.cache_write_tokens) == (SYSTEM_TOKENS, 0)
            for result in results:
                assert result.usage is not None
                assert result.cost == priced(provider_id, model, result.usage)
                assert result.cost_basis == "standard"
            # A read costs less than the same tokens uncached.
            uncached = Usage(second.input_tokens, second.output_tokens)
            assert results[1].cost is not None
            assert results[1].cost < priced(provider_id, model, uncached)
    # The same two requests read the same in every dialect, bar the writes only Anthropic tells.
    reads = {
        name: [(u.input_tokens, u.cache_read_tokens) for u in pair] for name, pair in seen.items()
    }
    assert len({tuple(pair) for pair in reads.values()}) == 1, reads


async def test_the_sdks_read_the_cache_fields_and_a_call_is_priced_on_them(
    sim: RunningSimulator,
) -> None:
    """The official SDKs parse each dialect's cache fields into their own types; llmgather reads
    those types (a user's callable's answer) into the same normalised usage, and prices it."""
    openai_client = openai.AsyncOpenAI(base_url=sim.base_url + "/v1", api_key="k", max_retries=0)
    anthropic_client = AsyncAnthropic(base_url=sim.base_url, api_key="k", max_retries=0)
    async with aiohttp.ClientSession() as session:
        options = types.HttpOptions(
            base_url=sim.base_url,
            aiohttp_client=session,
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        gemini_client = genai.Client(api_key="k", http_options=options)
        calls = {
            "sim:gpt-4o-mini": (
                openai_client.chat.completions.create,
                [
                    {
                        "model": "gpt-4o-mini",
                        "messages": [
                            {"role": "system", "content": SYSTEM},
                            {"role": "user", "content": prompt},
                        ],
                    }
                    for prompt in PROMPTS
                ],
            ),
            "sim:anthropic:claude-3-5-haiku-latest": (
                anthropic_client.messages.create,
                [
                    {
                        "model": "claude-3-5-haiku-latest",
                        "max_tokens": 200,
                        "system": SYSTEM,
                        "messages": [{"role": "user", "content": prompt}],
                    }
                    for prompt in PROMPTS
                ],
            ),
            "sim:gemini:gemini-2.0-flash": (
                gemini_client.aio.models.generate_content,
                [
                    {
                        "model": "gemini-2.0-flash",
                        "contents": prompt,
                        "config": types.GenerateContentConfig(system_instruction=SYSTEM),
                    }
                    for prompt in PROMPTS
                ],
            ),
        }
        for target, (fn, items) in calls.items():
            provider_id, model, writes = TARGETS[target]
            async with llmgather.Client(target, env={}) as client:
                results: list[Result] = []
                for item in items:  # one after the other: the first writes, the second reads
                    async for result in client.map_calls(fn, [item]):
                        results.append(result)
            first, second = results
            assert first.ok and second.ok, (first.error, second.error)
            _check_sdk_fields(target, first.value, second.value)
            assert first.usage is not None and second.usage is not None
            assert first.usage.cache_write_tokens == (SYSTEM_TOKENS if writes else 0)
            assert second.usage.cache_read_tokens == SYSTEM_TOKENS
            assert second.usage.input_tokens == first.usage.input_tokens - (
                estimate_prompt_tokens([{"role": "user", "content": PROMPTS[0]}])
                - estimate_prompt_tokens([{"role": "user", "content": PROMPTS[1]}])
            )
            for result in results:
                assert result.usage is not None
                assert result.cost == priced(provider_id, model, result.usage)
    await openai_client.close()
    await anthropic_client.close()


def _check_sdk_fields(target: str, first: Any, second: Any) -> None:
    """Each SDK's own typed view of the two answers' cache fields."""
    if target.startswith("sim:gpt"):
        assert second.usage.prompt_tokens_details.cached_tokens == SYSTEM_TOKENS
        assert second.usage.prompt_tokens > SYSTEM_TOKENS  # the cached part is inside it
    elif "anthropic" in target:
        assert first.usage.cache_creation_input_tokens == SYSTEM_TOKENS
        assert first.usage.cache_read_input_tokens == 0
        assert second.usage.cache_read_input_tokens == SYSTEM_TOKENS
        assert second.usage.input_tokens < 20  # Anthropic's: only what follows the cache
    else:
        assert first.usage_metadata.cached_content_token_count is None
        assert second.usage_metadata.cached_content_token_count == SYSTEM_TOKENS
        assert second.usage_metadata.prompt_token_count > SYSTEM_TOKENS
