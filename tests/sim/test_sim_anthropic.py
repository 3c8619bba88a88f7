"""The simulator's Anthropic dialect, judged by the official `anthropic` SDK."""

from __future__ import annotations

import anthropic
import pytest
from anthropic import AsyncAnthropic

from llmgather.sim import answer_text
from tests.simfixtures import ANTHROPIC, PROMPT, post, running

MESSAGES = [{"role": "user", "content": PROMPT}]


def client(base_url: str, api_key: str = "k") -> AsyncAnthropic:
    return AsyncAnthropic(base_url=base_url, api_key=api_key, max_retries=0)


async def test_plain_message_has_the_deterministic_text_and_usage() -> None:
    async with running(seed=5) as sim, client(sim.base_url) as claude:
        message = await claude.messages.create(
            model="claude-sim", max_tokens=256, system="Be brief.", messages=MESSAGES
        )
    text, output_tokens, _ = answer_text("Be brief.\n" + PROMPT, 5)
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.content[0].type == "text"
    assert message.content[0].text == text
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == output_tokens
    assert message.usage.input_tokens > 0


async def test_stream_text_and_final_message() -> None:
    async with running() as sim, client(sim.base_url) as claude:
        async with claude.messages.stream(
            model="claude-sim", max_tokens=7, messages=MESSAGES
        ) as stream:
            streamed = "".join([piece async for piece in stream.text_stream])
            final = await stream.get_final_message()
    text, output_tokens, by_length = answer_text(PROMPT, 0, 7)
    assert by_length and output_tokens == 7
    assert streamed == text == final.content[0].text
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 7


async def test_rate_limit_raises_rate_limit_error_with_headers() -> None:
    async with running(rpm=60, tpm=100_000) as sim, client(sim.base_url) as claude:
        ok = await claude.messages.with_raw_response.create(
            model="claude-sim", max_tokens=100, messages=MESSAGES
        )
        assert ok.headers["anthropic-ratelimit-requests-limit"] == "60"
        assert ok.headers["anthropic-ratelimit-tokens-limit"] == "100000"
        assert ok.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
        assert ok.headers["request-id"].startswith("req_")
        with pytest.raises(anthropic.RateLimitError) as caught:
            await claude.messages.create(model="claude-sim", max_tokens=100, messages=MESSAGES)
    error = caught.value
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "1"
    assert isinstance(error.body, dict) and error.body["error"]["type"] == "rate_limit_error"


async def test_overloaded_529() -> None:
    async with running(faults="529=1") as sim, client(sim.base_url) as claude:
        with pytest.raises(anthropic.InternalServerError) as caught:
            await claude.messages.create(model="claude-sim", max_tokens=10, messages=MESSAGES)
    assert caught.value.status_code == 529
    assert isinstance(caught.value, anthropic.OverloadedError)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "overloaded_error"


async def test_wrong_key_is_authentication_error() -> None:
    async with running(require_key="sk-ant-right-key-000") as sim:
        async with client(sim.base_url, "sk-ant-wrong-key-111") as claude:
            with pytest.raises(anthropic.AuthenticationError) as caught:
                await claude.messages.create(model="claude-sim", max_tokens=10, messages=MESSAGES)
    assert "sk-ant-wrong-key-111" not in caught.value.response.text


async def test_missing_max_tokens_is_invalid_request() -> None:
    import aiohttp
    import orjson

    async with running() as sim, aiohttp.ClientSession() as session:
        body = {"model": "claude-sim", "messages": MESSAGES}
        status, _, raw = await post(session, sim, ANTHROPIC, body)
        no_version = {"model": "claude-sim", "max_tokens": 5, "messages": MESSAGES}
        status2, _, raw2 = await post(
            session, sim, ANTHROPIC, no_version, headers={"anthropic-version": ""}
        )
    assert status == 400
    error = orjson.loads(raw)
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in error["error"]["message"]
    assert status2 == 200  # an empty header still names a version; only a missing one fails
    assert raw2
