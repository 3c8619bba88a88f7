"""`llmgather serve --max-cost`: the service's hard budget, seen by an official SDK client."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import genai_prices
import openai
import pytest
from openai import AsyncOpenAI

from tests.service.test_service_metrics import scrape
from tests.servicefixtures import served_by_cli


async def test_serve_answers_until_its_budget_is_spent_then_402_for_good(tmp_path: Path) -> None:
    # gpt-4o-mini: each request reserves ~$0.00004 (64 tokens out), costs $0.000002-0.00004.
    async with served_by_cli(tmp_path, "--max-cost", "0.0003") as served:
        client = AsyncOpenAI(base_url=served.url + "/v1", api_key="client-key", max_retries=0)
        answered = 0
        async with client:
            with pytest.raises(openai.APIStatusError) as refused:
                for i in range(200):
                    await client.chat.completions.create(
                        model="gpt-4o-mini",
                        messages=[{"role": "user", "content": f"Question {i}?"}],
                        max_tokens=64,
                    )
                    answered += 1
            assert refused.value.status_code == 402
            assert "--max-cost" in refused.value.message
            with pytest.raises(openai.APIStatusError) as again:  # nothing more is sent
                await client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": "One more?"}],
                    max_tokens=1,
                )
            assert again.value.status_code == 402
    assert 7 <= answered < 200


def gpt_4o_cost(usage: openai.types.CompletionUsage) -> Decimal:
    priced = genai_prices.Usage(
        input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens
    )
    return genai_prices.calc_price(priced, "gpt-4o", provider_id="openai").total_price


async def test_serve_prices_the_model_the_client_names_and_refuses_one_without_a_price(
    tmp_path: Path,
) -> None:
    """`serve -m sim:gpt-4o-mini --max-cost 0.001`, asked for gpt-4o (17 times the price):
    reserved, settled and counted as gpt-4o; a model with no price is refused, unsent."""
    cap = Decimal("0.001")
    async with served_by_cli(tmp_path, "-m", "sim:gpt-4o-mini", "--max-cost", str(cap)) as served:
        client = AsyncOpenAI(base_url=served.url + "/v1", api_key="client-key", max_retries=0)
        spent = Decimal(0)
        answered = 0
        async with client:
            with pytest.raises(openai.BadRequestError) as unpriced:
                await client.chat.completions.create(
                    model="my-local-model", messages=[{"role": "user", "content": "Hi?"}]
                )
            assert "my-local-model" in unpriced.value.message
            assert "--prices" in unpriced.value.message
            with pytest.raises(openai.APIStatusError) as refused:
                for i in range(50):
                    answer = await client.chat.completions.create(
                        model="gpt-4o",
                        messages=[{"role": "user", "content": f"Question {i}?"}],
                        max_tokens=64,
                    )
                    assert answer.usage is not None
                    spent += gpt_4o_cost(answer.usage)
                    answered += 1
            assert refused.value.status_code == 402
            metrics = await scrape(served.url)
    # Each gpt-4o request reserves ~$0.0009 (64 tokens out at $10/M): one fits at a time, and
    # the cap lets out a few; priced as gpt-4o-mini it would have let out ~20.
    assert 1 <= answered <= 4
    assert metrics.value("llmgather_upstream_cost_usd_total", model="gpt-4o") == float(spent)
    assert metrics.labelled("llmgather_upstream_cost_usd_total") == [{"model": "gpt-4o"}]
    # What is left of the cap, in USD as the cap is given (not nano-dollars).
    remaining = metrics.value("llmgather_limiter_budget_remaining", budget="max_cost")
    assert remaining == pytest.approx(float(cap - spent), abs=1e-9)
    assert metrics.value("llmgather_limiter_limit", budget="max_cost", origin="set") == float(cap)
    # The unpriced request was never sent: only the gpt-4o ones went upstream.
    assert metrics.value("llmgather_upstream_sent_total") == answered
