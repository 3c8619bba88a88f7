"""The gateway's OpenAI route, with the official OpenAI SDK as its client and the simulator (or
a recording server) as its upstream, all over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web
from openai import AsyncOpenAI

from llmgather._config import Limits
from llmgather._retry import RetryPolicy
from llmgather.service import ServiceSettings
from tests.loopbackserver import serving_handler
from tests.servicefixtures import serving
from tests.simfixtures import running

CANARY = "sk-canary-0123456789abcdef"
MESSAGES = [{"role": "user", "content": "Why do some birds migrate?"}]


def upstream_settings(sim: Any, **settings: Any) -> ServiceSettings:
    return ServiceSettings(
        model="openai:gpt-4o-mini", base_url=sim.base_url + "/v1", api_key=CANARY, **settings
    )


def sdk(base_url: str, **options: Any) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=base_url + "/v1", api_key="client-key", max_retries=0, **options)


async def test_plain_streamed_and_models_through_the_sdk() -> None:
    async with (
        contextlib.AsyncExitStack() as stack,
        running(seed=1) as sim,
        serving(upstream_settings(sim)) as url,
    ):
        client = await stack.enter_async_context(sdk(url))
        answer = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=20
        )
        assert answer.choices[0].message.content
        assert answer.usage is not None and answer.usage.completion_tokens > 0

        pieces, usage = [], None
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            max_tokens=20,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            pieces += [c.delta.content or "" for c in chunk.choices]
            usage = chunk.usage or usage
        assert "".join(pieces).strip()
        assert usage is not None and usage.completion_tokens > 0

        models = await client.models.list()
        assert [m.id for m in models.data] == ["gpt-4o-mini"]


@contextlib.asynccontextmanager
async def recording_upstream(answer: dict[str, Any]) -> AsyncIterator[tuple[str, list[Any]]]:
    """An OpenAI-shaped server on loopback that records each body and answers `answer`."""
    received: list[Any] = []

    async def completions(request: web.Request) -> web.Response:
        received.append(orjson.loads(await request.read()))
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async with serving_handler(completions, method="POST", path="/v1/chat/completions") as url:
        yield url + "/v1", received


TOOL_ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": i,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{i}",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            "logprobs": {"content": []},
            "finish_reason": "tool_calls",
        }
        for i in range(2)
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


async def test_a_relayed_request_and_answer_keep_every_field() -> None:
    async with (
        recording_upstream(TOOL_ANSWER) as (upstream, received),
        serving(
            ServiceSettings(model="openai:gpt-4o-mini", base_url=upstream, api_key=CANARY)
        ) as url,
    ):
        async with sdk(url) as client:
            answer = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                tools=TOOLS,  # type: ignore[arg-type]
                tool_choice="required",
                response_format={"type": "json_object"},
                logprobs=True,
                n=2,
            )
    assert received[0]["tools"] == TOOLS
    assert received[0]["response_format"] == {"type": "json_object"}
    assert received[0]["n"] == 2 and received[0]["logprobs"] is True
    assert len(answer.choices) == 2
    call = answer.choices[1].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert orjson.loads(call.function.arguments) == {"city": "Oslo"}  # type: ignore[union-attr]


async def test_an_upstream_400_stays_a_400() -> None:
    async with running(seed=1) as sim, serving(upstream_settings(sim)) as url:
        with pytest.raises(openai.BadRequestError) as raised:
            async with sdk(url) as client:
                await client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages="not a list",  # type: ignore[arg-type]
                )
    assert raised.value.status_code == 400


async def test_a_refused_upstream_key_is_a_502_that_never_shows_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with (
        running(seed=1, require_key="the-right-key") as sim,
        # No recheck of the key within the test: what is received is the clients' alone.
        serving(upstream_settings(sim, key_recheck_s=600)) as url,
    ):
        async with sdk(url) as client:
            with pytest.raises(openai.InternalServerError) as raised:
                await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            # Once refused, the key is not tried again: the next request fails unsent.
            with pytest.raises(openai.InternalServerError):
                await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert sim.handler.stats.received == 1
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/readyz") as ready:
                assert ready.status == 503  # until the operator fixes the key
                assert CANARY not in await ready.text()
            async with session.get(url + "/metrics") as metrics:
                assert CANARY not in await metrics.text()
    assert raised.value.status_code == 502
    assert "refused the API key" in raised.value.message
    assert CANARY not in raised.value.response.text
    assert CANARY not in caplog.text


async def test_a_full_queue_answers_429_with_an_honest_retry_after() -> None:
    # 60 requests per minute: one a second. With a 2 s queue, the third request waiting
    # would wait past it, so it is refused at once; the SDK reports a rate-limit error.
    settings = upstream_settings
    async with (
        running(seed=1) as sim,
        serving(settings(sim, limits=Limits(rpm=60), queue_timeout_s=2.0)) as url,
    ):
        async with sdk(url) as client:

            async def one() -> Any:
                return await client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, max_tokens=5
                )

            outcomes = await asyncio.gather(*(one() for _ in range(8)), return_exceptions=True)
        assert sim.handler.stats.by_status.get(429, 0) == 0
    refused = [o for o in outcomes if isinstance(o, openai.RateLimitError)]
    answered = [o for o in outcomes if not isinstance(o, BaseException)]
    assert refused and answered
    assert len(refused) + len(answered) == 8
    for error in refused:
        assert error.status_code == 429
        # Honest: at one a second, 8 requests have all been sent within 8 s.
        assert 1 <= float(error.response.headers["retry-after"]) <= 8
        assert "queue" in error.message


async def test_a_client_that_leaves_while_queued_is_never_sent() -> None:
    # One request at a time to a slow upstream: the second waits in the queue, and its
    # client gives up before the first is answered.
    async with (
        running(seed=1, latency_ms=1500, latency_jitter=0) as sim,
        serving(upstream_settings(sim, limits=Limits(concurrency=1))) as url,
    ):
        body = orjson.dumps({"model": "gpt-4o-mini", "messages": MESSAGES})
        async with aiohttp.ClientSession() as session:
            first = asyncio.create_task(
                session.post(url + "/v1/chat/completions", data=body, headers=_json())
            )
            await asyncio.sleep(0.3)
            with pytest.raises(asyncio.TimeoutError):
                await session.post(
                    url + "/v1/chat/completions",
                    data=body,
                    headers=_json(),
                    timeout=aiohttp.ClientTimeout(total=0.3),
                )
            response = await first
            assert response.status == 200
            response.release()
            await asyncio.sleep(0.3)  # were it sent after the first, it would be by now
        assert sim.handler.stats.received == 1


@pytest.mark.quiet
async def test_many_clients_share_the_upstream_limit_without_a_429() -> None:
    # 40 clients, 120 requests, under a shared 3,000 RPM that the upstream enforces too.
    async with (
        running(seed=1, rpm=3000) as sim,
        serving(upstream_settings(sim, limits=Limits(rpm=3000))) as url,
    ):

        async def three(client: AsyncOpenAI) -> list[int]:
            tokens = []
            for _ in range(3):
                answer = await client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, max_tokens=5
                )
                assert answer.usage is not None
                tokens.append(answer.usage.completion_tokens)
            return tokens

        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(sdk(url)) for _ in range(40)]
            results = await asyncio.gather(*(three(c) for c in clients))

        assert sim.handler.stats.by_status.get(429, 0) == 0
        assert sim.handler.stats.received == 120
    assert sum(len(r) for r in results) == 120


def _json() -> dict[str, str]:
    return {"content-type": "application/json"}


async def test_requests_in_flight_do_not_fill_the_queue() -> None:
    # 600 RPM (10 a second), a queue bound of 0.15 s, answers taking 0.3 s: requests arriving
    # at 6 a second never wait for the limit, though a few are always in flight.
    async with (
        running(seed=1, latency_ms=300, latency_jitter=0) as sim,
        serving(upstream_settings(sim, limits=Limits(rpm=600), queue_timeout_s=0.15)) as url,
        sdk(url) as client,
    ):

        async def one(delay: float) -> Any:
            await asyncio.sleep(delay)
            return await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, max_tokens=5
            )

        outcomes = await asyncio.gather(*(one(i / 6) for i in range(12)), return_exceptions=True)
    assert [o for o in outcomes if isinstance(o, BaseException)] == []


async def test_a_client_that_leaves_mid_stream_stops_the_upstream_stream() -> None:
    # A slow stream, one request at a time: once the client hangs up, the upstream's stream
    # is closed (the simulator sees nothing in flight) and the next request goes through.
    async with (
        running(seed=1, latency_ms=2_000, latency_jitter=0) as slow,
        serving(upstream_settings(slow, limits=Limits(concurrency=1))) as url,
    ):
        body = orjson.dumps(
            {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 200, "stream": True}
        )
        async with aiohttp.ClientSession() as session:
            response = await session.post(url + "/v1/chat/completions", data=body, headers=_json())
            assert response.status == 200
            await response.content.readline()  # the first event has arrived
            assert slow.handler.stats.in_flight == 1
            response.close()  # the client hangs up mid-stream
            for _ in range(100):
                if slow.handler.stats.in_flight == 0:
                    break
                await asyncio.sleep(0.05)
            assert slow.handler.stats.in_flight == 0
            probe = orjson.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 1})
            async with session.get(url + "/metrics") as metrics:
                assert "llmgather_upstream_in_flight 0.0" in await metrics.text()
            # The one slot is free again: the next request is sent and answered.
            assert slow.handler.stats.received == 1
            async with session.post(
                url + "/v1/chat/completions", data=probe, headers=_json()
            ) as answer:
                assert answer.status == 200
            assert slow.handler.stats.received == 2


# -- What the gateway relays: only what parses, only what is whole -------------------------

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01)


async def test_a_malformed_200_is_retried_never_relayed() -> None:
    # The README's way: `llmgather serve --model openai:x --base-url …` in front of a server
    # whose every 200 is cut-off JSON. The SDK gets a 502 it raises as its own error, after
    # as many attempts as `run` makes, never a body it cannot parse; /metrics counts no 200.
    async with (
        running(faults="malformed=1", seed=1) as sim,
        serving(upstream_settings(sim, retry=FAST_RETRY)) as url,
        sdk(url) as client,
    ):
        with pytest.raises(openai.InternalServerError) as raised:
            await client.chat.completions.create(model="x", messages=MESSAGES, max_tokens=20)
        assert sim.handler.stats.received == 3
        async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as metrics:
            counted = await metrics.text()
    assert raised.value.status_code == 502
    assert "not a JSON object" in raised.value.message
    assert 'route="/v1/chat/completions",status="502"' in counted
    assert 'route="/v1/chat/completions",status="200"' not in counted


async def test_a_json_answer_of_an_unmodelled_shape_is_still_relayed() -> None:
    # What llmgather does not read (no choices at all, fields it does not know) is the
    # client's to read: relayed as it came, sent once.
    answer = {"id": "x-1", "object": "chat.completion", "choices": [], "novel": {"a": [1]}}
    async with (
        recording_upstream(answer) as (upstream, received),
        serving(ServiceSettings(model="openai:x", base_url=upstream, api_key=CANARY)) as url,
        aiohttp.ClientSession() as session,
    ):
        body = orjson.dumps({"model": "x", "messages": MESSAGES})
        async with session.post(url + "/v1/chat/completions", data=body, headers=_json()) as got:
            assert got.status == 200
            assert orjson.loads(await got.read()) == answer
    assert len(received) == 1


@contextlib.asynccontextmanager
async def scripted_stream_upstream(
    *streams: list[dict[str, Any] | str | bytes],
) -> AsyncIterator[tuple[str, list[Any]]]:
    """An OpenAI-shaped server on loopback whose n-th streamed answer is `streams[n]`: each
    event a chunk (a dict), a raw `data:` payload ("[DONE]") or raw bytes, sent as it comes."""
    received: list[Any] = []

    async def completions(request: web.Request) -> web.StreamResponse:
        received.append(orjson.loads(await request.read()))
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in streams[len(received) - 1]:
            if isinstance(event, bytes):
                await response.write(event)
                continue
            data = event if isinstance(event, str) else orjson.dumps(event).decode()
            await response.write(f"data: {data}\n\n".encode())
        await response.write_eof()
        return response

    async with serving_handler(completions, method="POST", path="/v1/chat/completions") as url:
        yield url + "/v1", received


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {"object": "chat.completion.chunk", "created": 1, "model": "x", "choices": [choice]}


async def test_a_stream_ended_by_done_before_any_text_is_retried_unseen() -> None:
    # llama-cpp-python's server, interrupted by a new request, ends the stream in progress
    # with `data: [DONE]` and no finish_reason. Here that happens right after the role chunk:
    # nothing of the answer has reached the client, so the gateway asks again.
    role = _chunk({"role": "assistant", "content": ""})
    whole = [role, _chunk({"content": "Hello"}), _chunk({}, "stop"), "[DONE]"]
    async with (
        scripted_stream_upstream([role, "[DONE]"], whole) as (upstream, received),
        serving(ServiceSettings(model="openai:x", base_url=upstream, retry=FAST_RETRY)) as url,
        sdk(url) as client,
    ):
        stream = await client.chat.completions.create(model="x", messages=MESSAGES, stream=True)
        chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len(received) == 2


async def test_a_stream_ended_by_done_after_its_text_fails_where_the_sdk_reads() -> None:
    # `done_early`: some text, then `data: [DONE]` with no finish_reason. The text has reached
    # the client, so no retry: the error event comes before any [DONE] (after it, no SDK
    # reads), and the SDK raises instead of taking the truncated answer for a whole one.
    async with (
        running(faults="done_early=1", seed=1, latency_ms=1000, latency_jitter=0) as sim,
        serving(upstream_settings(sim, retry=FAST_RETRY)) as url,
        sdk(url) as client,
    ):
        pieces: list[str] = []
        with pytest.raises(openai.APIError) as raised:
            stream = await client.chat.completions.create(
                model="x", messages=MESSAGES, max_tokens=40, stream=True
            )
            async for chunk in stream:
                pieces += [c.delta.content or "" for c in chunk.choices]
        assert sim.handler.stats.received == 1
    assert "".join(pieces).strip()
    assert "finish_reason" in raised.value.message


async def test_a_stream_ended_by_done_as_a_whole_is_retried_then_refused() -> None:
    # At no latency the early [DONE] comes with the text: none of it went out, so each
    # attempt is retried unseen, and the client gets a plain 502, never a truncated stream.
    async with (
        running(faults="done_early=1", seed=1) as sim,
        serving(upstream_settings(sim, retry=FAST_RETRY)) as url,
        sdk(url) as client,
    ):
        with pytest.raises(openai.InternalServerError) as raised:
            await client.chat.completions.create(model="x", messages=MESSAGES, stream=True)
        assert sim.handler.stats.received == 3
    assert raised.value.status_code == 502


async def test_a_stream_cut_inside_an_event_ends_with_a_whole_error_event() -> None:
    # The upstream dies halfway through an event, after some text: only whole events went
    # out, so the error that follows is an event the SDK reads, not a garbled line.
    role = _chunk({"role": "assistant", "content": ""})
    half = b'data: {"object": "chat.completion.chunk", "choices": [{"index": 0, "del'
    async with (
        scripted_stream_upstream([role, _chunk({"content": "Hello"}), half]) as (upstream, _),
        serving(ServiceSettings(model="openai:x", base_url=upstream, retry=FAST_RETRY)) as url,
        sdk(url) as client,
    ):
        pieces: list[str] = []
        with pytest.raises(openai.APIError) as raised:
            stream = await client.chat.completions.create(model="x", messages=MESSAGES, stream=True)
            async for chunk in stream:
                pieces += [c.delta.content or "" for c in chunk.choices]
    assert "".join(pieces) == "Hello"
    assert "upstream" in raised.value.message
