"""`llmgather serve --max-cost`: the service's hard budget, seen by an official SDK client."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from openai import AsyncOpenAI

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
