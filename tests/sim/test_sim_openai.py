"""The simulator's OpenAI dialect, judged by the official `openai` SDK."""

from __future__ import annotations

import openai
import pytest
from openai import AsyncOpenAI

from llmgather.sim import answer_text
from tests.simfixtures import PROMPT, running

MESSAGES = [{"role": "user", "content": PROMPT}]


def client(base_url: str, api_key: str = "k") -> AsyncOpenAI:
    return AsyncOpenAI(base_url=base_url + "/v1", api_key=api_key, max_retries=0)


async def test_plain_completion_has_the_deterministic_text_and_usage() -> None:
    async with running(seed=3) as sim, client(sim.base_url) as oai:
        result = await oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    text, output_tokens, _ = answer_text(PROMPT, 3)
    assert result.object == "chat.completion"
    assert result.choices[0].message.content == text
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None
    assert result.usage.completion_tokens == output_tokens
    assert result.usage.total_tokens == result.usage.prompt_tokens + output_tokens
    assert result.model == "gpt-4o-mini"


async def test_max_tokens_truncates_with_finish_reason_length() -> None:
    async with running() as sim, client(sim.base_url) as oai:
        result = await oai.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=5
        )
    assert result.choices[0].finish_reason == "length"
    assert result.usage is not None and result.usage.completion_tokens == 5
    assert len((result.choices[0].message.content or "").split()) == 5


@pytest.mark.parametrize("include_usage", [False, True])
async def test_stream_concatenates_to_the_plain_text(include_usage: bool) -> None:
    async with running() as sim, client(sim.base_url) as oai:
        stream = await oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True} if include_usage else None,
        )
        chunks = [chunk async for chunk in stream]
    text, output_tokens, _ = answer_text(PROMPT, 0)
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces) == text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and all(f is None for f in finishes[:-1])
    if include_usage:
        assert chunks[-1].choices == []
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == output_tokens
    else:
        assert all(chunk.usage is None for chunk in chunks)


async def test_rate_limit_raises_rate_limit_error_with_retry_after() -> None:
    async with running(rpm=60) as sim, client(sim.base_url) as oai:
        ok = await oai.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
        assert ok.headers["x-ratelimit-limit-requests"] == "60"
        assert ok.headers["x-ratelimit-remaining-requests"] == "59"  # the one request is used
        with pytest.raises(openai.RateLimitError) as caught:
            await oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    error = caught.value
    assert error.status_code == 429
    assert int(error.response.headers["retry-after"]) == 1
    assert 0 < int(error.response.headers["retry-after-ms"]) <= 1000
    assert error.response.headers["x-ratelimit-reset-requests"].endswith("s")
    assert isinstance(error.body, dict)
    assert error.body["code"] == "rate_limit_exceeded"
    assert error.body["type"] == "requests"
    assert "requests per min (RPM): Limit 60" in error.body["message"]


async def test_wrong_key_is_authentication_error_without_echoing_the_key() -> None:
    secret, wrong = "sk-right-0123456789abcdef", "sk-wrong-9876543210fedcba"
    async with running(require_key=secret) as sim:
        async with client(sim.base_url, wrong) as oai:
            with pytest.raises(openai.AuthenticationError) as caught:
                await oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        async with client(sim.base_url, secret) as oai:
            accepted = await oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    body = caught.value.response.text
    assert caught.value.status_code == 401
    assert "invalid_api_key" in body
    assert wrong not in body and wrong[3:-2] not in body
    assert accepted.choices[0].message.content


async def test_injected_server_errors_map_to_sdk_errors() -> None:
    async with running(faults="503=1") as sim, client(sim.base_url) as oai:
        with pytest.raises(openai.InternalServerError) as caught:
            await oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.status_code == 503
    assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "server_error"
