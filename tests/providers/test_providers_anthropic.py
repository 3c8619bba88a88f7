"""The Anthropic adapter: sans-IO request/response/stream tests, then the real path over loopback."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import llmgather
from llmgather import (
    MalformedResponseError,
    OverloadedError,
    Request,
    TruncatedStreamError,
    Usage,
)
from llmgather.providers.anthropic import (
    DEFAULT_MAX_TOKENS,
    AnthropicProvider,
)
from llmgather.providers.registry import PROVIDERS, resolve_target
from llmgather.sim import FaultPlan, SimConfig, answer_text, start_simulator
from llmgather.transport.sse import SSEDecoder
from tests.simfixtures import sim_stats

KEY = "sk-ant-api03-test-key-0123456789"


def provider(base_url: str | None = None) -> AnthropicProvider:
    return AnthropicProvider(api_key=KEY, base_url=base_url)


def body(request: Request, *, stream: bool = False) -> dict[str, Any]:
    http = provider().build_request(request, model="claude-3-5-haiku-latest", stream=stream)
    return orjson.loads(http.body)  # type: ignore[no-any-return]


# -- requests ----------------------------------------------------------------------------------


def test_request_url_and_headers() -> None:
    http = provider().build_request(Request.from_prompt("hi"), model="claude-x", stream=False)
    assert (http.method, http.url) == ("POST", "https://api.anthropic.com/v1/messages")
    assert http.headers == {
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
        "x-api-key": KEY,
    }
    assert KEY not in repr(http)
    other = provider("http://127.0.0.1:9/").build_request(
        Request.from_prompt("hi"), model="claude-x", stream=True
    )
    assert other.url == "http://127.0.0.1:9/v1/messages"


def test_request_body_lifts_system_and_defaults_max_tokens() -> None:
    request = Request(
        messages=(
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": [{"type": "text", "text": "Why?"}]},
        ),
        temperature=0.3,
    )
    assert body(request, stream=True) == {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": [{"type": "text", "text": "Why?"}]},
        ],
        "system": "Be brief.",
        "temperature": 0.3,
        "stream": True,
    }
    plain = body(Request.from_prompt("Hi", max_tokens=7))
    assert plain["max_tokens"] == 7
    assert "system" not in plain and "stream" not in plain and "temperature" not in plain


# -- responses ---------------------------------------------------------------------------------


def message(**overrides: Any) -> bytes:
    data: dict[str, Any] = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-haiku-20241022",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "x"},
            {"type": "text", "text": "Birds "},
            {"type": "text", "text": "migrate."},
        ],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 5,
            "cache_read_input_tokens": 100,
            "output_tokens": 3,
        },
    }
    data.update(overrides)
    return orjson.dumps(data)


def test_parse_response_text_usage_stop_reason() -> None:
    completion = provider().parse_response(200, {}, message())
    assert completion.text == "Birds migrate."
    assert (completion.finish_reason, completion.provider_finish_reason) == ("stop", "end_turn")
    # Normalised: Anthropic's input_tokens leaves its cache reads and writes out; ours holds them.
    assert completion.usage == Usage(
        input_tokens=115, output_tokens=3, cache_read_tokens=100, cache_write_tokens=5
    )
    assert completion.model == "claude-3-5-haiku-20241022"


@pytest.mark.parametrize("raw", [b'{"content": [', b"[]", b'{"type": "message"}'])
def test_an_unparsable_response_is_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedResponseError):
        provider().parse_response(200, {}, raw)


# -- streams -----------------------------------------------------------------------------------


def frame(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


HEAD = [
    frame(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_01",
                "type": "message",
                "role": "assistant",
                "model": "claude-x",
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": 12, "cache_read_input_tokens": 3, "output_tokens": 1},
            },
        },
    ),
    frame(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ),
    frame("ping", {"type": "ping"}),
]


def delta(text: str) -> bytes:
    return frame(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
    )


TAIL = [
    frame("content_block_stop", {"type": "content_block_stop", "index": 0}),
    frame(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 6},
        },
    ),
    frame("message_stop", {"type": "message_stop"}),
]


def decode(raw: bytes, *, split: int = 5) -> tuple[list[str], Any]:
    sse_decoder, decoder = SSEDecoder(), provider().stream_decoder()
    pieces: list[str] = []
    for i in range(0, len(raw), split):
        for event in sse_decoder.feed(raw[i : i + split]):
            pieces += decoder.feed(event)
    for event in sse_decoder.flush():
        pieces += decoder.feed(event)
    return pieces, decoder


def test_stream_pieces_and_final_completion() -> None:
    json_delta = frame(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"a"'},
        },
    )
    raw = b"".join([*HEAD, delta("Hello"), delta(", wörld"), json_delta, delta("!"), *TAIL])
    pieces, decoder = decode(raw)
    assert pieces == ["Hello", ", wörld", "!"]
    completion = decoder.finish()
    assert completion.text == "Hello, wörld!"
    assert (completion.finish_reason, completion.provider_finish_reason) == ("stop", "end_turn")
    assert completion.usage == Usage(input_tokens=15, output_tokens=6, cache_read_tokens=3)
    assert completion.model == "claude-x"


def test_a_stream_without_message_stop_is_truncated() -> None:
    _, decoder = decode(b"".join([*HEAD, delta("Hello"), *TAIL[:2]]))
    with pytest.raises(TruncatedStreamError):
        decoder.finish()


def test_a_message_stop_before_any_stop_reason_is_truncated() -> None:
    # A whole message says why it stopped; one that ends without it was cut short.
    _, decoder = decode(b"".join([*HEAD, delta("Hello"), TAIL[0], TAIL[2]]))
    with pytest.raises(TruncatedStreamError, match="stop_reason"):
        decoder.finish()


def test_a_malformed_stream_event_raises() -> None:
    bad = b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0,\n\n'
    with pytest.raises(MalformedResponseError):
        decode(b"".join([*HEAD, delta("Hello"), bad]))


def test_an_error_event_raises_the_mapped_error() -> None:
    error = frame(
        "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    with pytest.raises(OverloadedError, match="Overloaded") as info:
        decode(b"".join([*HEAD, delta("Hello"), error]))
    assert info.value.status_code == 529
    assert info.value.retryable


# -- rate-limit headers ------------------------------------------------------------------------


def test_announced_limits_keep_the_input_and_output_token_windows_apart() -> None:
    # The headers of a real answer (tier 2), as Anthropic sends them.
    headers = {
        "anthropic-ratelimit-requests-limit": "1000",
        "anthropic-ratelimit-tokens-limit": "96000",
        "anthropic-ratelimit-input-tokens-limit": "80000",
        "anthropic-ratelimit-output-tokens-limit": "16000",
        "anthropic-ratelimit-requests-remaining": "999",
    }
    left = {"rpm.remaining": 999}
    assert provider().announced_limits(headers) == {
        "rpm": 1000,
        "itpm": 80000,
        "otpm": 16000,
        **left,
    }
    # The combined window is a budget only when the finer ones are not announced.
    del headers["anthropic-ratelimit-output-tokens-limit"]
    assert provider().announced_limits(headers) == {"rpm": 1000, "itpm": 80000, **left}
    del headers["anthropic-ratelimit-input-tokens-limit"]
    assert provider().announced_limits(headers) == {"rpm": 1000, "tpm": 96000, **left}
    assert provider().announced_limits({"anthropic-ratelimit-requests-limit": "0"}) == {}
    assert provider().announced_limits({}) == {}


def test_registry_knows_anthropic() -> None:
    spec = PROVIDERS["anthropic"]
    assert spec.factory is AnthropicProvider and spec.base_url_suffix == ""
    target = resolve_target("claude-3-5-haiku-latest", env={"ANTHROPIC_API_KEY": "a"})
    assert (target.provider, target.api_key) == ("anthropic", "a")


# -- over loopback, against the simulator ------------------------------------------------------

SEED = 0
MODEL = "anthropic:claude-3-5-haiku-latest"
RETRY = llmgather.RetryPolicy(max_attempts=10, base_delay=0.01, max_delay=0.05)
PROMPTS = [f"Prompt number {i}: why do birds migrate?" for i in range(40)]


def expected(prompt: str) -> str:
    return answer_text(prompt, SEED)[0]


async def test_complete_and_stream_against_the_simulator() -> None:
    async with await start_simulator(SimConfig(seed=SEED, require_key="k")) as sim:
        async with llmgather.Client(MODEL, base_url=sim.base_url, api_key="k") as client:
            assert await client.complete("Why do birds migrate?") == expected(
                "Why do birds migrate?"
            )
            pieces = [p async for p in client.stream("Write a haiku")]
            assert len(pieces) > 1
            assert "".join(pieces) == expected("Write a haiku")


@pytest.mark.parametrize("stream", [False, True])
async def test_gather_under_transient_faults_ends_all_ok(stream: bool) -> None:
    faults = FaultPlan.parse("429=0.04,500=0.06,529=0.06,503=0.04,cut=0.06,malformed=0.04")
    config = SimConfig(seed=SEED, faults=faults, fault_retry_after_s=0.01)
    async with await start_simulator(config) as sim:
        async with llmgather.Client(
            MODEL,
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


async def test_a_wrong_key_is_an_authentication_error_that_never_shows_the_key() -> None:
    async with await start_simulator(SimConfig(seed=SEED, require_key="right")) as sim:
        async with llmgather.Client(
            MODEL, base_url=sim.base_url, api_key="wrong-key-123"
        ) as client:
            with pytest.raises(llmgather.AuthenticationError) as info:
                await client.complete("hi")
    assert info.value.status_code == 401
    assert "wrong-key-123" not in str(info.value)
