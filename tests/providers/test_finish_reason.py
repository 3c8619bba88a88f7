"""Why a model stopped, in one vocabulary for every provider (OpenAI's: stop, length,
tool_calls, content_filter, other), with the provider's own word beside it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import llmgather
from llmgather import Completion, Result
from llmgather.providers.anthropic import AnthropicProvider
from llmgather.providers.base import Provider
from llmgather.providers.gemini import GeminiProvider
from llmgather.providers.openai import OpenAIProvider
from llmgather.sim import RunningSimulator
from llmgather.transport.sse import SSEDecoder
from tests.clihelpers import read_jsonl, run_cli, write_prompts

OPENAI = [
    ("stop", "stop"),
    ("length", "length"),
    ("tool_calls", "tool_calls"),
    ("function_call", "tool_calls"),
    ("content_filter", "content_filter"),
    ("abort", "other"),  # vLLM's word for a request it gave up on
]
ANTHROPIC = [
    ("end_turn", "stop"),
    ("stop_sequence", "stop"),
    ("max_tokens", "length"),
    ("model_context_window_exceeded", "length"),
    ("tool_use", "tool_calls"),
    ("refusal", "content_filter"),
    ("pause_turn", "other"),
]
GEMINI = [
    ("STOP", "stop"),
    ("MAX_TOKENS", "length"),
    ("SAFETY", "content_filter"),
    ("RECITATION", "content_filter"),
    ("PROHIBITED_CONTENT", "content_filter"),
    ("SPII", "content_filter"),
    ("BLOCKLIST", "content_filter"),
    ("MALFORMED_FUNCTION_CALL", "other"),
    ("LANGUAGE", "other"),
    ("OTHER", "other"),
    ("FINISH_REASON_UNSPECIFIED", "other"),
]


def streamed(provider: Provider, raw: bytes) -> Completion:
    decoder = provider.stream_decoder()
    sse = SSEDecoder()
    for event in [*sse.feed(raw), *sse.flush()]:
        decoder.feed(event)
    return decoder.finish()


@pytest.mark.parametrize(("raw", "normalised"), OPENAI)
def test_openai_plain_and_streamed(raw: str, normalised: str) -> None:
    provider = OpenAIProvider(api_key="k")
    body = {"choices": [{"message": {"content": "x"}, "finish_reason": raw}]}
    plain = provider.parse_response(200, {}, orjson.dumps(body))
    chunk = {"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": raw}]}
    stream = streamed(provider, b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n")
    for completion in (plain, stream):
        assert (completion.finish_reason, completion.provider_finish_reason) == (normalised, raw)


@pytest.mark.parametrize(("raw", "normalised"), ANTHROPIC)
def test_anthropic_plain_and_streamed(raw: str, normalised: str) -> None:
    provider = AnthropicProvider(api_key="k")
    body = {"content": [{"type": "text", "text": "x"}], "stop_reason": raw}
    plain = provider.parse_response(200, {}, orjson.dumps(body))
    events = [
        ("message_start", {"type": "message_start", "message": {"model": "c", "usage": {}}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": raw}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    raw_stream = b"".join(
        f"event: {name}\ndata: ".encode() + orjson.dumps(data) + b"\n\n" for name, data in events
    )
    stream = streamed(provider, raw_stream)
    for completion in (plain, stream):
        assert (completion.finish_reason, completion.provider_finish_reason) == (normalised, raw)


@pytest.mark.parametrize(("raw", "normalised"), GEMINI)
def test_gemini_plain_and_streamed(raw: str, normalised: str) -> None:
    provider = GeminiProvider(api_key="k")
    body = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": raw}]}
    plain = provider.parse_response(200, {}, orjson.dumps(body))
    stream = streamed(provider, b"data: " + orjson.dumps(body) + b"\n\n")
    for completion in (plain, stream):
        assert (completion.finish_reason, completion.provider_finish_reason) == (normalised, raw)


def test_a_gemini_answer_that_calls_a_function_stopped_for_tool_calls() -> None:
    call = {"functionCall": {"name": "lookup", "args": {"q": "x"}}}
    body = {"candidates": [{"content": {"parts": [call]}, "finishReason": "STOP"}]}
    provider = GeminiProvider(api_key="k")
    plain = provider.parse_response(200, {}, orjson.dumps(body))
    stream = streamed(provider, b"data: " + orjson.dumps(body) + b"\n\n")
    for completion in (plain, stream):
        assert (completion.finish_reason, completion.provider_finish_reason) == (
            "tool_calls",
            "STOP",
        )


def test_the_output_line_carries_both() -> None:
    result = Result(
        id="a", status="ok", finish_reason="length", provider_finish_reason="MAX_TOKENS"
    )
    line = result.to_dict()
    assert (line["finish_reason"], line["provider_finish_reason"]) == ("length", "MAX_TOKENS")


@pytest.mark.parametrize(
    ("model", "suffix", "words"),
    [
        ("openai:gpt-4o-mini", "/v1", ("stop", "length")),
        ("anthropic:claude-3-5-haiku-latest", "", ("end_turn", "max_tokens")),
        ("gemini:gemini-2.0-flash", "", ("STOP", "MAX_TOKENS")),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_results_from_each_dialect_share_one_vocabulary(
    sim: RunningSimulator, model: str, suffix: str, words: tuple[str, str], stream: bool
) -> None:
    client = llmgather.Client(model, base_url=sim.base_url + suffix, api_key="k", stream=stream)
    async with client:
        whole, cut = await client.gather(
            [
                client.build_request("Why do some birds migrate?", max_tokens=4096),
                client.build_request("Why do some birds migrate?", max_tokens=1),
            ]
        )
    assert (whole.finish_reason, whole.provider_finish_reason) == ("stop", words[0])
    assert (cut.finish_reason, cut.provider_finish_reason) == ("length", words[1])


def test_the_cli_output_lines_carry_both(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 2)
    out = tmp_path / "out.jsonl"
    args = ["run", str(prompts), "-o", str(out), "-m", "sim:anthropic", "--quiet"]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    lines = read_jsonl(out)
    assert [(line["finish_reason"], line["provider_finish_reason"]) for line in lines] == [
        ("stop", "end_turn")
    ] * 2
