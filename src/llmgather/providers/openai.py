"""OpenAI chat completions (and any OpenAI-compatible server): requests, responses, errors.

Statuses and bodies map to llmgather's tree as follows:

    429 rate_limit_exceeded   → RateLimitError (Retry-After honoured)
    429 insufficient_quota    → QuotaExhaustedError (billing: never retried), as are the
        billing codes under it (credit_balance_exhausted, organization_spend_limit_exceeded,
        project_spend_limit_exceeded, organization_usage_limit_exceeded) whatever their type
    429 on "requests per day (RPD)" or "tokens per day (TPD)" → QuotaExhaustedError: a
        day's budget spent, which the job's minutes will not bring back
    429 "Request too large"   → BadRequestError (one request over the TPM limit: no wait helps)
    400 context_length_exceeded → ContextLengthError, as are the context errors of the servers
        that copy the API: llama-server's `exceed_context_size_error` (a numeric `code`),
        vLLM's "maximum context length" / "maximum model length" (its error object may sit
        at the top level of the body, not under `error`)
    400, 422                  → BadRequestError
    401 / 403 / 404           → AuthenticationError / PermissionDeniedError / NotFoundError
    408                       → RequestTimeoutError
    500, 502, 503, 504        → ServerError
    529                       → OverloadedError
    a 200 that does not parse → MalformedResponseError
    a stream without finish_reason or [DONE] → TruncatedStreamError

`finish_reason` is already OpenAI's vocabulary (`stop`, `length`, `tool_calls`,
`content_filter`); the legacy `function_call` reads as `tool_calls`, and any other word a
compatible server invents (vLLM's `abort`) as `other`. The server's own word is kept as
`provider_finish_reason`.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import orjson

from llmgather._errors import (
    APIError,
    BadRequestError,
    ContextLengthError,
    MalformedResponseError,
    QuotaExhaustedError,
    TruncatedStreamError,
)
from llmgather._redact import Redactor
from llmgather._types import Completion, Request, ToolCall, Usage, remaining_key
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
from llmgather.providers._tools import CallAssembler, openai_fields, openai_messages
from llmgather.providers.base import Headers, HttpRequest
from llmgather.transport.sse import SSEEvent

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# The header that carries the key: a base URL's user:password (basic auth) would need it too,
# so the registry refuses the two together.
KEY_HEADER = "authorization"
_LIMIT_HEADERS = {"rpm": "x-ratelimit-limit-requests", "tpm": "x-ratelimit-limit-tokens"}
_RPM_LEFT = remaining_key("rpm")
# A key with a per-day request limit has it announced in the same headers as a per-minute one;
# the requests' reset time tells them apart (see `_per_day`).
_REQUESTS_RESET = "x-ratelimit-reset-requests"
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?)(h|ms|us|µs|ns|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
# The `code` or `type` of an answer that says the money or the month's allowance is spent.
_QUOTA_CODES = frozenset(
    {
        "insufficient_quota",
        "credit_balance_exhausted",
        "organization_spend_limit_exceeded",
        "project_spend_limit_exceeded",
        "organization_usage_limit_exceeded",
    }
)
# A 429 on a per-day limit names it so: "… on requests per day (RPD): Limit 200, Used 200 …".
_PER_DAY_LIMIT = re.compile(r"\bper day\b", re.IGNORECASE)
# The `code` or `type` of a context-window error: OpenAI's, llama-server's.
_CONTEXT_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error"})
# …and the words of those that name none: OpenAI's own message, vLLM's (old and new),
# llama-server's, Ollama's.
_CONTEXT_MESSAGES = (
    "maximum context length",
    "maximum model length",
    "exceeds the available context size",
    "exceeds the context length",
    "exceeds context length",
)


# The caller who sets either in `extra` has chosen the field: the adapter adds neither.
_MAX_TOKENS_FIELDS = frozenset({"max_tokens", "max_completion_tokens"})


class OpenAIProvider:
    name = "openai"

    def __init__(self, *, api_key: str | None, base_url: str | None = None) -> None:
        base = BaseURL(base_url or DEFAULT_BASE_URL)
        self._redactor = Redactor((api_key, *base.secrets))
        # A query in the base URL (Azure's `?api-version=`) stays a query.
        self._url = base.join("/chat/completions")
        # OpenAI's own API takes max_completion_tokens for every model (and o-series models
        # take nothing else); the servers that copy the API (vLLM, llama-server, Ollama) know
        # the older max_tokens.
        official = base.hostname == "api.openai.com"
        self._max_tokens_field = "max_completion_tokens" if official else "max_tokens"
        self._headers = {"content-type": "application/json"}
        if api_key:
            self._headers[KEY_HEADER] = f"Bearer {api_key}"
        elif base.basic_auth:
            self._headers[KEY_HEADER] = base.basic_auth

    def build_request(self, request: Request, *, model: str, stream: bool) -> HttpRequest:
        payload: dict[str, Any] = {"model": model, "messages": openai_messages(request.messages)}
        extra = request.extra or {}
        if request.max_tokens is not None and not extra.keys() & _MAX_TOKENS_FIELDS:
            payload[self._max_tokens_field] = request.max_tokens
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        payload |= openai_fields(request)
        body = orjson.dumps(with_extra(payload, request.extra))
        return HttpRequest("POST", self._url, self._headers, body)

    def parse_response(self, status: int, headers: Headers, body: bytes) -> Completion:
        data = load_json(body, "the chat completion")
        try:
            choice = data["choices"][0]
            message = choice["message"]
            text = message.get("content") or ""
            raw_reason = word(choice.get("finish_reason"))
            return Completion(
                text=text,
                usage=_usage(data.get("usage")),
                finish_reason=finish_reason(raw_reason),
                model=data.get("model"),
                provider_finish_reason=raw_reason,
                tool_calls=_tool_calls(message.get("tool_calls")),
            )
        except (KeyError, IndexError, TypeError, AttributeError):
            raise MalformedResponseError("the chat completion has no choices[0].message") from None

    def parse_error(self, status: int, headers: Headers, body: bytes) -> APIError:
        error = _error_object(error_body(body))
        # `code` is a string at OpenAI ("insufficient_quota") and a number at llama-server and
        # vLLM (the HTTP status again): either, or the `type`, may name the error.
        kinds = {str(error.get("code") or ""), str(error.get("type") or "")}
        raw = error.get("message")
        if not isinstance(raw, str) or not raw:
            raw = fallback_message(status, body, self._redactor)
        message = safe_message(raw, self._redactor)
        retry_after = retry_after_from_headers(headers)
        cls: type[APIError] | None = None
        if kinds & _QUOTA_CODES:
            cls = QuotaExhaustedError
        elif kinds & _CONTEXT_CODES or (status in (400, 413) and _too_long(raw)):
            cls = ContextLengthError
        elif status == 429 and message.startswith("Request too large"):
            cls = BadRequestError
        elif status == 429 and _PER_DAY_LIMIT.search(raw):
            cls = QuotaExhaustedError
            message += " (a per-day limit: not retried; rerun once the day's budget has refilled)"
        return status_error(status, message, retry_after=retry_after, cls=cls)

    def stream_decoder(self) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder(self)

    def announced_limits(self, headers: Headers) -> dict[str, float]:
        limits = announced_limits(headers, _LIMIT_HEADERS)
        if "rpm" in limits and _per_day(headers, limits["rpm"], limits.get(_RPM_LEFT)):
            limits["rpd"] = limits.pop("rpm")
            if (left := limits.pop(_RPM_LEFT, None)) is not None:
                limits[remaining_key("rpd")] = left
        return limits


class OpenAIStreamDecoder:
    """Chunks of `chat.completion.chunk` until `data: [DONE]`."""

    def __init__(self, provider: OpenAIProvider) -> None:
        self._provider = provider
        self._pieces: list[str] = []
        self._finish_reason: str | None = None
        self._usage: Usage | None = None
        self._model: str | None = None
        self._done = False
        self._calls = CallAssembler()

    def feed(self, event: SSEEvent) -> list[str]:
        if event.data == "[DONE]":
            self._done = True
            return []
        data = load_json(event.data.encode(), "a stream event")
        if not isinstance(data, dict):
            raise MalformedResponseError("a stream event is not a JSON object")
        if data.get("error"):
            # llama-server and vLLM put the status their error would have had in a numeric
            # `code`; OpenAI's string codes say nothing of it, and the stream had said 200.
            code = _error_object(data).get("code")
            status = code if isinstance(code, int) and 400 <= code < 600 else 500
            raise self._provider.parse_error(status, {}, event.data.encode())
        self._model = data.get("model") or self._model
        if data.get("usage"):
            self._usage = _usage(data["usage"])
        pieces: list[str] = []
        for choice in data.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # with n > 1 the answer is the first choice, as in a plain response
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                pieces.append(content)
            for call in delta.get("tool_calls") or ():
                self._call_delta(call)
            if choice.get("finish_reason"):
                self._finish_reason = word(choice["finish_reason"])
        self._pieces.extend(pieces)
        return pieces

    def _call_delta(self, call: dict[str, Any]) -> None:
        """A piece of a tool call: its first names the id and the function, the others carry
        fragments of the arguments' JSON text, all under the call's `index`."""
        index = call.get("index", 0)
        function = call.get("function") or {}
        self._calls.start(index, call.get("id"), function.get("name"))
        if function.get("arguments"):
            self._calls.add(index, function["arguments"])

    def finish(self) -> Completion:
        if self._finish_reason is None or not self._done:
            missing = "finish_reason" if self._finish_reason is None else "data: [DONE]"
            raise TruncatedStreamError(f"the stream ended before its {missing}")
        return Completion(
            text="".join(self._pieces),
            usage=self._usage,
            finish_reason=finish_reason(self._finish_reason),
            model=self._model,
            provider_finish_reason=self._finish_reason,
            tool_calls=self._calls.calls(),
        )


def _tool_calls(raw: Any) -> tuple[ToolCall, ...]:
    """The function calls of a message; arguments come as JSON text, parsed here."""
    if not isinstance(raw, list):
        return ()
    calls = []
    for call in raw:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):  # a custom tool's call has `custom`, not `function`
            arguments = function.get("arguments")
            text = arguments if isinstance(arguments, str) else ""
            calls.append(
                ToolCall.from_json(str(call.get("id") or ""), str(function.get("name")), text)
            )
    return tuple(calls)


def finish_reason(raw: str | None) -> str | None:
    """The server's finish_reason in OpenAI's own vocabulary (see the module docstring)."""
    return None if raw is None else _FINISH_REASONS.get(raw, "other")


def _error_object(data: Any) -> dict[str, Any]:
    """The error object of a body: under `error` (OpenAI, llama-server, vLLM today), the body
    itself (older vLLM: `{"object": "error", "message": …}`), or a bare string under `error`."""
    if not isinstance(data, dict):
        return {}
    error = data.get("error")
    if isinstance(error, dict):
        return error
    if isinstance(error, str):
        return {"message": error}
    return data if "message" in data else {}


def _too_long(message: str) -> bool:
    lowered = message.lower()
    return any(words in lowered for words in _CONTEXT_MESSAGES)


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    # `prompt_tokens` counts the cached ones, `completion_tokens` the reasoning ones: both are
    # already the normalised counts. OpenAI reports no cache writes (they cost plain input).
    details = raw.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        input_tokens=int(raw.get("prompt_tokens") or 0),
        output_tokens=int(raw.get("completion_tokens") or 0),
        cache_read_tokens=int(cached or 0),
    )


def _per_day(headers: Headers, limit: float, remaining: float | None) -> bool:
    """True when the requests headers announce a day's limit, not a minute's.

    A budget refills its limit over its window, so what is used (the limit less what remains)
    refills in `used / limit` of the window: the reset time gives the window. OpenAI's "200",
    "199" left, reset "7m12s" is one request in 432 s, 200 a day; a minute's budget never takes
    longer than a minute to refill. Without a usable reset, the headers stay a minute's.
    """
    reset = _go_duration(headers.get(_REQUESTS_RESET))
    if reset is None:
        return False
    if reset > 61.0:  # a minute's budget refills within a minute (a second for rounding)
        return True
    used = limit - remaining if remaining is not None else 0.0
    return used >= 1 and reset * limit / used > 3600.0  # a window of hours: a day


@functools.lru_cache(maxsize=64)  # read from every answer's headers: a few distinct values
def _go_duration(text: str | None) -> float | None:
    """Seconds in a Go duration as OpenAI's reset headers write it ("6m0s", "8.64s", "120ms")."""
    if not text:
        return None
    text = text.strip()
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
