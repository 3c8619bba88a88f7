"""`llmgather serve --cache` against a simulator that counts what it receives: the official
openai SDK's chat completion, asked twice, reaches the upstream once and gets the same answer
back; `/generate` likewise; a streamed call always goes upstream; a Redis cache that stopped
only misses."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from openai import AsyncOpenAI

from llmgather.bench.redis_server import RedisServer
from tests.servicefixtures import served_by_cli
from tests.simfixtures import running


def upstream(base_url: str, *extra: str) -> list[str]:
    return ["--base-url", base_url + "/v1", "--api-key", "k", "--model", "gpt-4o-mini", *extra]


async def test_the_openai_sdk_is_answered_from_the_cache(tmp_path: Path) -> None:
    async with (
        running(seed=1) as sim,
        served_by_cli(tmp_path, *upstream(sim.base_url), "--cache") as served,
        AsyncOpenAI(base_url=served.url + "/v1", api_key="x", max_retries=0) as client,
    ):
        ask = {"model": "gpt-4o-mini", "temperature": 0, "max_tokens": 100}
        messages = [{"role": "user", "content": "Why do birds migrate?"}]
        first = await client.chat.completions.create(messages=messages, **ask)  # type: ignore[call-overload]
        second = await client.chat.completions.create(messages=messages, **ask)  # type: ignore[call-overload]
        assert sim.handler.stats.received == 1
        assert second.choices[0].message.content == first.choices[0].message.content
        assert second.usage == first.usage and first.choices[0].finish_reason == "stop"
        # Sampled (no temperature): sent every time, as without a cache.
        for _ in range(2):
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
            )
        assert sim.handler.stats.received == 3
        streamed = await client.chat.completions.create(messages=messages, stream=True, **ask)  # type: ignore[call-overload]
        text = "".join([c.choices[0].delta.content or "" async for c in streamed if c.choices])
        assert text == first.choices[0].message.content
        assert sim.handler.stats.received == 4
        async with aiohttp.ClientSession() as http:
            for _ in range(2):
                async with http.post(
                    served.url + "/generate",
                    json={"prompt": "What is rain?", "temperature": 0, "max_tokens": 50},
                ) as answer:
                    assert answer.status == 200, await answer.text()
                    assert (await answer.json())["text"]
        assert sim.handler.stats.received == 5
    assert (tmp_path / "jobs" / "llmgather-cache.sqlite").is_file()


async def test_a_gateway_whose_redis_cache_stopped_answers_from_upstream(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as redis:
        async with (
            running(seed=1) as sim,
            served_by_cli(tmp_path, *upstream(sim.base_url), f"--cache={redis.url}") as served,
            AsyncOpenAI(base_url=served.url + "/v1", api_key="x", max_retries=0) as client,
        ):
            ask = {"model": "gpt-4o-mini", "temperature": 0, "max_tokens": 100}
            messages = [{"role": "user", "content": "Why do birds migrate?"}]
            first = await client.chat.completions.create(messages=messages, **ask)  # type: ignore[call-overload]
            redis.stop()
            second = await client.chat.completions.create(messages=messages, **ask)  # type: ignore[call-overload]
            third = await client.chat.completions.create(messages=messages, **ask)  # type: ignore[call-overload]
            assert sim.handler.stats.received == 3  # the lookups missed: sent upstream
            assert {second.choices[0].message.content, third.choices[0].message.content} == {
                first.choices[0].message.content
            }
