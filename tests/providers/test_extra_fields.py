"""Provider-native fields a request carries in `extra` reach the body, merged, never overriding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson

from llmgather import Request
from llmgather.jobs.inputs import read_inputs
from llmgather.providers.anthropic import AnthropicProvider
from llmgather.providers.gemini import GeminiProvider
from llmgather.providers.openai import OpenAIProvider


def body_of(provider: Any, request: Request, *, stream: bool = False) -> dict[str, Any]:
    http = provider.build_request(request, model="m", stream=stream)
    return orjson.loads(http.body)  # type: ignore[no-any-return]


def test_openai_body_carries_extra_fields_and_keeps_its_own() -> None:
    request = Request.from_prompt(
        "hi",
        max_tokens=20,
        extra={"response_format": {"type": "json_object"}, "seed": 7, "model": "not-this-one"},
    )
    body = body_of(OpenAIProvider(api_key="sk-x", base_url="http://127.0.0.1:9/v1"), request)
    assert body["response_format"] == {"type": "json_object"} and body["seed"] == 7
    assert body["model"] == "m" and body["max_tokens"] == 20


def test_openais_own_api_gets_max_completion_tokens_and_lookalikes_max_tokens() -> None:
    request = Request.from_prompt("hi", max_tokens=20)
    official = body_of(OpenAIProvider(api_key="sk-x"), request)
    assert official["max_completion_tokens"] == 20 and "max_tokens" not in official
    compatible = body_of(OpenAIProvider(api_key=None, base_url="http://h:8000/v1"), request)
    assert compatible["max_tokens"] == 20 and "max_completion_tokens" not in compatible
    explicit = OpenAIProvider(api_key="sk-x", base_url="https://api.openai.com/v1/")
    assert "max_completion_tokens" in body_of(explicit, request)
    chosen = Request.from_prompt("hi", max_tokens=20, extra={"max_tokens": 20})
    assert "max_completion_tokens" not in body_of(OpenAIProvider(api_key="sk-x"), chosen)


def test_openai_sends_max_completion_tokens_alone_when_the_caller_chose_it() -> None:
    request = Request.from_prompt("hi", max_tokens=50, extra={"max_completion_tokens": 50})
    body = body_of(OpenAIProvider(api_key="sk-x"), request, stream=True)
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body
    assert body["stream_options"] == {"include_usage": True}


def test_gemini_generation_config_merges_with_the_callers() -> None:
    request = Request.from_prompt(
        "hi", max_tokens=30, extra={"generationConfig": {"topK": 3, "maxOutputTokens": 999}}
    )
    body = body_of(GeminiProvider(api_key="k"), request)
    assert body["generationConfig"] == {"topK": 3, "maxOutputTokens": 30}


def test_anthropic_body_carries_extra_fields() -> None:
    request = Request.from_prompt("hi", extra={"stop_sequences": ["END"], "top_k": 5})
    body = body_of(AnthropicProvider(api_key="k"), request)
    assert body["stop_sequences"] == ["END"] and body["top_k"] == 5
    assert body["messages"] == [{"role": "user", "content": "hi"}]


def test_batch_api_body_fields_llmgather_does_not_read_go_to_the_provider(
    tmp_path: Path,
) -> None:
    line = {
        "custom_id": "r1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_completion_tokens": 40,
            "response_format": {"type": "json_object"},
            "seed": 3,
            "stream": True,
            "metadata": {"k": "v"},
        },
    }
    path = tmp_path / "batch.jsonl"
    path.write_text(json.dumps(line) + "\n")
    (item,) = read_inputs(path)
    assert item.request is not None
    assert item.request.max_tokens == 40 and item.request.metadata == {"k": "v"}
    assert item.request.extra == {
        "max_completion_tokens": 40,
        "response_format": {"type": "json_object"},
        "seed": 3,
    }
    body = body_of(OpenAIProvider(api_key="sk-x"), item.request)
    assert "stream" not in body and "metadata" not in body and "max_tokens" not in body
    assert body["seed"] == 3 and body["max_completion_tokens"] == 40
