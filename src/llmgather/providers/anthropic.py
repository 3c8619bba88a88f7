"""Anthropic Messages API: requests, responses, named stream events, errors, rate-limit headers.

Error bodies are `{"type": "error", "error": {"type": ..., "message": ...}}`; the type decides:

    rate_limit_error (429)          → RateLimitError (Retry-After honoured)
      … with details.error_code enforced_spend_limit_reached (the tier's monthly spend cap)
        or contract_spend_limit_reached → QuotaExhaustedError (no wait within a job helps)
    overloaded_error (529)          → OverloadedError
    api_error (500)                 → ServerError
    timeout_error (504)             → ServerError (the server gave up; RequestTimeoutError is
                                      kept for our own read timeout)
    invalid_request_error (400)     → BadRequestError
      … "prompt is too long", "exceed context limit" → ContextLengthError
      … "credit balance is too low", "API usage limits" (the organization's or a
        workspace's spend limit) → QuotaExhaustedError
    request_too_large (413)         → BadRequestError
    authentication_error (401)      → AuthenticationError
    permission_error (403)          → PermissionDeniedError
    not_found_error (404)           → NotFoundError
    billing_error (402)             → QuotaExhaustedError
    no known type                   → by HTTP status, as for every provider
    an `error` event mid-stream     → the same mapping, raised from `feed`
    a 200 that does not parse       → MalformedResponseError
    a stream without message_stop,  → TruncatedStreamError
      or with no stop_reason before it

`stop_reason` reads in OpenAI's vocabulary as `finish_reason`: end_turn and stop_sequence are
"stop", max_tokens and model_context_window_exceeded "length", tool_use "tool_calls", refusal
"content_filter", anything else (pause_turn) "other"; the word itself is kept as
`provider_finish_reason`.

`tool_use` blocks become the Completion's `tool_calls` (streamed: `content_block_start` names
the call, `input_json_delta` events carry its input as JSON text). A `json_schema` request goes
as a forced tool (see `providers/_tools.py`): that tool's input is the answer's text, streamed
as text pieces, and its `tool_use` stop reads as "stop".
"""

from __future__ import annotations

from typing import Any

import orjson

from llmgather._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    MalformedResponseError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    QuotaExhaustedError,
    RateLimitError,
    ServerError,
    TruncatedStreamError,
    error_for_status,
)
from llmgather._redact import Redactor
from llmgather._types import Completion, Message, Request, ToolCall, Usage
from llmgather.providers._common import (
    BaseURL,
    announced_limits,
    error_body,
    fallback_message,
    load_json,
    retry_after_from_headers,
    safe_message,
    status_error,
    with_extra,
    word,
)
from llmgather.providers._tools import (
    JSON_ANSWER_TOOL,
    CallAssembler,
    anthropic_fields,
    anthropic_messages,
)
from llmgather.providers.base import Headers, HttpRequest
from llmgather.transport.sse import SSEEvent

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
# The Messages API requires max_tokens, other providers do not: a request that sets none gets
# this, enough for a paragraph-sized answer. Set `max_tokens` for anything longer.
DEFAULT_MAX_TOKENS = 1024

_BY_TYPE: dict[str, type[APIError]] = {
    "invalid_request_error": BadRequestError,
    "request_too_large": BadRequestError,
    "authentication_error": AuthenticationError,
    "permission_error": PermissionDeniedError,
    "not_found_error": NotFoundError,
    "billing_error": QuotaExhaustedError,
    "rate_limit_error": RateLimitError,
    "api_error": ServerError,
    "timeout_error": ServerError,
    "overloaded_error": OverloadedError,
}
# The status each type comes with, for an `error` event inside a 200 stream.
_STATUS_OF_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_CONTEXT_MESSAGES = ("prompt is too long", "exceed context limit", "exceeds the context window")
_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# The header that carries the key, so a base URL's user:password may go in Authorization.
KEY_HEADER = "x-api-key"
# Input and output tokens have windows of their own; `tokens-limit` is the most restrictive
# window of the moment, a budget of its own only for a server that announces nothing finer.
_LIMIT_HEADERS = {
    "rpm": "anthropic-ratelimit-requests-limit",
    "itpm": "anthropic-ratelimit-input-tokens-limit",
    "otpm": "anthropic-ratelimit-output-tokens-limit",
}
_COMBINED_TOKENS_HEADER = "anthropic-ratelimit-tokens-limit"
_QUOTA_MESSAGES = (
    "credit balance is too low",
    "reached your specified api usage limits",
    "reached your specified workspace api usage limits",
)
# `error.details.error_code` of an answer that says a spend limit is reached: the first two
# come as 429 rate_limit_error, with no retry-after, the last as 402.
_SPEND_LIMIT_CODES = frozenset(
    {
        "enforced_spend_limit_reached",
        "contract_spend_limit_reached",
        "linked_organization_spend_limit_reached",
    }
)


class AnthropicProvider:
    name = "anthropic"

    def __init__(self, *, api_key: str | None, base_url: str | None = None) -> None:
        base = BaseURL(base_url or DEFAULT_BASE_URL)
        self._redactor = Redactor((api_key, *base.secrets))
        # base_url is the server root (the anthropic SDK's convention).
        self._url = base.join("/v1/messages")
        self._headers = {"content-type": "application/json", "anthropic-version": API_VERSION}
        if api_key:
            self._headers[KEY_HEADER] = api_key
        if base.basic_auth:  # a proxy's own login, in front of the API
            self._headers["authorization"] = base.basic_auth

    def build_request(self, request: Request, *, model: str, stream: bool) -> HttpRequest:
        system = [_text(m) for m in request.messages if m.get("role") == "system"]
        messages = anthropic_messages([m for m in request.messages if m.get("role") != "system"])
        payload: dict[str, Any] = {
            "model": model,
            "max_tokens": request.max_tokens
            if request.max_tokens is not None
            else DEFAULT_MAX_TOKENS,
            "messages": messages,
        }
        if system:
            payload["system"] = "\n\n".join(system)
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        if stream:
            payload["stream"] = True
        payload |= anthropic_fields(request)
        return HttpRequest(
            "POST", self._url, self._headers, orjson.dumps(with_extra(payload, request.extra))
        )

    def parse_response(self, status: int, headers: Headers, body: bytes) -> Completion:
        data = load_json(body, "the message")
        if not isinstance(data, dict) or not isinstance(data.get("content"), list):
            raise MalformedResponseError("the message has no content list")
        blocks = [block for block in data["content"] if isinstance(block, dict)]
        text = "".join(block.get("text") or "" for block in blocks if block.get("type") == "text")
        calls = []
        json_answer = False
        for block in blocks:
            if block.get("type") != "tool_use":
                continue
            if block.get("name") == JSON_ANSWER_TOOL:
                # A json_schema answer, asked for as this forced tool's input: it is the text.
                text = orjson.dumps(block.get("input")).decode()
                json_answer = True
            else:
                calls.append(_tool_call(block))
        usage = _Usage()
        usage.update(data.get("usage"))
        stop_reason = word(data.get("stop_reason"))
        return Completion(
            text=text,
            usage=usage.total(),
            finish_reason=finish_reason(stop_reason, json_answer=json_answer and not calls),
            model=data.get("model"),
            provider_finish_reason=stop_reason,
            tool_calls=tuple(calls),
        )

    def parse_error(self, status: int, headers: Headers, body: bytes) -> APIError:
        data = error_body(body)
        error = data.get("error") if isinstance(data, dict) else None
        if not isinstance(error, dict):
            error = {}
        raw = error.get("message")
        if not isinstance(raw, str) or not raw:
            raw = fallback_message(status, body, self._redactor)
        cls = _BY_TYPE.get(str(error.get("type") or "")) or error_for_status(status)
        lowered = raw.lower()
        details = error.get("details")
        code = details.get("error_code") if isinstance(details, dict) else None
        if code in _SPEND_LIMIT_CODES or any(m in lowered for m in _QUOTA_MESSAGES):
            cls = QuotaExhaustedError
        elif cls is BadRequestError and any(m in lowered for m in _CONTEXT_MESSAGES):
            cls = ContextLengthError
        message = safe_message(raw, self._redactor)
        return status_error(status, message, retry_after=retry_after_from_headers(headers), cls=cls)

    def stream_decoder(self) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder(self)

    def announced_limits(self, headers: Headers) -> dict[str, float]:
        limits = announced_limits(headers, _LIMIT_HEADERS)
        if "itpm" not in limits and "otpm" not in limits:
            limits |= announced_limits(headers, {"tpm": _COMBINED_TOKENS_HEADER})
        return limits


class AnthropicStreamDecoder:
    """message_start, content_block_*, ping, message_delta, then message_stop (terminal)."""

    def __init__(self, provider: AnthropicProvider) -> None:
        self._provider = provider
        self._pieces: list[str] = []
        self._usage = _Usage()
        self._finish_reason: str | None = None
        self._model: str | None = None
        self._stopped = False
        self._calls = CallAssembler()

    def feed(self, event: SSEEvent) -> list[str]:
        data = load_json(event.data.encode(), "a stream event")
        if not isinstance(data, dict):
            raise MalformedResponseError("a stream event is not a JSON object")
        kind = event.event if event.event not in ("", "message") else str(data.get("type", ""))
        if kind == "content_block_delta":
            delta = data.get("delta")
            if not isinstance(delta, dict):
                raise MalformedResponseError("a content_block_delta event has no delta")
            if delta.get("type") == "input_json_delta":
                return self._json_delta(data.get("index", 0), delta.get("partial_json") or "")
            # Other delta types (thinking_delta, signature_delta, …) are not answer text.
            if delta.get("type") == "text_delta" and delta.get("text"):
                self._pieces.append(delta["text"])
                return [delta["text"]]
        elif kind == "content_block_start":
            block = data.get("content_block")
            if isinstance(block, dict) and block.get("type") == "tool_use":
                self._calls.start(data.get("index", 0), block.get("id"), block.get("name"))
        elif kind == "message_start":
            message = data.get("message")
            if not isinstance(message, dict):
                raise MalformedResponseError("a message_start event has no message")
            self._model = message.get("model")
            self._usage.update(message.get("usage"))
        elif kind == "message_delta":
            delta = data.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                self._finish_reason = word(delta["stop_reason"])
            self._usage.update(data.get("usage"))  # cumulative counts
        elif kind == "message_stop":
            self._stopped = True
        elif kind == "error":
            error = data.get("error")
            error_type = error.get("type") if isinstance(error, dict) else None
            status = _STATUS_OF_TYPE.get(str(error_type), 500)
            raise self._provider.parse_error(status, {}, event.data.encode())
        # ping, content_block_stop, and event types added later carry no text.
        return []

    def _json_delta(self, index: int, fragment: str) -> list[str]:
        """A piece of a tool call's input; the forced json_schema tool's pieces are text."""
        if index not in self._calls or not fragment:
            return []
        self._calls.add(index, fragment)
        if self._calls.name(index) == JSON_ANSWER_TOOL:
            self._pieces.append(fragment)
            return [fragment]
        return []

    def finish(self) -> Completion:
        if not self._stopped:
            raise TruncatedStreamError("the stream ended before its message_stop event")
        if self._finish_reason is None:
            # A whole message always says why it stopped (message_delta's stop_reason): a
            # message_stop without one ended an answer that was cut short.
            raise TruncatedStreamError("the stream's message_stop came before any stop_reason")
        every = self._calls.calls()
        calls = tuple(c for c in every if c.name != JSON_ANSWER_TOOL)
        json_answer = len(every) > len(calls) and not calls
        return Completion(
            text="".join(self._pieces),
            usage=self._usage.total(),
            finish_reason=finish_reason(self._finish_reason, json_answer=json_answer),
            model=self._model,
            provider_finish_reason=self._finish_reason,
            tool_calls=calls,
        )


def finish_reason(stop_reason: str | None, *, json_answer: bool = False) -> str | None:
    """Anthropic's stop_reason in OpenAI's vocabulary (see the module docstring); the
    tool_use stop of a json_schema answer (the forced tool's call, no other) is "stop"."""
    if stop_reason == "tool_use" and json_answer:
        return "stop"
    return None if stop_reason is None else _FINISH_REASONS.get(stop_reason, "other")


def _tool_call(block: dict[str, Any]) -> ToolCall:
    arguments = block.get("input")
    id, name = str(block.get("id") or ""), str(block.get("name") or "")
    if isinstance(arguments, dict):
        return ToolCall(id, name, arguments)
    return ToolCall(id, name, None, orjson.dumps(arguments).decode())


class _Usage:
    """Anthropic's usage counts, which streams report in pieces. Its `input_tokens` leaves out
    the cache reads and writes: normalised, they are part of the input, priced at their rates."""

    _INPUT = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def update(self, raw: Any) -> None:
        if isinstance(raw, dict):
            for key in (*self._INPUT, "output_tokens"):
                value = raw.get(key)
                if isinstance(value, int):
                    self.counts[key] = value

    def total(self) -> Usage | None:
        if not self.counts:
            return None
        return Usage(
            input_tokens=sum(self.counts.get(key, 0) for key in self._INPUT),
            output_tokens=self.counts.get("output_tokens", 0),
            cache_read_tokens=self.counts.get("cache_read_input_tokens", 0),
            cache_write_tokens=self.counts.get("cache_creation_input_tokens", 0),
        )


def _text(message: Message) -> str:
    content = message.get("content", "")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)
