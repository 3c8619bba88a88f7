"""The Gemini dialect: `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent`."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from llmgather.sim.dialects.base import (
    BadRequest,
    ErrorReply,
    Headers,
    SimRequest,
    StreamEvents,
    chosen_name,
    optional_float,
    positive_int,
    tool_entry,
)
from llmgather.sim.limits import LimitState, Refusal
from llmgather.sim.structured import JSON_OBJECT
from llmgather.sim.text import Answer
from llmgather.sim.wire import IdMaker, ceil_seconds

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}
_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials.",
    403: "The caller does not have permission.",
    404: "Requested entity was not found.",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    502: "The service is currently unavailable.",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
    529: "The model is overloaded. Please try again later.",
}
_SERVICE = "generativelanguage.googleapis.com"
_ROLES = {"user": "user", "model": "assistant", "function": "tool", "tool": "tool"}


_MODES = {"AUTO": "auto", "ANY": "required", "VALIDATED": "auto", "NONE": "none"}


def _tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, str | dict[str, str] | None]:
    """The function declarations offered, and the choice `toolConfig` makes among them (ANY
    with allowedFunctionNames: only those are offered)."""
    raw = body.get("tools")
    if raw is None:
        return None, None
    if not isinstance(raw, list):
        raise BadRequest("Invalid value at 'tools': expected a list of Tool objects.")
    tools: list[dict[str, Any]] = []
    for i, tool in enumerate(raw):
        declarations = (
            _get(tool, "functionDeclarations", "function_declarations")
            if isinstance(tool, dict)
            else None
        )
        for j, declaration in enumerate(declarations or ()):
            where = f"tools[{i}].function_declarations[{j}]"
            if not isinstance(declaration, dict):
                raise BadRequest(f"Invalid value at '{where}': expected an object.")
            schema = _get(declaration, "parametersJsonSchema", "parameters_json_schema")
            if schema is None:
                schema = declaration.get("parameters")
            tools.append(tool_entry(declaration.get("name"), schema, where))
    config = _get(body, "toolConfig", "tool_config") or {}
    calling = _get(config, "functionCallingConfig", "function_calling_config") or {}
    mode = _MODES.get(str(calling.get("mode") or "AUTO").upper(), "auto")
    allowed = _get(calling, "allowedFunctionNames", "allowed_function_names")
    if allowed and mode == "required":
        tools = [tool for tool in tools if tool["name"] in allowed]
        if len(tools) == 1:
            return tools, chosen_name(tools[0]["name"], tools, "allowed_function_names")
    return tools or None, mode


def _response_schema(config: dict[str, Any]) -> dict[str, Any] | None:
    """The schema a JSON answer must fit: `responseJsonSchema` (JSON Schema) or
    `responseSchema` (Gemini's OpenAPI subset), or any object for the JSON mime type alone."""
    if _get(config, "responseMimeType", "response_mime_type") != "application/json":
        return None
    schema = _get(config, "responseJsonSchema", "response_json_schema")
    if schema is None:
        schema = _get(config, "responseSchema", "response_schema")
    if schema is None:
        return JSON_OBJECT
    if not isinstance(schema, dict):
        raise BadRequest("Invalid value at 'generation_config.response_schema'.")
    return schema


def _error(status: int, message: str, details: list[dict[str, Any]] | None = None) -> bytes:
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": _STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return orjson.dumps({"error": error}, option=orjson.OPT_INDENT_2)


def _text_of(content: Any, where: str) -> str:
    if not isinstance(content, dict):
        raise BadRequest(f"Invalid value at '{where}': expected a Content object.")
    parts = content.get("parts")
    if not isinstance(parts, list):
        raise BadRequest(f"Invalid value at '{where}.parts': expected a list of parts.")
    return "".join(p.get("text", "") for p in parts if isinstance(p, dict))


def _get(mapping: dict[str, Any], camel: str, snake: str) -> Any:
    # The REST API reads proto JSON, which accepts both spellings of a field.
    value = mapping.get(camel)
    return mapping.get(snake) if value is None else value


class GeminiDialect:
    name = "gemini"
    stream_content_type = "text/event-stream"
    limit_header_prefix = ""  # Gemini announces no limits in headers; only its 429s name them

    def api_key(self, request: web.BaseRequest) -> str | None:
        return request.headers.get("x-goog-api-key") or request.query.get("key") or None

    def parse(self, body: Any, request: web.BaseRequest, model: str | None) -> SimRequest:
        if not isinstance(body, dict):
            raise BadRequest("Invalid JSON payload received. Expected an object.")
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise BadRequest("* GenerateContentRequest.contents: contents is not specified")
        messages: list[dict[str, Any]] = []
        system = _get(body, "systemInstruction", "system_instruction")
        if system is not None:
            messages.append({"role": "system", "content": _text_of(system, "system_instruction")})
        for i, content in enumerate(contents):
            text = _text_of(content, f"contents[{i}]")
            role = content.get("role") or "user"
            if role not in _ROLES:
                raise BadRequest(f"Please use a valid role: user, model. Got {role!r}.")
            messages.append({"role": _ROLES[role], "content": text})
        config = _get(body, "generationConfig", "generation_config") or {}
        if not isinstance(config, dict):
            raise BadRequest("Invalid value at 'generation_config': expected an object.")
        tools, choice = _tools(body)
        return SimRequest(
            model=model or "gemini",
            messages=messages,
            max_tokens=positive_int(
                _get(config, "maxOutputTokens", "max_output_tokens"), "max_output_tokens"
            ),
            temperature=optional_float(config.get("temperature"), "temperature"),
            stream=False,  # decided by the path, set by the server
            tools=tools,
            tool_choice=choice,
            json_schema=_response_schema(config),
        )

    def response_headers(self, request_id: str, limits: LimitState | None) -> Headers:
        return {"x-goog-request-id": request_id}  # Gemini sends no rate-limit headers

    def render(self, req: SimRequest, answer: Answer, ids: IdMaker) -> bytes:
        return orjson.dumps(_response(req, answer, answer.text, True, ids.make("")))

    def stream(
        self, req: SimRequest, answer: Answer, chunks: list[str], ids: IdMaker
    ) -> StreamEvents:
        response_id = ids.make("")
        if answer.calls:  # Gemini sends function calls whole, in the one terminal event
            last = _response(req, answer, "", True, response_id)
            return StreamEvents([], [], [b"data: " + orjson.dumps(last) + b"\r\n\r\n"])
        frames = [
            b"data: "
            + orjson.dumps(_response(req, answer, piece, i == len(chunks) - 1, response_id))
            + b"\r\n\r\n"
            for i, piece in enumerate(chunks)
        ]
        # The last chunk carries finishReason and the full usage: it is the terminal event.
        return StreamEvents([], frames[:-1], frames[-1:])

    def early_end(self) -> list[bytes]:
        return []  # Gemini's stream has no end event: it ends as a cut one does

    def malformed_event(self) -> bytes:
        return b'data: {"candidates": [{"content": {"parts": [{"text": "\r\n\r\n'

    def error(self, status: int, message: str | None = None, *, request_id: str = "") -> ErrorReply:
        return ErrorReply(status, _error(status, message or _MESSAGES.get(status, "Error.")), {})

    def auth_error(self, key: str | None, *, request_id: str = "") -> ErrorReply:
        if not key:
            message = (
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API key or other form of API consumer identity to "
                "call this API."
            )
            return ErrorReply(403, _error(403, message), {})
        # The real API answers a wrong key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID.
        message = "API key not valid. Please pass a valid API key."
        details: list[dict[str, Any]] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": _SERVICE},
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": message,
            },
        ]
        return ErrorReply(400, _error(400, message, details), {})

    def body_too_large(self, max_bytes: int, *, request_id: str = "") -> ErrorReply:
        # Google's front end refuses an over-size payload as an invalid argument, not a 413.
        message = f"Request payload size exceeds the limit: {max_bytes} bytes."
        return self.error(400, message, request_id=request_id)

    def rate_limited(
        self, req: SimRequest, refusal: Refusal, *, request_id: str = ""
    ) -> ErrorReply:
        budget = refusal.budget
        if refusal.too_large:
            message = (
                f"The request's token count ({refusal.requested}) exceeds the model's "
                f"{_QUOTAS[budget.name][2]} limit ({budget.limit})."
            )
            return ErrorReply(400, _error(400, message), {})
        return _exhausted(req, budget.name, budget.limit, refusal.retry_after_s)

    def injected_rate_limit(
        self, req: SimRequest, retry_after_s: float, *, request_id: str = ""
    ) -> ErrorReply:
        return _exhausted(req, "rpm", 0, retry_after_s)

    def quota_exhausted(self, req: SimRequest, *, request_id: str = "") -> ErrorReply:
        # The free tier's daily request quota: Google still adds a short RetryInfo, which a
        # client must not take as "the quota is back in a minute".
        return _exhausted(req, "rpd", 250, 37.0)

    def spend_limited(self, req: SimRequest, *, request_id: str = "") -> ErrorReply:
        # The Gemini API's spent budget answers as its daily quota does.
        return self.quota_exhausted(req, request_id=request_id)


# Each budget as Google names the quota it stands for: (quotaMetric, quotaId, words). The
# per-day one is the free tier's, whose quotaId says "PerDay": the one limit of this list a
# client must not wait for.
_QUOTAS = {
    "rpm": (
        "generate_requests_per_model",
        "GenerateRequestsPerMinutePerProjectPerModel",
        "requests-per-minute",
    ),
    "rpd": (
        "generate_content_free_tier_requests",
        "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
        "requests-per-day",
    ),
    # The simulator's `tpm` counts input and output tokens, unlike Google's input-token quota:
    # named as what it counts, so a client that reads the quota's value paces the right budget.
    "tpm": (
        "generate_content_token_count",
        "GenerateContentTokensPerModelPerMinute",
        "tokens-per-minute",
    ),
    "itpm": (
        "generate_content_input_token_count",
        "GenerateContentInputTokensPerModelPerMinute",
        "input-tokens-per-minute",
    ),
    "otpm": (
        "generate_content_output_token_count",
        "GenerateContentOutputTokensPerModelPerMinute",
        "output-tokens-per-minute",
    ),
}


def _exhausted(req: SimRequest, budget: str, limit: int, retry_after_s: float) -> ErrorReply:
    """429 RESOURCE_EXHAUSTED naming the violated quota, with a RetryInfo for the wait."""
    metric_name, quota_id, _ = _QUOTAS[budget]
    metric = f"{_SERVICE}/{metric_name}"
    message = (
        "You exceeded your current quota, please check your plan and billing details. For "
        "more information on this error, head to: "
        "https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current usage, "
        "head to: https://ai.dev/usage?tab=rate-limit.\n"
        f"* Quota exceeded for metric: {metric}, limit: {limit}, model: {req.model}\n"
        f"Please retry in {_seconds(retry_after_s)}."
    )
    details: list[dict[str, Any]] = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [
                {
                    "quotaMetric": metric,
                    "quotaId": quota_id,
                    "quotaDimensions": {"location": "global", "model": req.model},
                    "quotaValue": str(limit),
                }
            ],
        },
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [
                {
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                }
            ],
        },
        {
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": f"{ceil_seconds(retry_after_s)}s",
        },
    ]
    return ErrorReply(429, _error(429, message, details), {})


def _seconds(seconds: float) -> str:
    """A wait as Google's messages write it: seconds only ("25.465784708s", "432s")."""
    return f"{max(0.0, seconds):.6f}".rstrip("0").rstrip(".") + "s"


def _response(
    req: SimRequest, answer: Answer, text: str, final: bool, response_id: str
) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"text": text}]
    if answer.calls:
        parts = [{"functionCall": {"name": c.name, "args": c.arguments}} for c in answer.calls]
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    prompt_tokens = req.input_tokens
    usage: dict[str, Any] = {"promptTokenCount": prompt_tokens}
    if final:
        candidate["finishReason"] = "MAX_TOKENS" if answer.finished_by_length else "STOP"
        usage["candidatesTokenCount"] = answer.output_tokens
        usage["totalTokenCount"] = prompt_tokens + answer.output_tokens
    else:
        usage["totalTokenCount"] = prompt_tokens
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt_tokens}]
    if req.cache.read:  # implicit caching: the cached part of the prompt, counted within it
        usage["cachedContentTokenCount"] = req.cache.read
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": req.cache.read}]
    candidate["index"] = 0
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": req.model,
        "responseId": response_id,
    }


DIALECT = GeminiDialect()
