"""The transport seam: a client answered by a function with no sockets (MockTransport), and the
default transport's handling of pooled connections a server has closed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson
import pytest

from llmgather import AuthenticationError, Client, RetryPolicy
from llmgather.transport import (
    AiohttpTransport,
    Http11Transport,
    HttpRequest,
    HttpResponse,
    MockTransport,
    Transport,
)

NO_WAIT = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.001)
JSON = {"content-type": "application/json"}


def openai_answer(text: str, *, headers: dict[str, str] | None = None) -> HttpResponse:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
    return HttpResponse(200, {**JSON, **(headers or {})}, orjson.dumps(body))


def mock_client(transport: MockTransport, **options: object) -> Client:
    return Client("openai:gpt-4o-mini", api_key="sk-test", transport=transport, **options)  # type: ignore[arg-type]


def test_every_transport_satisfies_the_protocol() -> None:
    assert isinstance(Http11Transport(), Transport)
    assert isinstance(AiohttpTransport(), Transport)
    assert isinstance(MockTransport(lambda request: openai_answer("x")), Transport)


async def test_a_client_answered_by_a_function_sends_the_providers_request() -> None:
    def handler(request: HttpRequest) -> HttpResponse:
        prompt = orjson.loads(request.body)["messages"][-1]["content"]
        return openai_answer(f"echo: {prompt}")

    transport = MockTransport(handler)
    async with mock_client(transport) as client:
        assert await client.complete("hello") == "echo: hello"
        results = await client.gather(["a", "b", "c"])
    assert [r.text for r in results] == ["echo: a", "echo: b", "echo: c"]
    first = transport.requests[0]
    assert first.url == "https://api.openai.com/v1/chat/completions"
    assert first.headers["authorization"] == "Bearer sk-test"
    assert "sk-test" not in repr(first)


async def test_a_429_is_retried_and_a_401_is_not() -> None:
    answers = iter(
        [
            HttpResponse(429, {**JSON, "retry-after-ms": "1"}, b'{"error": {"message": "slow"}}'),
            openai_answer("finally"),
        ]
    )
    transport = MockTransport(lambda request: next(answers))
    async with mock_client(transport, retry=NO_WAIT) as client:
        assert await client.complete("x") == "finally"
    assert len(transport.requests) == 2

    refused = MockTransport(
        lambda request: HttpResponse(401, JSON, b'{"error": {"message": "bad key"}}')
    )
    async with mock_client(refused, retry=NO_WAIT) as client:
        with pytest.raises(AuthenticationError):
            await client.complete("x")
    assert len(refused.requests) == 1


async def test_the_servers_retry_verdict_overrides_the_status() -> None:
    transport = MockTransport(
        lambda request: HttpResponse(
            500, {**JSON, "x-should-retry": "false"}, b'{"error": {"message": "no"}}'
        )
    )
    async with mock_client(transport, retry=NO_WAIT) as client:
        [result] = await client.gather(["x"])
    assert result.status == "error" and result.attempts == 1
    assert len(transport.requests) == 1


async def test_announced_limits_reach_the_limiter_from_the_answer() -> None:
    headers = {"x-ratelimit-limit-requests": "600", "x-ratelimit-limit-tokens": "90000"}
    transport = MockTransport(lambda request: openai_answer("ok", headers=headers))
    async with mock_client(transport) as client:
        await client.complete("x")
        learned = client.limiter.statistics().learned
    assert learned == {"rpm": 600.0, "tpm": 90000.0}


async def test_a_streamed_answer_through_the_mock_transport() -> None:
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        for piece in ("Hel", "lo")
    ]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    body = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    transport = MockTransport(
        lambda request: HttpResponse(200, {"content-type": "text/event-stream"}, body),
        chunk_size=7,
    )
    async with mock_client(transport) as client:
        pieces = [piece async for piece in client.stream("x")]
    assert "".join(pieces) == "Hello"
    assert orjson.loads(transport.requests[0].body)["stream"] is True


# -- the default transport and connections a server has closed ------------------------------


@contextlib.asynccontextmanager
async def one_answer_per_connection() -> AsyncIterator[tuple[str, list[int]]]:
    """A server that says keep-alive but, like llama-server after a stream, will not serve a
    second request on a connection: it closes it unanswered. Yields its URL and a list of
    [connections, requests answered, requests refused]."""
    counts = [0, 0, 0]
    answer = openai_answer("fine").body

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counts[0] += 1
        served = False
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                if served:
                    counts[2] += 1
                    break  # close without answering
                served = True
                counts[1] += 1
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Connection: keep-alive\r\nContent-Length: %d\r\n\r\n" % len(answer) + answer
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1", counts
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("transport", [Http11Transport, AiohttpTransport])
async def test_a_dead_pooled_connection_is_replaced_without_spending_an_attempt(
    transport: type[Http11Transport] | type[AiohttpTransport],
) -> None:
    given = transport(max_connections=1)
    async with one_answer_per_connection() as (url, counts):
        async with Client(
            "openai:local",
            base_url=url,
            concurrency=1,
            retry=RetryPolicy(max_attempts=1),
            transport=given,
        ) as client:
            results = await client.gather([f"prompt {i}" for i in range(20)])
        await given.aclose()
    assert [r.status for r in results] == ["ok"] * 20
    assert all(r.attempts == 1 for r in results)
    assert counts[1] == 20  # every request answered once
    assert counts[2] >= 1  # and the dead connections were met, not avoided by luck


async def test_a_server_that_never_answers_is_reported_as_such() -> None:
    heads = []

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    try:
        async with Client("openai:local", base_url=url, retry=NO_WAIT) as client:
            [result] = await client.gather(["x"])
    finally:
        server.close()
        await server.wait_closed()
    assert result.status == "error" and result.error is not None
    assert result.error.type == "APIConnectionError"
    assert "closed the connection without answering" in result.error.message
    # Each of the 3 attempts went out once: a new connection closed unanswered may have been
    # read, so only the engine's retries (counted) send it again, never a silent resend.
    assert result.attempts == 3 and len(heads) == 3
