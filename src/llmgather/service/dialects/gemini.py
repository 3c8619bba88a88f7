"""The Gemini `generateContent` dialect at the gateway's front
(`POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent?alt=sse`).

Translated to another upstream, a request may carry text parts, a `systemInstruction`, and
of its `generationConfig` maxOutputTokens, temperature, stopSequences and candidateCount 1;
tools, images, safety settings, response schemas, thinking and the rest are refused by name.
Fields are read in both spellings the REST API accepts (`generationConfig`,
`generation_config`). Answers are rendered as the API sends them: a GenerateContentResponse,
or (streamed) one per `data:` event, the last with the finish reason and usage.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from llmgather._types import Completion, Request
from llmgather.limits import Cost
from llmgather.limits.tokens import DEFAULT_OUTPUT_ESTIMATE, estimate_prompt_tokens
from llmgather.service.dialects.base import Untranslatable, refuse_unknown
from llmgather.transport.sse import SSEEvent

# Top-level fields another dialect's upstream can carry, in both spellings; `model` is not a
# body field of the API, but a client may send it, and the path names the model anyway.
_TRANSLATED = frozenset(
    "contents systemInstruction system_instruction generationConfig generation_config model".split()
)
# generationConfig fields that translate (candidateCount only as 1; responseMimeType only as
# plain text, the default).
_CONFIG = {
    "maxOutputTokens": "max_output_tokens",
    "temperature": "temperature",
    "stopSequences": "stop_sequences",
    "candidateCount": "candidate_count",
    "responseMimeType": "response_mime_type",
}
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_ROLES = {"user": "user", "model": "assistant"}
# The normalised finish reason (OpenAI's word) as Gemini's finishReason.
_FINISH_REASONS = {
    "stop": "STOP",
    "tool_calls": "STOP",
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
    "other": "OTHER",
}


class GeminiFront:
    name = "gemini"

    def cost(self, body: Mapping[str, Any]) -> Cost:
        messages = []
        system = _get(body, "systemInstruction", "system_instruction")
        contents = body.get("contents")
        for content in (system, *(contents if isinstance(contents, list) else ())):
            parts = content.get("parts") if isinstance(content, dict) else None
            if isinstance(parts, list):
                messages.append({"content": [p for p in parts if isinstance(p, dict)]})
        config = _get(body, "generationConfig", "generation_config")
        config = config if isinstance(config, dict) else {}
        output = _positive(_get(config, "maxOutputTokens", "max_output_tokens"))
        candidates = _positive(_get(config, "candidateCount", "candidate_count")) or 1
        return Cost(
            requests=1,
            input_tokens=estimate_prompt_tokens(messages),
            output_tokens=(output or DEFAULT_OUTPUT_ESTIMATE) * candidates,
        )

    def to_request(self, body: Mapping[str, Any]) -> Request:
        refuse_unknown(body, _TRANSLATED)
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise Untranslatable("contents must be a non-empty list of Content objects")
        messages = []
        system = _get(body, "systemInstruction", "system_instruction")
        if system is not None:
            messages.append({"role": "system", "content": _text(system, "systemInstruction")})
        for i, content in enumerate(contents):
            where = f"contents[{i}]"
            role = (content.get("role") or "user") if isinstance(content, dict) else None
            if role not in _ROLES:
                raise Untranslatable(f"{where}.role must be 'user' or 'model', not {role!r}")
            messages.append({"role": _ROLES[role], "content": _text(content, where)})
        config = _config(_get(body, "generationConfig", "generation_config"))
        temperature = config.get("temperature")
        stop = config.get("stopSequences")
        return Request(
            messages=tuple(messages),
            max_tokens=config.get("maxOutputTokens"),
            temperature=float(temperature) if temperature is not None else None,
            extra={"stop": stop} if stop else None,
        )

    def answer(self, completion: Completion, *, model: str) -> dict[str, Any]:
        return _response(model, _response_id(), completion.text, completion)

    def stream_writer(self, body: Mapping[str, Any], *, model: str) -> GeminiStreamWriter:
        return GeminiStreamWriter(model)

    def error(self, status: int, message: str) -> dict[str, Any]:
        name = _STATUS_NAMES.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
        return {"error": {"code": status, "message": message, "status": name}}

    def stream_error(self, status: int, message: str) -> bytes:
        # The SDK raises for a `data:` event whose JSON starts with {"error": …}; an SSE
        # `event:` line would reach its JSON parser instead.
        return _data(self.error(status, message))

    def opening(self, event: SSEEvent) -> bool:
        return False  # every event of Gemini's stream is a response with its candidates

    def terminal(self, event: SSEEvent) -> bool:
        # Gemini's stream has no end event: the SDK reads to the connection's end, so an
        # error after the last event (one without a finishReason) still reaches it.
        return False


class GeminiStreamWriter:
    """One GenerateContentResponse per `data:` event, as `alt=sse` sends them; the last has
    an empty text part, the finish reason and the usage (the pieces came before it)."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._id = _response_id()

    def start(self) -> bytes:
        return b""  # Gemini's stream has no head: its first event carries text

    def piece(self, text: str) -> bytes:
        return _data(_response(self._model, self._id, text, None))

    def end(self, completion: Completion) -> bytes:
        return _data(_response(self._model, self._id, "", completion))


def finish_reason(normalised: str | None) -> str:
    """The normalised finish reason as Gemini's finishReason (STOP when unknown)."""
    return _FINISH_REASONS.get(normalised or "stop", "OTHER")


def _response(
    model: str, response_id: str, text: str, completion: Completion | None
) -> dict[str, Any]:
    """A GenerateContentResponse; `completion` (its end) adds the finish reason and usage."""
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}}
    response: dict[str, Any] = {"candidates": [candidate]}
    if completion is not None:
        candidate["finishReason"] = finish_reason(completion.finish_reason)
        usage = completion.usage
        prompt, output = (usage.input_tokens, usage.output_tokens) if usage else (0, 0)
        response["usageMetadata"] = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": output,
            "totalTokenCount": prompt + output,
        }
        if usage and usage.cache_read_tokens:  # within promptTokenCount, as Gemini counts them
            response["usageMetadata"]["cachedContentTokenCount"] = usage.cache_read_tokens
    candidate["index"] = 0
    response["modelVersion"] = model
    response["responseId"] = response_id
    return response


def _config(raw: Any) -> dict[str, Any]:
    """The generationConfig's translatable fields, camelCase, checked; Untranslatable names
    any other field, or a value another upstream cannot honour."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise Untranslatable("generationConfig must be an object")
    known = set(_CONFIG) | set(_CONFIG.values())
    refuse_unknown(raw, known, prefix="generationConfig.")
    config = {camel: _get(raw, camel, snake) for camel, snake in _CONFIG.items()}
    if config["candidateCount"] not in (None, 1):
        raise Untranslatable(
            "generationConfig.candidateCount: this upstream gives one candidate; send 1 or none"
        )
    if config["responseMimeType"] not in (None, "text/plain"):
        raise Untranslatable(
            "generationConfig.responseMimeType: this upstream answers text/plain only"
        )
    max_tokens = config["maxOutputTokens"]
    if max_tokens is not None and _positive(max_tokens) is None:
        raise Untranslatable("generationConfig.maxOutputTokens must be a positive integer")
    temperature = config["temperature"]
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, (int, float))
    ):
        raise Untranslatable("generationConfig.temperature must be a number")
    stop = config["stopSequences"]
    if stop is not None and (
        not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)
    ):
        raise Untranslatable("generationConfig.stopSequences must be a list of strings")
    return {key: value for key, value in config.items() if value is not None}


def _text(content: Any, where: str) -> str:
    """The text of a Content object of text parts; Untranslatable for any other part."""
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        raise Untranslatable(f"{where}.parts must be a list of parts")
    texts = []
    for j, part in enumerate(parts):
        other = sorted(set(part) - {"text"}) if isinstance(part, dict) else ["part"]
        if other or not isinstance(part.get("text"), str):
            name = other[0] if other else "text"
            raise Untranslatable(
                f"{where}.parts[{j}].{name}: only text parts can be carried to this upstream "
                "(no inline data, files, function calls or responses, thoughts)"
            )
        texts.append(part["text"])
    return "".join(texts)


def _get(mapping: Mapping[str, Any], camel: str, snake: str) -> Any:
    # The REST API reads proto JSON, which accepts both spellings of a field.
    value = mapping.get(camel)
    return mapping.get(snake) if value is None else value


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _response_id() -> str:
    return uuid.uuid4().hex[:22]


def _data(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\r\n\r\n"
