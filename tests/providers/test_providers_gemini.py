"""The Gemini adapter: sans-IO request/response/stream tests, then the real path over loopback."""

from __future__ import annotations

import hashlib
from typing import Any

import aiohttp
import orjson
import pytest

import llmgather
from llmgather import (
    BadRequestError,
    InvalidInputError,
    MalformedResponseError,
    RateLimitError,
    Request,
    ServerError,
    TruncatedStreamError,
    Usage,
)
from llmgather.providers.gemini import GeminiProvider
from llmgather.providers.registry import PROVIDERS, resolve_target
from llmgather.sim import FaultPlan, SimConfig, answer_text, start_simulator
from llmgather.transport.sse import SSEDecoder
from tests.simfixtures import sim_stats

KEY = "AIzaSy-test-key-0123456789"


def provider(base_url: str | None = None) -> GeminiProvider:
    return GeminiProvider(api_key=KEY, base_url=base_url)


def body(request: Request, *, stream: bool = False) -> dict[str, Any]:
    http = provider().build_request(request, model="gemini-2.0-flash", stream=stream)
    return orjson.loads(http.body)  # type: ignore[no-any-return]


# -- requests ----------------------------------------------------------------------------------


def test_request_url_and_headers_keep_the_key_out_of_the_url() -> None:
    request = Request.from_prompt("hi")
    plain = provider().build_request(request, model="gemini-2.0-flash", stream=False)
    assert plain.method == "POST"
    assert plain.url == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent"
    )
    assert plain.headers["x-goog-api-key"] == KEY
    assert plain.headers["content-type"] == "application/json"
    assert KEY not in plain.url and KEY not in repr(plain)
    streamed = provider("http://127.0.0.1:9/").build_request(
        request, model="models/gemini-2.0-flash", stream=True
    )
    assert streamed.url == (
        "http://127.0.0.1:9/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    )


def test_request_body_maps_roles_system_and_generation_config() -> None:
    request = Request(
        messages=(
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
            {"role": "user", "content": [{"type": "text", "text": "Why?"}, "And how?"]},
        ),
        max_tokens=50,
        temperature=0.2,
    )
    assert body(request) == {
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Hello"}]},
            {"role": "user", "parts": [{"text": "Why?"}, {"text": "And how?"}]},
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"maxOutputTokens": 50, "temperature": 0.2},
    }
    assert body(Request.from_prompt("Hi")) == {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}]
    }


def test_request_with_an_unknown_role_or_a_non_text_part_is_invalid_input() -> None:
    with pytest.raises(InvalidInputError):
        body(Request(messages=({"role": "tool", "content": "x"},)))
    with pytest.raises(InvalidInputError):
        body(Request(messages=({"role": "user", "content": [{"type": "image_url"}]},)))


# -- responses ---------------------------------------------------------------------------------


def response(**overrides: Any) -> bytes:
    data: dict[str, Any] = {
        "candidates": [
            {
                "content": {"parts": [{"text": "Birds "}, {"text": "migrate."}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 3, "totalTokenCount": 10},
        "modelVersion": "gemini-2.0-flash",
    }
    data.update(overrides)
    return orjson.dumps(data)


def test_parse_response_text_usage_finish_reason() -> None:
    completion = provider().parse_response(200, {}, response())
    assert completion.text == "Birds migrate."
    assert (completion.finish_reason, completion.provider_finish_reason) == ("stop", "STOP")
    assert completion.usage == Usage(input_tokens=7, output_tokens=3)
    assert completion.model == "gemini-2.0-flash"


def test_thinking_tokens_count_as_output_and_thought_parts_are_not_text() -> None:
    candidate = {
        "content": {"parts": [{"text": "pondering", "thought": True}, {"text": "42"}]},
        "finishReason": "STOP",
    }
    usage = {"promptTokenCount": 5, "candidatesTokenCount": 1, "thoughtsTokenCount": 100}
    completion = provider().parse_response(
        200, {}, response(candidates=[candidate], usageMetadata=usage)
    )
    assert completion.text == "42"
    assert completion.usage == Usage(input_tokens=5, output_tokens=101)


def test_a_candidate_stopped_by_safety_is_an_empty_completion_not_an_error() -> None:
    candidate = {"finishReason": "SAFETY", "index": 0, "safetyRatings": []}
    completion = provider().parse_response(200, {}, response(candidates=[candidate]))
    assert completion.text == ""
    assert completion.finish_reason == "content_filter"
    assert completion.provider_finish_reason == "SAFETY"


def test_a_prompt_blocked_at_prompt_level_is_a_bad_request() -> None:
    blocked = orjson.dumps({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}})
    with pytest.raises(BadRequestError, match="PROHIBITED_CONTENT"):
        provider().parse_response(200, {}, blocked)


@pytest.mark.parametrize(
    "raw", [b'{"candidates": [{"content"', b"[]", b"{}", b'{"candidates": [3]}']
)
def test_an_unparsable_response_is_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedResponseError):
        provider().parse_response(200, {}, raw)


# -- streams -----------------------------------------------------------------------------------


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events)


def chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {
        "content": {"parts": [{"text": text}], "role": "model"},
        "index": 0,
    }
    usage: dict[str, Any] = {"promptTokenCount": 4, "totalTokenCount": 4}
    if finish:
        candidate["finishReason"] = finish
        usage = {"promptTokenCount": 4, "candidatesTokenCount": 6, "totalTokenCount": 10}
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-2.0-flash"}


def decode(raw: bytes, *, split: int = 7) -> tuple[list[str], Any]:
    """Feed `raw` in `split`-byte chunks, as a network would; return pieces and the decoder."""
    sse_decoder, decoder = SSEDecoder(), provider().stream_decoder()
    pieces: list[str] = []
    for i in range(0, len(raw), split):
        for event in sse_decoder.feed(raw[i : i + split]):
            pieces += decoder.feed(event)
    for event in sse_decoder.flush():
        pieces += decoder.feed(event)
    return pieces, decoder


def test_stream_pieces_and_final_completion() -> None:
    raw = sse(chunk("The quick"), chunk(" brown fox"), chunk(" jumps.", "STOP"))
    pieces, decoder = decode(raw)
    assert pieces == ["The quick", " brown fox", " jumps."]
    completion = decoder.finish()
    assert completion.text == "The quick brown fox jumps."
    assert (completion.finish_reason, completion.provider_finish_reason) == ("stop", "STOP")
    assert completion.usage == Usage(input_tokens=4, output_tokens=6)


def test_a_stream_without_a_finish_reason_is_truncated() -> None:
    _, decoder = decode(sse(chunk("The quick"), chunk(" brown")))
    with pytest.raises(TruncatedStreamError):
        decoder.finish()


def test_a_malformed_stream_event_raises() -> None:
    raw = (
        sse(chunk("The quick")) + b'data: {"candidates": [{"content": {"parts": [{"text": "\r\n\r\n'
    )
    with pytest.raises(MalformedResponseError):
        decode(raw)


def test_an_error_event_in_the_stream_raises_the_mapped_error() -> None:
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    with pytest.raises(ServerError, match="overloaded") as info:
        decode(sse(chunk("The"), error))
    assert info.value.status_code == 503


def test_registry_knows_gemini() -> None:
    spec = PROVIDERS["gemini"]
    assert spec.factory is GeminiProvider and spec.base_url_suffix == ""
    target = resolve_target("gemini-2.0-flash", env={"GOOGLE_API_KEY": "g"})
    assert (target.provider, target.model, target.api_key) == ("gemini", "gemini-2.0-flash", "g")


# -- over loopback, against the simulator ------------------------------------------------------

SEED = 0
RETRY = llmgather.RetryPolicy(max_attempts=10, base_delay=0.01, max_delay=0.05)
PROMPTS = [f"Prompt number {i}: why do birds migrate?" for i in range(40)]


def expected(prompt: str) -> str:
    return answer_text(prompt, SEED)[0]


async def test_complete_and_stream_against_the_simulator() -> None:
    async with await start_simulator(SimConfig(seed=SEED)) as sim:
        async with llmgather.Client(
            "gemini:gemini-2.0-flash", base_url=sim.base_url, api_key="k"
        ) as client:
            assert await client.complete("Why do birds migrate?") == expected(
                "Why do birds migrate?"
            )
            pieces = [p async for p in client.stream("Write a haiku")]
            assert len(pieces) > 1
            assert "".join(pieces) == expected("Write a haiku")


@pytest.mark.parametrize("stream", [False, True])
async def test_gather_under_transient_faults_ends_all_ok(stream: bool) -> None:
    faults = FaultPlan.parse("429=0.04,500=0.08,503=0.08,cut=0.06,malformed=0.04")
    config = SimConfig(seed=SEED, faults=faults, fault_retry_after_s=0.01)
    async with await start_simulator(config) as sim:
        async with llmgather.Client(
            "gemini:gemini-2.0-flash",
            base_url=sim.base_url,
            api_key="k",
            retry=RETRY,
            stream=stream,
            concurrency=16,
        ) as client:
            results = await client.gather(PROMPTS)
            stats = client.statistics()
        counts = await sim_stats(sim)
    assert [r.status for r in results] == ["ok"] * len(PROMPTS), [r.error for r in results]
    assert [r.text for r in results] == [expected(p) for p in PROMPTS]
    assert {"429", "cut", "malformed"} <= set(counts["faults"])  # each kind was exercised
    assert stats.http_429 == counts["faults"]["429"]
    assert stats.retries >= sum(counts["faults"].values())


async def test_a_retry_delay_of_one_second_is_honoured() -> None:
    prompt = "A prompt that is rate limited first"
    config = SimConfig(seed=SEED, faults=FaultPlan.parse("429=1"), fault_retry_after_s=1.0)
    async with await start_simulator(config) as sim:
        async with llmgather.Client(
            "gemini:gemini-2.0-flash",
            base_url=sim.base_url,
            api_key="k",
            retry=llmgather.RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.05),
        ) as client:
            result = (await client.gather([prompt]))[0]
        async with aiohttp.ClientSession() as session:
            async with session.get(sim.base_url + "/_sim/log") as answer:
                log = await answer.json()
    assert isinstance(result.exception, RateLimitError)
    assert result.exception.retry_after == 1.0
    sha = hashlib.sha256(prompt.encode()).hexdigest()[:12]
    times = [entry["t"] for entry in log if entry["prompt_sha"] == sha]
    assert len(times) == 2
    assert times[1] - times[0] >= 1.0


async def test_a_wrong_key_is_an_authentication_error_that_never_shows_the_key() -> None:
    async with await start_simulator(SimConfig(seed=SEED, require_key="right")) as sim:
        async with llmgather.Client(
            "gemini:gemini-2.0-flash", base_url=sim.base_url, api_key="wrong-key-123"
        ) as client:
            with pytest.raises(llmgather.AuthenticationError) as info:
                await client.complete("hi")
    assert info.value.status_code == 400  # Gemini's answer to a bad key: API_KEY_INVALID
    assert "wrong-key-123" not in str(info.value)
