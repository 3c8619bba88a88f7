"""Answers of an unexpected shape are transient faults, retried, never permanent failures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from aiohttp import web

import llmgather
from llmgather import MalformedResponseError, RetryPolicy, ServerError

GOOD = {"choices": [{"message": {"content": "fine"}, "finish_reason": "stop"}]}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ODD_BODIES: list[Any] = [
    {"choices": "x"},
    {"choices": [{"message": {"content": "a"}}], "usage": {"prompt_tokens": "abc"}},
    {"choices": [None]},
]
ODD_CHUNKS = [b'data: {"choices": [{"delta": [1]}]}\n\n']
GOOD_CHUNKS = [
    b'data: {"choices": [{"index": 0, "delta": {"content": "fi"}}]}\n\n',
    b'data: {"error": null, "choices": [{"index": 1, "delta": {"content": "other"}}]}\n\n',
    b'data: {"choices": [{"index": 0, "delta": {"content": "ne"}, "finish_reason": "stop"}]}\n\n',
    b"data: [DONE]\n\n",
]


@asynccontextmanager
async def serving(chat: Handler) -> AsyncIterator[str]:
    """An OpenAI-like chat endpoint on a free 127.0.0.1 port; yields its base URL."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


@pytest.fixture
async def odd_server() -> AsyncIterator[tuple[str, list[int]]]:
    """An OpenAI-like server whose first answers have odd shapes, then good ones."""
    calls = [0]

    async def chat(request: web.Request) -> web.StreamResponse:
        calls[0] += 1
        payload = await request.json()
        n = calls[0]
        if payload.get("stream"):
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            for chunk in ODD_CHUNKS if n == 1 else GOOD_CHUNKS:
                await response.write(chunk)
            return response
        if n <= len(ODD_BODIES):
            return web.json_response(ODD_BODIES[n - 1])
        if payload["messages"][0]["content"] == "bad error body":
            return web.Response(status=503, body=orjson.dumps({"error": ["not", "an", "object"]}))
        return web.json_response(GOOD)

    async with serving(chat) as base_url:
        yield base_url, calls


def client(base_url: str, **kwargs: Any) -> llmgather.Client:
    fast = RetryPolicy(max_attempts=5, base_delay=0.001, max_delay=0.01)
    return llmgather.Client("openai:m", base_url=base_url, api_key="k", retry=fast, **kwargs)


async def test_plain_answers_of_odd_shapes_are_retried(odd_server: tuple[str, list[int]]) -> None:
    base_url, calls = odd_server
    async with client(base_url, concurrency=1) as llm:
        (result,) = await llm.gather(["hi"])
    assert result.ok and result.text == "fine"
    assert result.attempts == len(ODD_BODIES) + 1 == calls[0]


async def test_stream_events_of_odd_shapes_are_retried_and_only_the_first_choice_counts(
    odd_server: tuple[str, list[int]],
) -> None:
    base_url, calls = odd_server
    async with client(base_url, stream=True) as llm:
        (result,) = await llm.gather(["hi"])
    assert result.ok and result.text == "fine" and result.attempts == 2 == calls[0]


async def test_an_error_body_of_odd_shape_keeps_its_status_class(
    odd_server: tuple[str, list[int]],
) -> None:
    base_url, calls = odd_server
    calls[0] = len(ODD_BODIES)
    async with client(base_url) as llm:
        (result,) = await llm.gather(["bad error body"])
    assert not result.ok and result.error is not None
    assert result.error.type == ServerError.__name__ and result.error.status_code == 503
    assert result.attempts == 5
    assert MalformedResponseError.__name__ != result.error.type


@pytest.fixture
async def verdict_server() -> AsyncIterator[tuple[str, list[int]]]:
    """Answers a 503 the server says not to retry, or a 400 it says to retry, then a 200."""
    calls = [0]

    async def chat(request: web.Request) -> web.Response:
        calls[0] += 1
        prompt = (await request.json())["messages"][0]["content"]
        if prompt == "do not retry":
            return web.Response(status=503, headers={"x-should-retry": "false"}, body=b"{}")
        if prompt == "retry" and calls[0] == 1:
            return web.Response(status=400, headers={"x-should-retry": "true"}, body=b"{}")
        return web.json_response(GOOD)

    async with serving(chat) as base_url:
        yield base_url, calls


@pytest.mark.parametrize(
    ("prompt", "ok", "attempts"), [("do not retry", False, 1), ("retry", True, 2)]
)
async def test_the_servers_x_should_retry_wins_over_the_status(
    verdict_server: tuple[str, list[int]], prompt: str, ok: bool, attempts: int
) -> None:
    base_url, calls = verdict_server
    async with client(base_url) as llm:
        (result,) = await llm.gather([prompt])
    assert (result.ok, result.attempts, calls[0]) == (ok, attempts, attempts)
    assert result.ok or (result.error is not None and result.error.type == "ServerError")
