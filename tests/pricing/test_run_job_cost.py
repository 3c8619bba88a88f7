"""`run_job` with a user's callable: a line is priced when the callable returns an official SDK's
answer with its usage (at the provider and model the answer names), and has a null cost when it
returns anything else, which cannot say who answered."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
import orjson
from anthropic import AsyncAnthropic
from openai import AsyncOpenAI

import llmgather
from llmgather.sim import EmbeddedSimulator, SimConfig
from tests.clihelpers import read_jsonl

SYSTEM = "You are a careful assistant who answers in one short paragraph. " * 80


def priced(provider_id: str, model: str, usage: dict[str, int]) -> Decimal:
    counted = genai_prices.Usage(
        input_tokens=usage["input_tokens"],
        output_tokens=usage["output_tokens"],
        cache_read_tokens=usage["cache_read_tokens"],
        cache_write_tokens=usage["cache_write_tokens"],
    )
    found = genai_prices.calc_price(counted, model, provider_id=provider_id).total_price
    return found.quantize(Decimal("1e-9"))


def write_lines(path: Path, lines: list[dict[str, Any]]) -> str:
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return str(path)


async def test_sdk_answers_are_priced_at_the_model_they_name(tmp_path: Path) -> None:
    with EmbeddedSimulator(SimConfig(latency_ms=0, seed=2)) as sim:
        openai = AsyncOpenAI(base_url=sim.base_url + "/v1", api_key="k", max_retries=0)
        anthropic = AsyncAnthropic(base_url=sim.base_url, api_key="k", max_retries=0)
        chats = write_lines(
            tmp_path / "chats.jsonl",
            [
                {
                    "id": f"c{i}",
                    "model": "gpt-4o-mini",
                    "messages": [
                        {"role": "system", "content": SYSTEM},
                        {"role": "user", "content": f"Question {i}?"},
                    ],
                    "max_tokens": 20,
                }
                for i in range(4)
            ],
        )
        messages = write_lines(
            tmp_path / "messages.jsonl",
            [
                {
                    "id": f"m{i}",
                    "model": "claude-3-5-haiku-latest",
                    "system": SYSTEM,
                    "messages": [{"role": "user", "content": f"Question {i}?"}],
                    "max_tokens": 20,
                }
                for i in range(4)
            ],
        )
        by_openai = await llmgather.run_job(
            openai.chat.completions.create, chats, str(tmp_path / "o.jsonl"), unpack=True,
            concurrency=1,
        )  # fmt: skip
        by_anthropic = await llmgather.run_job(
            anthropic.messages.create, messages, str(tmp_path / "a.jsonl"), unpack=True,
            concurrency=1,
        )  # fmt: skip
        await openai.close()
        await anthropic.close()
    for out, summary, provider_id, model in (
        ("o.jsonl", by_openai, "openai", "gpt-4o-mini"),
        ("a.jsonl", by_anthropic, "anthropic", "claude-3-5-haiku-latest"),
    ):
        lines = read_jsonl(tmp_path / out)
        assert [line["status"] for line in lines] == ["ok"] * 4
        # One after the other: the first writes the long system prompt to the cache, the rest
        # read it, and each is priced on its normalised usage.
        assert [line["usage"]["cache_read_tokens"] > 0 for line in lines] == [False] + [True] * 3
        for line in lines:
            assert line["cost_basis"] == "standard"
            assert Decimal(repr(line["cost"])) == priced(provider_id, model, line["usage"]) > 0
        assert Decimal(repr(summary.cost_usd)) == sum(Decimal(repr(line["cost"])) for line in lines)
        assert summary.unpriced == 0


async def test_a_value_that_names_no_model_has_a_null_cost(tmp_path: Path) -> None:
    docs = write_lines(tmp_path / "docs.jsonl", [{"id": "a", "text": "one"}])

    async def shout(doc: dict[str, Any]) -> dict[str, Any]:
        # Usage it can read, but no provider: never priced as a guess.
        return {"text": doc["text"].upper(), "usage": {"input_tokens": 3, "output_tokens": 1}}

    summary = await llmgather.run_job(shout, docs, str(tmp_path / "out.jsonl"))
    [line] = read_jsonl(tmp_path / "out.jsonl")
    assert line["status"] == "ok" and line["usage"]["input_tokens"] == 3
    assert line["cost"] is None and line["cost_basis"] is None
    assert (summary.cost_usd, summary.unpriced) == (0, 1)
