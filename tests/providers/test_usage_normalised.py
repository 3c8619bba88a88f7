"""Usage normalised by each adapter before pricing: the input counts every prompt token (cached
or not), the cache reads and writes are told apart, and reasoning tokens count as output."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llmgather import Usage
from llmgather.providers.registry import PROVIDERS

OPENAI = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "o4-mini",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}
    ],
    # prompt_tokens holds the cached ones; completion_tokens the reasoning ones.
    "usage": {
        "prompt_tokens": 1500,
        "completion_tokens": 300,
        "total_tokens": 1800,
        "prompt_tokens_details": {"cached_tokens": 1280, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 256},
    },
}
ANTHROPIC = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-0",
    "content": [{"type": "text", "text": "Hi"}],
    "stop_reason": "end_turn",
    # input_tokens leaves out what was read from and written to the cache.
    "usage": {
        "input_tokens": 20,
        "cache_creation_input_tokens": 200,
        "cache_read_input_tokens": 1280,
        "output_tokens": 300,
    },
}
GEMINI = {
    "candidates": [
        {"content": {"parts": [{"text": "Hi"}], "role": "model"}, "finishReason": "STOP"}
    ],
    # promptTokenCount holds the cached ones; thoughts are billed as output, apart from the rest.
    "usageMetadata": {
        "promptTokenCount": 1500,
        "cachedContentTokenCount": 1280,
        "candidatesTokenCount": 44,
        "thoughtsTokenCount": 256,
        "totalTokenCount": 1800,
    },
    "modelVersion": "gemini-2.5-flash",
}


@pytest.mark.parametrize(
    ("provider", "body", "usage"),
    [
        ("openai", OPENAI, Usage(1500, 300, cache_read_tokens=1280)),
        ("anthropic", ANTHROPIC, Usage(1500, 300, cache_read_tokens=1280, cache_write_tokens=200)),
        ("gemini", GEMINI, Usage(1500, 300, cache_read_tokens=1280)),
    ],
)
def test_each_adapter_normalises_its_providers_usage(
    provider: str, body: dict[str, Any], usage: Usage
) -> None:
    adapter = PROVIDERS[provider].factory(api_key="k")
    completion = adapter.parse_response(200, {}, orjson.dumps(body))
    assert completion.usage == usage
    assert usage.uncached_input_tokens == 1500 - 1280 - usage.cache_write_tokens
    assert completion.usage.to_dict() == {
        "input_tokens": 1500,
        "output_tokens": 300,
        "total_tokens": 1800,
        "cache_read_tokens": 1280,
        "cache_write_tokens": usage.cache_write_tokens,
    }
