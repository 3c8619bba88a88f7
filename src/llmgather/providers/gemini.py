"""Google Gemini `generateContent` (the Gemini API, not Vertex AI): requests, responses, errors.

Errors carry a gRPC status name in `error.status` and typed `details`; they map as follows:

    RESOURCE_EXHAUSTED (429)        → RateLimitError, retry_after from RetryInfo.retryDelay
                                      (else the Retry-After header)
      … with a per-day QuotaFailure → QuotaExhaustedError (cannot recover within a job)
      … with a per-minute QuotaFailure, its `quotaValue` is the limit announced (`announced`:
        "rpm" for requests, "itpm" for input tokens…), as OpenAI's headers announce theirs:
        the limiter paces at it instead of searching for it by AIMD
    INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE (400) → BadRequestError
      … "input token count … exceeds the maximum" → ContextLengthError
      … ErrorInfo reason API_KEY_INVALID (a 400!) → AuthenticationError
    UNAUTHENTICATED (401)           → AuthenticationError
    PERMISSION_DENIED (403)         → PermissionDeniedError
    NOT_FOUND (404)                 → NotFoundError
    INTERNAL (500), UNAVAILABLE (503), DEADLINE_EXCEEDED (504) → ServerError (the server gave
                                      up; RequestTimeoutError is kept for our own read timeout)
    no status name                  → by HTTP status, as for every provider
    a prompt blocked by promptFeedback.blockReason → BadRequestError (resending cannot help)
    a 200 that does not parse       → MalformedResponseError
    a stream without a finishReason → TruncatedStreamError

`functionCall` parts (whole, in a stream too) become the Completion's `tool_calls`; tools and
a `json_schema` are sent as JSON Schema (see `providers/_tools.py`).

A candidate stopped by SAFETY, RECITATION and the like is not an error: it is a Completion
with whatever text it has (often none) and that finish reason, for the caller to judge.

`finishReason` reads in OpenAI's vocabulary as `finish_reason`: STOP is "stop" (or
"tool_calls" when the answer holds a functionCall part), MAX_TOKENS "length", the
safety-like reasons (SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII, …)
"content_filter", anything else "other"; the word itself is kept as `provider_finish_reason`.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import quote

import orjson

from llmgather._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    InvalidInputError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExhaustedError,
    RateLimitError,
    ServerError,
    TruncatedStreamError,
    error_for_status,
)
from llmgather._redact import Redactor
from llmgather._types import Completion, Message, Request, ToolCall, Usage, remaining_key
from llmgather.providers._common import (
    BaseURL,
    error_body,
    fallback_message,
    load_json,
    retry_after_from_headers,
    safe_message,
    status_error,
    with_extra,
    word,
)
from llmgather.providers._tools import gemini_fields, gemini_parts
from llmgather.providers.base import Headers, HttpRequest
from llmgather.transport.sse import SSEEvent

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"

_ROLES = {"user": "user", "assistant": "model", "model": "model"}
_BY_STATUS_NAME: dict[str, type[APIError]] = {
    "INVALID_ARGUMENT": BadRequestError,
    "FAILED_PRECONDITION": BadRequestError,
    "OUT_OF_RANGE": BadRequestError,
    "UNAUTHENTICATED": AuthenticationError,
    "PERMISSION_DENIED": PermissionDeniedError,
    "NOT_FOUND": NotFoundError,
    "RESOURCE_EXHAUSTED": RateLimitError,
    "INTERNAL": ServerError,
    "UNAVAILABLE": ServerError,
    "DEADLINE_EXCEEDED": ServerError,
}
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
# The header that carries the key, so a base URL's user:password may go in Authorization.
KEY_HEADER = "x-goog-api-key"
_FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length"} | dict.fromkeys(
    (
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    ),
    "content_filter",
)


class GeminiProvider:
    name = "gemini"

    def __init__(self, *, api_key: str | None, base_url: str | None = None) -> None:
        self._base = BaseURL(base_url or DEFAULT_BASE_URL)
        self._redactor = Redactor((api_key, *self._base.secrets))
        # base_url is the server root (the google-genai SDK's convention); the version is ours.
        self._headers = {"content-type": "application/json"}
        if api_key:
            # A header, never `?key=`: URLs end up in logs and exception messages.
            self._headers[KEY_HEADER] = api_key
        if self._base.basic_auth:  # a proxy's own login, in front of the API
            self._headers["authorization"] = self._base.basic_auth

    def build_request(self, request: Request, *, model: str, stream: bool) -> HttpRequest:
        payload: dict[str, Any] = {}
        system: list[dict[str, str]] = []
        contents: list[dict[str, Any]] = []
        for message in request.messages:
            role = message.get("role", "user")
            tool_turn = gemini_parts(message)
            if tool_turn is not None:
                role, parts = tool_turn
                previous = contents[-1] if contents else None
                if role == "user" and previous and "functionResponse" in previous["parts"][-1]:
                    previous["parts"].extend(parts)  # the results of one turn's calls, together
                else:
                    contents.append({"role": role, "parts": parts})
            elif role == "system":
                system.extend(_parts(message))
            elif role in _ROLES:
                contents.append({"role": _ROLES[role], "parts": _parts(message)})
            else:
                raise InvalidInputError(
                    f"Gemini takes messages with role system, user or assistant, not {role!r}"
                )
        payload["contents"] = contents
        if system:
            payload["systemInstruction"] = {"parts": system}
        config: dict[str, Any] = {}
        if request.max_tokens is not None:
            config["maxOutputTokens"] = request.max_tokens
        if request.temperature is not None:
            config["temperature"] = request.temperature
        tool_fields, tool_config = gemini_fields(request)
        payload |= tool_fields
        config |= tool_config
        if config:
            payload["generationConfig"] = config
        # A bare name is a base model; `tunedModels/x` (or `models/x`) is already a resource path.
        name = model if "/" in model else "models/" + model
        name = "/".join(quote(part, safe="") for part in name.split("/"))
        method, query = (
            (":streamGenerateContent", "alt=sse") if stream else (":generateContent", "")
        )
        url = self._base.join(f"/{API_VERSION}/{name}{method}", query)
        body = orjson.dumps(with_extra(payload, request.extra))
        return HttpRequest("POST", url, self._headers, body)

    def parse_response(self, status: int, headers: Headers, body: bytes) -> Completion:
        data = load_json(body, "the generateContent response")
        if not isinstance(data, dict):
            raise MalformedResponseError("the generateContent response is not a JSON object")
        _raise_if_blocked(data, self._redactor)
        candidate = _first_candidate(data)
        if candidate is None:
            raise MalformedResponseError("the generateContent response has no candidates")
        raw_reason = word(candidate.get("finishReason"))
        return Completion(
            text="".join(_texts(candidate)),
            usage=_usage(data.get("usageMetadata")),
            finish_reason=finish_reason(raw_reason, calls_tools=_calls_tools(candidate)),
            model=data.get("modelVersion"),
            provider_finish_reason=raw_reason,
            tool_calls=tuple(_tool_calls(candidate, 0)),
        )

    def parse_error(self, status: int, headers: Headers, body: bytes) -> APIError:
        data = error_body(body)
        if isinstance(data, list) and data:
            data = data[0]  # some Google front ends wrap the error in a one-element list
        error = data.get("error") if isinstance(data, dict) else None
        if not isinstance(error, dict):
            error = {}
        details = [d for d in error.get("details") or () if isinstance(d, dict)]
        raw = error.get("message")
        if not isinstance(raw, str) or not raw:
            raw = fallback_message(status, body, self._redactor)
        cls = _classify(status, str(error.get("status") or ""), details, raw)
        if cls is QuotaExhaustedError:
            raw += " (a per-day quota: it resets at midnight Pacific time, so it is not retried)"
        message = safe_message(raw, self._redactor)
        retry_after = _retry_delay(details)
        if retry_after is None:
            retry_after = retry_after_from_headers(headers)
        error = status_error(status, message, retry_after=retry_after, cls=cls)
        if cls is RateLimitError:
            error.announced = _announced_quotas(details) or None
        return error

    def stream_decoder(self) -> GeminiStreamDecoder:
        return GeminiStreamDecoder(self)

    def announced_limits(self, headers: Headers) -> dict[str, float]:
        return {}  # Gemini announces no limits on its answers, only in a 429's body


class GeminiStreamDecoder:
    """`data:` events, each a whole GenerateContentResponse; the last carries finishReason."""

    def __init__(self, provider: GeminiProvider) -> None:
        self._provider = provider
        self._pieces: list[str] = []
        self._finish_reason: str | None = None
        self._usage: Usage | None = None
        self._model: str | None = None
        self._calls_tools = False
        self._calls: list[ToolCall] = []

    def feed(self, event: SSEEvent) -> list[str]:
        if not event.data.strip():
            return []
        data = load_json(event.data.encode(), "a stream event")
        if not isinstance(data, dict):
            raise MalformedResponseError("a stream event is not a JSON object")
        if data.get("error"):
            error = data["error"] if isinstance(data["error"], dict) else {}
            code = error.get("code")
            status = code if isinstance(code, int) and code >= 400 else 500
            raise self._provider.parse_error(status, {}, event.data.encode())
        _raise_if_blocked(data, self._provider._redactor)
        self._model = data.get("modelVersion") or self._model
        if data.get("usageMetadata"):
            self._usage = _usage(data["usageMetadata"])  # cumulative: the last one is the total
        candidate = _first_candidate(data)
        if candidate is None:
            return []
        if candidate.get("finishReason"):
            self._finish_reason = word(candidate["finishReason"])
        self._calls_tools = self._calls_tools or _calls_tools(candidate)
        # Gemini streams each functionCall part whole, never in pieces.
        self._calls.extend(_tool_calls(candidate, len(self._calls)))
        pieces = [text for text in _texts(candidate) if text]
        self._pieces.extend(pieces)
        return pieces

    def finish(self) -> Completion:
        if self._finish_reason is None:
            raise TruncatedStreamError("the stream ended before an event with a finishReason")
        return Completion(
            text="".join(self._pieces),
            usage=self._usage,
            finish_reason=finish_reason(self._finish_reason, calls_tools=self._calls_tools),
            model=self._model,
            provider_finish_reason=self._finish_reason,
            tool_calls=tuple(self._calls),
        )


def _tool_calls(candidate: dict[str, Any], first: int) -> list[ToolCall]:
    """The functionCall parts of a candidate; `args` is already an object. Gemini's own `id`
    is kept when it sends one, else the call is known by its place: `call_0`, `call_1`…"""
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    calls: list[ToolCall] = []
    for part in parts if isinstance(parts, list) else ():
        call = part.get("functionCall") if isinstance(part, dict) else None
        if not isinstance(call, dict):
            continue
        id = str(call.get("id") or f"call_{first + len(calls)}")
        name, args = str(call.get("name") or ""), call.get("args", {})
        if isinstance(args, dict):
            calls.append(ToolCall(id, name, args))
        else:
            calls.append(ToolCall(id, name, None, orjson.dumps(args).decode()))
    return calls


def finish_reason(raw: str | None, *, calls_tools: bool = False) -> str | None:
    """Gemini's finishReason in OpenAI's vocabulary (see the module docstring)."""
    if raw is None:
        return None
    if raw == "STOP" and calls_tools:
        return "tool_calls"
    return _FINISH_REASONS.get(raw, "other")


def _parts(message: Message) -> list[dict[str, str]]:
    content = message.get("content", "")
    if isinstance(content, str):
        return [{"text": content}]
    if isinstance(content, list):
        parts: list[dict[str, str]] = []
        for part in content:
            if isinstance(part, str):
                parts.append({"text": part})
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append({"text": part["text"]})
            else:
                raise InvalidInputError("Gemini messages here may carry only text parts")
        return parts
    raise InvalidInputError("a message's content must be a string or a list of text parts")


def _first_candidate(data: dict[str, Any]) -> dict[str, Any] | None:
    candidates = data.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        return None
    candidate = candidates[0]
    if not isinstance(candidate, dict):
        raise MalformedResponseError("candidates[0] is not a JSON object")
    return candidate


def _calls_tools(candidate: dict[str, Any]) -> bool:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return isinstance(parts, list) and any(
        isinstance(p, dict) and p.get("functionCall") for p in parts
    )


def _texts(candidate: dict[str, Any]) -> list[str]:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return []  # a candidate stopped by SAFETY and the like may have no content at all
    # Thought summaries (`thought: true`) are the model's reasoning, not its answer.
    return [
        p["text"]
        for p in parts
        if isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought")
    ]


def _raise_if_blocked(data: dict[str, Any], redactor: Redactor) -> None:
    feedback = data.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    if reason:
        detail = feedback.get("blockReasonMessage") if isinstance(feedback, dict) else None
        more = f": {detail}" if detail else ""
        message = f"Gemini blocked the prompt (blockReason {reason}){more}"
        raise BadRequestError(safe_message(message, redactor))


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    # `promptTokenCount` counts the cached ones; thoughts are billed as output. Gemini reports
    # no cache writes (an explicit cache is paid for by its storage, not per answer).
    output = int(raw.get("candidatesTokenCount") or 0) + int(raw.get("thoughtsTokenCount") or 0)
    return Usage(
        input_tokens=int(raw.get("promptTokenCount") or 0),
        output_tokens=output,
        cache_read_tokens=int(raw.get("cachedContentTokenCount") or 0),
    )


def _classify(
    status: int, status_name: str, details: list[dict[str, Any]], message: str
) -> type[APIError]:
    """The class the body names, else the HTTP status's, refined by the details."""
    reasons = {d.get("reason") for d in details if d.get("@type") == _ERROR_INFO}
    if "API_KEY_INVALID" in reasons:
        return AuthenticationError
    cls = _BY_STATUS_NAME.get(status_name) or error_for_status(status)
    if cls is RateLimitError and _per_day(details):
        return QuotaExhaustedError
    if cls is BadRequestError and _too_long(message):
        return ContextLengthError
    return cls


def _per_day(details: list[dict[str, Any]]) -> bool:
    """True if a violated quota is a daily one: waiting minutes will not bring it back."""
    names: list[str] = []
    for detail in details:
        if detail.get("@type") == _QUOTA_FAILURE:
            for violation in detail.get("violations") or ():
                if isinstance(violation, dict):
                    names += [
                        str(violation.get("quotaId", "")),
                        str(violation.get("quotaMetric", "")),
                    ]
        elif detail.get("@type") == _ERROR_INFO and isinstance(detail.get("metadata"), dict):
            names.append(str(detail["metadata"].get("quota_limit", "")))
    return any("perday" in name.lower() or "per_day" in name.lower() for name in names)


def _announced_quotas(details: list[dict[str, Any]]) -> dict[str, float]:
    """The per-minute quotas a 429's QuotaFailure names with their value, by budget name, each
    with nothing remaining (the 429 says it is spent): what OpenAI's headers announce, read
    from Google's body. A quota of another window (a day's) or of no known kind is left out."""
    limits: dict[str, float] = {}
    for detail in details:
        if detail.get("@type") != _QUOTA_FAILURE:
            continue
        for violation in detail.get("violations") or ():
            if not isinstance(violation, dict):
                continue
            budget = _minute_budget(str(violation.get("quotaId") or ""))
            value = _positive_number(violation.get("quotaValue"))
            if budget is not None and value is not None:
                limits[budget] = min(value, limits.get(budget, value))
                limits[remaining_key(budget)] = 0.0
    return limits


def _minute_budget(quota_id: str) -> str | None:
    """The budget a per-minute quota id stands for ("GenerateRequestsPerMinutePerProjectPerModel
    -FreeTier" → "rpm", "GenerateContentInputTokensPerModelPerMinute-FreeTier" → "itpm")."""
    name = quota_id.lower()
    if "perminute" not in name:
        return None
    if "request" in name:
        return "rpm"
    for words, budget in (("inputtoken", "itpm"), ("outputtoken", "otpm"), ("token", "tpm")):
        if words in name:
            return budget
    return None


def _positive_number(value: Any) -> float | None:
    """A quota's value, which protobuf's JSON writes as a string ("15") or a number."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number > 0 else None


def _too_long(message: str) -> bool:
    text = message.lower()
    return "token count" in text and "exceeds the maximum" in text


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    """RetryInfo.retryDelay, a protobuf Duration: JSON "37s" / "1.5s", or {seconds, nanos}."""
    for detail in details:
        if detail.get("@type") != _RETRY_INFO:
            continue
        delay = detail.get("retryDelay")
        try:
            if isinstance(delay, str) and delay.endswith("s"):
                return max(0.0, float(delay[:-1]))
            if isinstance(delay, dict):
                seconds = float(delay.get("seconds") or 0) + float(delay.get("nanos") or 0) / 1e9
                return max(0.0, seconds)
        except ValueError:
            return None
    return None
