"""The Anthropic Messages dialect at the gateway's front (`POST /v1/messages`).

Translated to another upstream, a request may carry text (a string, or text blocks), a system
prompt, max_tokens, temperature, stop_sequences and `stream`; tools, images, thinking and the
rest are refused by name. Answers are rendered as the Messages API sends them: a `message`
object, or its named events (message_start … message_stop).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from llmgather._types import Completion, Request
from llmgather.limits import Cost
from llmgather.limits.tokens import (
    DEFAULT_OUTPUT_ESTIMATE,
    estimate_prompt_tokens,
    estimate_text_tokens,
    message_text,
)
from llmgather.service.dialects.base import Untranslatable, refuse_unknown
from llmgather.transport.sse import SSEEvent

# Fields another dialect's upstream can carry. `metadata` holds only an end-user id, which
# changes no answer (as OpenAI's `user`, which that front accepts too).
_TRANSLATED = frozenset(
    "model messages max_tokens system temperature stop_sequences stream metadata".split()
)
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
# The events of a relayed stream that come before any of the answer.
_OPENING_EVENTS = frozenset({"message_start", "content_block_start", "ping"})
# The normalised finish reason (OpenAI's word) as Anthropic's stop_reason.
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


class AnthropicFront:
    name = "anthropic"

    def cost(self, body: Mapping[str, Any]) -> Cost:
        messages = body.get("messages")
        prompt = 0
        if isinstance(messages, list):
            prompt = estimate_prompt_tokens(m for m in messages if isinstance(m, dict))
        system = body.get("system")
        if isinstance(system, (str, list)):
            prompt += estimate_text_tokens(message_text({"content": system}))
        max_tokens = body.get("max_tokens")
        output = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None
        return Cost(
            requests=1, input_tokens=prompt, output_tokens=output or DEFAULT_OUTPUT_ESTIMATE
        )

    def to_request(self, body: Mapping[str, Any]) -> Request:
        refuse_unknown(body, _TRANSLATED)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise Untranslatable("messages must be a non-empty list of messages")
        translated = []
        system = body.get("system")
        if system is not None and (text := _text(system, "system")):
            translated.append({"role": "system", "content": text})
        for i, message in enumerate(messages):
            where = f"messages[{i}]"
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                raise Untranslatable(f"{where}: role must be 'user' or 'assistant'")
            content = _text(message.get("content"), f"{where}.content")
            translated.append({"role": message["role"], "content": content})
        max_tokens = body.get("max_tokens")
        temperature = body.get("temperature")
        return Request(
            messages=tuple(translated),
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
            temperature=float(temperature) if isinstance(temperature, (int, float)) else None,
            extra=_stop(body.get("stop_sequences")),
        )

    def answer(self, completion: Completion, *, model: str) -> dict[str, Any]:
        return {
            **_message(model, completion),
            "content": [{"type": "text", "text": completion.text}],
            "stop_reason": stop_reason(completion.finish_reason),
        }

    def stream_writer(self, body: Mapping[str, Any], *, model: str) -> AnthropicStreamWriter:
        return AnthropicStreamWriter(model)

    def error(self, status: int, message: str) -> dict[str, Any]:
        kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def stream_error(self, status: int, message: str) -> bytes:
        return _event("error", self.error(status, message))

    def opening(self, event: SSEEvent) -> bool:
        # A content block's start names its kind (text, a tool's name) but none of its content.
        return _kind(event) in _OPENING_EVENTS

    def terminal(self, event: SSEEvent) -> bool:
        return _kind(event) == "message_stop"


class AnthropicStreamWriter:
    """message_start, one text block (its start, text_delta events, its stop), message_delta
    with the stop reason and usage, message_stop: the events the Anthropic SDK accumulates.

    The input tokens are known only at the end (from the upstream's usage): message_start
    says 0, message_delta the count, which the SDK takes as the total."""

    def __init__(self, model: str) -> None:
        self._model = model

    def start(self) -> bytes:
        message = {**_message(self._model, None), "content": [], "stop_reason": None}
        block = {"type": "content_block_start", "index": 0, "content_block": _text_block("")}
        return _event("message_start", {"type": "message_start", "message": message}) + _event(
            "content_block_start", block
        )

    def piece(self, text: str) -> bytes:
        delta = {"type": "text_delta", "text": text}
        return _event(
            "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
        )

    def end(self, completion: Completion) -> bytes:
        delta = {"stop_reason": stop_reason(completion.finish_reason), "stop_sequence": None}
        return (
            _event("content_block_stop", {"type": "content_block_stop", "index": 0})
            + _event(
                "message_delta",
                {"type": "message_delta", "delta": delta, "usage": _usage(completion)},
            )
            + _event("message_stop", {"type": "message_stop"})
        )


def stop_reason(finish_reason: str | None) -> str:
    """The normalised finish reason as Anthropic's stop_reason (end_turn when unknown)."""
    return _STOP_REASONS.get(finish_reason or "stop", "end_turn")


def _text(content: Any, where: str) -> str:
    """A string, or a list of text blocks, as one string; Untranslatable for anything else."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise Untranslatable(f"{where} must be a string or a list of text blocks")
    texts = []
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind != "text" or not isinstance(block.get("text"), str):
            raise Untranslatable(
                f"{where}[{j}]: only text blocks can be carried to this upstream, not "
                f"{kind or 'this block'} (no images, documents, tool_use or tool_result)"
            )
        extra = sorted(set(block) - {"type", "text"})
        if extra:
            raise Untranslatable(
                f"{where}[{j}].{extra[0]} cannot be carried to this upstream; send the text "
                "block without it"
            )
        texts.append(block["text"])
    return "".join(texts)


def _stop(value: Any) -> dict[str, Any] | None:
    if value is None or value == []:
        return None
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise Untranslatable("stop_sequences must be a list of strings")
    return {"stop": value}


def _message(model: str, completion: Completion | None) -> dict[str, Any]:
    return {
        "id": "msg_" + uuid.uuid4().hex[:24],
        "type": "message",
        "role": "assistant",
        "model": model,
        "stop_sequence": None,
        "usage": _usage(completion),
    }


def _usage(completion: Completion | None) -> dict[str, int]:
    usage = completion.usage if completion is not None else None
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    # Anthropic's input_tokens leave out the cache's share, told apart as it tells it.
    return {
        "input_tokens": usage.uncached_input_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "output_tokens": usage.output_tokens,
    }


def _text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _kind(event: SSEEvent) -> str:
    """A stream event's type: its `event:` name, or (when a server leaves it out) its data's."""
    if event.event not in ("", "message"):
        return event.event
    data = orjson.loads(event.data)  # the stream's decoder has parsed it already
    return str(data.get("type", "")) if isinstance(data, dict) else ""


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
