"""No secret, whole or in part, reaches an error message: not the API key, not a password or a
query value of the base URL, wherever the server echoes it and however long its body is."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import pytest
from aiohttp import web

import llmgather
from llmgather import APIError, Client, RetryPolicy
from llmgather.providers._common import SNIPPET_CHARS
from llmgather.providers.anthropic import AnthropicProvider
from llmgather.providers.base import Provider
from llmgather.providers.gemini import GeminiProvider
from llmgather.providers.openai import OpenAIProvider

KEY = "sk-proj-Zq8vW2mN4xR7tY1uI5oP9aS3dF6gH0jK"
# How each provider's key travels, as a proxy that dumps the request's headers shows it.
ECHOED = {
    "openai": f"authorization: Bearer {KEY}",
    "gemini": f"x-goog-api-key: {KEY}",
    "anthropic": f"x-api-key: {KEY}",
}
FACTORIES = {"openai": OpenAIProvider, "gemini": GeminiProvider, "anthropic": AnthropicProvider}


def fragments(secret: str, size: int = 4) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def assert_no_part_of(secret: str, text: str) -> None:
    leaked = [piece for piece in fragments(secret) if piece in text]
    assert not leaked, f"{leaked[0]!r} of the secret is in {text!r}"


def straddling(echo: str, secret: str, cut: int) -> bytes:
    """A non-JSON body (a proxy's page) where `secret` starts 8 characters before `cut`."""
    offset = echo.index(secret)
    filler = "x" * (cut - 8 - offset)
    return f"{filler}{echo}\n<p>upstream error</p>".encode()


@pytest.mark.parametrize("name", list(FACTORIES))
@pytest.mark.parametrize("status", [400, 401, 500, 502])
@pytest.mark.parametrize("cut", [SNIPPET_CHARS, SNIPPET_CHARS + 1, SNIPPET_CHARS - 10])
def test_a_key_straddling_the_quoted_part_of_a_body_is_hidden(
    name: str, status: int, cut: int
) -> None:
    provider: Provider = FACTORIES[name](api_key=KEY)
    body = straddling(ECHOED[name], KEY, cut)
    error = provider.parse_error(status, {}, body)
    assert isinstance(error, APIError)
    for text in (error.message, str(error), repr(error)):
        assert_no_part_of(KEY, text)
    assert error.message.startswith("unexpected answer: xxx")


@pytest.mark.parametrize("name", list(FACTORIES))
def test_the_url_credentials_and_query_values_are_hidden_too(name: str) -> None:
    url = "http://proxy-user:hunter2hunter2@127.0.0.1:9/v1?key=query-secret-value"
    provider: Provider = FACTORIES[name](api_key=KEY, base_url=url)
    body = f"502 from upstream for {url} with {ECHOED[name]}".encode()
    error = provider.parse_error(502, {}, body)
    assert isinstance(error, APIError)
    for secret in (KEY, "hunter2hunter2", "query-secret-value"):
        assert_no_part_of(secret, error.message)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_a_long_json_message_is_redacted_before_it_is_cut(name: str) -> None:
    message = "y" * 495 + f" key {KEY} was refused"
    body = {
        "openai": {"error": {"message": message, "type": "invalid_request_error"}},
        "gemini": {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}},
        "anthropic": {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": message},
        },
    }[name]
    error = FACTORIES[name](api_key=KEY).parse_error(400, {}, orjson.dumps(body))
    assert isinstance(error, APIError)
    assert_no_part_of(KEY, error.message)


@asynccontextmanager
async def echoing_proxy() -> AsyncIterator[str]:
    """A proxy that answers 502 with an HTML page quoting the request's headers, the key's
    header first, placed so the key straddles the part of the body a message quotes."""

    async def answer(request: web.Request) -> web.Response:
        auth = f"authorization: {request.headers.get('authorization')}"
        rest = "\n".join(f"{name}: {value}" for name, value in request.headers.items())
        head = "<html><body><h1>502 Bad Gateway</h1><pre>"
        pad = "." * (SNIPPET_CHARS - 8 - len(head) - auth.index("sk-"))
        page = f"{head}{pad}{auth}\n{rest}</pre></body></html>"
        return web.Response(status=502, text=page, content_type="text/html")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


async def test_a_result_never_carries_part_of_a_key_a_proxy_echoed() -> None:
    async with echoing_proxy() as base_url:
        client = llmgather.Client(
            "openai:m", base_url=base_url, api_key=KEY, retry=RetryPolicy(max_attempts=1)
        )
        async with client:
            [result] = await client.gather(["hello"])
    assert not result.ok and result.error is not None
    assert "502 Bad Gateway" in result.error.message  # the page is quoted, the key is not
    assert_no_part_of(KEY, orjson.dumps(result.to_dict()).decode())


async def test_a_callables_own_error_quoting_credentials_is_stored_without_them() -> None:
    # An HTTP library's error names the URL it called; Gemini's REST URL may carry ?key=.
    async def call() -> None:
        raise RuntimeError(
            "GET https://host/v1beta/models/m:generateContent?key=AIzaSECRET123&alt=sse: 500; "
            "sent Authorization: Bearer sk-SECRETSECRETSECRET"
        )

    async with Client("sim:gpt-4o-mini") as client:
        with pytest.raises(RuntimeError):
            await client.call(call)
        results = [r async for r in client.map_calls(lambda _: call(), [1])]
    assert results[0].error is not None
    message = results[0].error.message
    assert "SECRET" not in message and "key=[redacted]" in message
    assert "Bearer [redacted]" in message
