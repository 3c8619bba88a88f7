"""The OpenAI chat completions dialect at the gateway's front (`POST /v1/chat/completions`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from llmgather._types import Completion, Request
from llmgather.limits import Cost
from llmgather.limits.tokens import DEFAULT_OUTPUT_ESTIMATE, estimate_prompt_tokens
from llmgather.service.dialects.base import Untranslatable, refuse_unknown
from llmgather.transport.sse import SSEEvent

# Fields another dialect's upstream can carry; anything else (tools, response_format, n > 1,
# logprobs, …) is refused by name when the upstream is not OpenAI's.
_TRANSLATED = frozenset(
    "model messages max_tokens max_completion_tokens temperature stop stream stream_options "
    "user".split()
)
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


class OpenAIFront:
    name = "openai"

    def cost(self, body: Mapping[str, Any]) -> Cost:
        messages = body.get("messages")
        prompt = 0
        if isinstance(messages, list):
            prompt = estimate_prompt_tokens(m for m in messages if isinstance(m, dict))
        output = _max_tokens(body)
        n = body.get("n")
        choices = n if isinstance(n, int) and n > 1 else 1
        return Cost(requests=1, input_tokens=prompt, output_tokens=output * choices)

    def to_request(self, body: Mapping[str, Any]) -> Request:
        refuse_unknown(body, _TRANSLATED)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise Untranslatable("messages must be a non-empty list of chat messages")
        translated = []
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("content"), str):
                raise Untranslatable(
                    f"messages[{i}]: only messages with text content can be carried to this "
                    "upstream (no images, tool calls or tool results)"
                )
            role = "system" if message.get("role") == "developer" else message.get("role")
            if role not in ("system", "user", "assistant"):
                raise Untranslatable(
                    f"messages[{i}]: role {role!r} cannot be carried to this upstream"
                )
            translated.append({"role": role, "content": message["content"]})
        stop = body.get("stop")
        if isinstance(stop, str):
            stop = [stop]
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        temperature = body.get("temperature")
        return Request(
            messages=tuple(translated),
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
            temperature=float(temperature) if isinstance(temperature, (int, float)) else None,
            extra={"stop": stop} if stop else None,
        )

    def answer(self, completion: Completion, *, model: str) -> dict[str, Any]:
        return {
            "id": _completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": completion.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": completion.finish_reason or "stop",
                }
            ],
            "usage": _usage(completion),
        }

    def stream_writer(self, body: Mapping[str, Any], *, model: str) -> OpenAIStreamWriter:
        options = body.get("stream_options")
        usage = isinstance(options, dict) and options.get("include_usage") is True
        return OpenAIStreamWriter(model, include_usage=usage)

    def error(self, status: int, message: str) -> dict[str, Any]:
        kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}

    def stream_error(self, status: int, message: str) -> bytes:
        return b"event: error\ndata: " + orjson.dumps(self.error(status, message)) + b"\n\n"

    def opening(self, event: SSEEvent) -> bool:
        # The role chunk, or a chunk of no choices and no usage (Azure's content-filter
        # results come first so): deltas with nothing but a role or empty text, no finish.
        if event.data == "[DONE]":
            return False
        chunk = orjson.loads(event.data)  # the stream's decoder has parsed it already
        if not isinstance(chunk, dict) or chunk.get("usage") or chunk.get("error"):
            return False
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict) or choice.get("finish_reason"):
                return False
            if any(value for key, value in delta.items() if key != "role"):
                return False
        return True

    def terminal(self, event: SSEEvent) -> bool:
        return event.data == "[DONE]"


class OpenAIStreamWriter:
    """`chat.completion.chunk` events, then one with the usage (when the client asked for it,
    as OpenAI does), then `data: [DONE]`."""

    def __init__(self, model: str, *, include_usage: bool) -> None:
        self._include_usage = include_usage
        self._base = {
            "id": _completion_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }

    def _chunk(self, choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        payload = {**self._base, "choices": choices}
        if usage is not None:
            payload["usage"] = usage
        return b"data: " + orjson.dumps(payload) + b"\n\n"

    def start(self) -> bytes:
        delta = {"role": "assistant", "content": ""}
        return self._chunk([{"index": 0, "delta": delta, "finish_reason": None}])

    def piece(self, text: str) -> bytes:
        return self._chunk([{"index": 0, "delta": {"content": text}, "finish_reason": None}])

    def end(self, completion: Completion) -> bytes:
        reason = completion.finish_reason or "stop"
        last = self._chunk([{"index": 0, "delta": {}, "finish_reason": reason}])
        if self._include_usage:
            last += self._chunk([], _usage(completion))
        return last + b"data: [DONE]\n\n"


def _max_tokens(body: Mapping[str, Any]) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_OUTPUT_ESTIMATE


def _usage(completion: Completion) -> dict[str, Any]:
    usage = completion.usage
    prompt, output = (usage.input_tokens, usage.output_tokens) if usage else (0, 0)
    shown: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
    }
    if usage and usage.cache_read_tokens:  # within prompt_tokens, as OpenAI counts them
        shown["prompt_tokens_details"] = {"cached_tokens": usage.cache_read_tokens}
    return shown


def _completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]
