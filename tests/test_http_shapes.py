"""Answers of an unexpected shape are transient faults, retried, never permanent failures."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import llmgather
from llmgather import MalformedResponseError, RetryPolicy, ServerError
from llmgather.transport import HttpRequest, HttpResponse, MockTransport

GOOD = {"choices": [{"message": {"content": "fine"}, "finish_reason": "stop"}]}
JSON = {"content-type": "application/json"}
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


def json_answer(body: Any, status: int = 200, **headers: str) -> HttpResponse:
    return HttpResponse(status, {**JSON, **headers}, orjson.dumps(body))


@pytest.fixture
def odd_server() -> tuple[MockTransport, list[int]]:
    """An OpenAI-like server whose first answers have odd shapes, then good ones."""
    calls = [0]

    def chat(request: HttpRequest) -> HttpResponse:
        calls[0] += 1
        payload = orjson.loads(request.body)
        n = calls[0]
        if payload.get("stream"):
            chunks = ODD_CHUNKS if n == 1 else GOOD_CHUNKS
            return HttpResponse(200, {"content-type": "text/event-stream"}, b"".join(chunks))
        if n <= len(ODD_BODIES):
            return json_answer(ODD_BODIES[n - 1])
        if payload["messages"][0]["content"] == "bad error body":
            return json_answer({"error": ["not", "an", "object"]}, 503)
        return json_answer(GOOD)

    return MockTransport(chat), calls


def client(transport: MockTransport, **kwargs: Any) -> llmgather.Client:
    fast = RetryPolicy(max_attempts=5, base_delay=0.001, max_delay=0.01)
    return llmgather.Client("openai:m", api_key="k", transport=transport, retry=fast, **kwargs)


async def test_plain_answers_of_odd_shapes_are_retried(
    odd_server: tuple[MockTransport, list[int]],
) -> None:
    transport, calls = odd_server
    async with client(transport, concurrency=1) as llm:
        (result,) = await llm.gather(["hi"])
    assert result.ok and result.text == "fine"
    assert result.attempts == len(ODD_BODIES) + 1 == calls[0]


async def test_stream_events_of_odd_shapes_are_retried_and_only_the_first_choice_counts(
    odd_server: tuple[MockTransport, list[int]],
) -> None:
    transport, calls = odd_server
    async with client(transport, stream=True) as llm:
        (result,) = await llm.gather(["hi"])
    assert result.ok and result.text == "fine" and result.attempts == 2 == calls[0]


async def test_an_error_body_of_odd_shape_keeps_its_status_class(
    odd_server: tuple[MockTransport, list[int]],
) -> None:
    transport, calls = odd_server
    calls[0] = len(ODD_BODIES)
    async with client(transport) as llm:
        (result,) = await llm.gather(["bad error body"])
    assert not result.ok and result.error is not None
    assert result.error.type == ServerError.__name__ and result.error.status_code == 503
    assert result.attempts == 5
    assert MalformedResponseError.__name__ != result.error.type


@pytest.fixture
def verdict_server() -> tuple[MockTransport, list[int]]:
    """Answers a 503 the server says not to retry, or a 400 it says to retry, then a 200."""
    calls = [0]

    def chat(request: HttpRequest) -> HttpResponse:
        calls[0] += 1
        prompt = orjson.loads(request.body)["messages"][0]["content"]
        if prompt == "do not retry":
            return HttpResponse(503, {"x-should-retry": "false"}, b"{}")
        if prompt == "retry" and calls[0] == 1:
            return HttpResponse(400, {"x-should-retry": "true"}, b"{}")
        return json_answer(GOOD)

    return MockTransport(chat), calls


@pytest.mark.parametrize(
    ("prompt", "ok", "attempts"), [("do not retry", False, 1), ("retry", True, 2)]
)
async def test_the_servers_x_should_retry_wins_over_the_status(
    verdict_server: tuple[MockTransport, list[int]], prompt: str, ok: bool, attempts: int
) -> None:
    transport, calls = verdict_server
    async with client(transport) as llm:
        (result,) = await llm.gather([prompt])
    assert (result.ok, result.attempts, calls[0]) == (ok, attempts, attempts)
    assert result.ok or (result.error is not None and result.error.type == "ServerError")
