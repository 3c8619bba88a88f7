"""The OpenAI chat-completions dialect: `POST /v1/chat/completions`, plain and SSE."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from llmgather.limits.tokens import message_text
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
from llmgather.sim.wire import IdMaker, ceil_ms, ceil_seconds, go_duration, mask_key, unix_time

_JSON = "application/json"
_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}
_FINGERPRINT = "fp_sim0000001"
_ORG = "org-simulator"

_MESSAGES: dict[int, tuple[str, str]] = {
    400: ("Invalid request.", "invalid_request_error"),
    401: ("Incorrect API key provided.", "invalid_request_error"),
    403: ("You are not allowed to sample from this model.", "invalid_request_error"),
    404: ("The requested resource does not exist.", "invalid_request_error"),
    413: ("The request body is too large.", "invalid_request_error"),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
    ),
    502: ("Bad gateway.", "server_error"),
    503: ("The server is overloaded or not ready yet.", "server_error"),
    504: ("Gateway timeout.", "server_error"),
    529: ("The server is currently overloaded, please try again later.", "server_error"),
}


def _error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    )


def _limit_headers(state: LimitState | None) -> Headers:
    headers: Headers = {}
    if state is None:
        return headers
    # One requests and one tokens header set. The real API reports its per-day request limit
    # there when the account has one ("10000", reset "8.64s"), else the per-minute one; the
    # tokens headers report the token budget closest to running out.
    requests = state.get("rpd") or state.get("rpm")
    tokens = state.most_restrictive("tpm", "itpm", "otpm")
    for suffix, budget in (("requests", requests), ("tokens", tokens)):
        if budget is not None:
            headers[f"x-ratelimit-limit-{suffix}"] = str(budget.limit)
            headers[f"x-ratelimit-remaining-{suffix}"] = str(budget.remaining)
            headers[f"x-ratelimit-reset-{suffix}"] = go_duration(budget.reset_s)
    return headers


# How a refusal's message names each budget, as the real messages do for RPM, RPD and TPM.
_UNITS = {
    "rpm": "requests per min (RPM)",
    "rpd": "requests per day (RPD)",
    "tpm": "tokens per min (TPM)",
    "itpm": "input tokens per min (ITPM)",
    "otpm": "output tokens per min (OTPM)",
}


class OpenAIDialect:
    name = "openai"
    stream_content_type = "text/event-stream; charset=utf-8"
    limit_header_prefix = "x-ratelimit-"

    def api_key(self, request: web.BaseRequest) -> str | None:
        auth = request.headers.get("Authorization")
        if not auth:
            return None
        scheme, _, key = auth.partition(" ")
        return key.strip() if scheme.lower() == "bearer" and key.strip() else None

    def parse(self, body: Any, request: web.BaseRequest, model: str | None) -> SimRequest:
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("you must provide a model parameter")
        raw_messages = body.get("messages")
        if not isinstance(raw_messages, list) or not raw_messages:
            raise BadRequest("'messages' must be a non-empty array of messages.")
        messages = []
        for i, message in enumerate(raw_messages):
            if not isinstance(message, dict) or message.get("role") not in _ROLES:
                raise BadRequest(f"Invalid value for 'messages[{i}].role'.")
            messages.append({"role": _ROLES[message["role"]], "content": message_text(message)})
        max_tokens = body.get("max_completion_tokens")
        if max_tokens is None:
            max_tokens = body.get("max_tokens")
        stream_options = body.get("stream_options") or {}
        tools = _tools(body.get("tools"))
        return SimRequest(
            model=model,
            messages=messages,
            max_tokens=positive_int(max_tokens, "max_tokens"),
            temperature=optional_float(body.get("temperature"), "temperature"),
            stream=bool(body.get("stream")),
            include_usage=bool(
                isinstance(stream_options, dict) and stream_options.get("include_usage")
            ),
            tools=tools,
            tool_choice=_tool_choice(body.get("tool_choice"), tools),
            json_schema=_response_schema(body.get("response_format")),
        )

    def response_headers(self, request_id: str, limits: LimitState | None) -> Headers:
        headers = {"x-request-id": request_id, "openai-version": "2020-10-01"}
        headers.update(_limit_headers(limits))
        return headers

    def render(self, req: SimRequest, answer: Answer, ids: IdMaker) -> bytes:
        return orjson.dumps(
            {
                "id": ids.make("chatcmpl-"),
                "object": "chat.completion",
                "created": unix_time(),
                "model": req.model,
                "choices": [
                    {
                        "index": 0,
                        "message": _message(answer, ids),
                        "logprobs": None,
                        "finish_reason": _finish_reason(answer),
                    }
                ],
                "usage": _usage(req, answer),
                "service_tier": "default",
                "system_fingerprint": _FINGERPRINT,
            }
        )

    def stream(
        self, req: SimRequest, answer: Answer, chunks: list[str], ids: IdMaker
    ) -> StreamEvents:
        base: dict[str, Any] = {
            "id": ids.make("chatcmpl-"),
            "object": "chat.completion.chunk",
            "created": unix_time(),
            "model": req.model,
            "service_tier": "default",
            "system_fingerprint": _FINGERPRINT,
            "choices": None,
        }
        if req.include_usage:
            base["usage"] = None  # the real API sends `usage: null` on every chunk but the last

        def frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
            base["choices"] = [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            ]
            return b"data: " + orjson.dumps(base) + b"\n\n"

        if answer.calls:
            head = [frame({"role": "assistant", "content": None, "refusal": None})]
            body = [frame({"tool_calls": [delta]}) for delta in _call_deltas(answer, ids)]
        else:
            head = [frame({"role": "assistant", "content": "", "refusal": None})]
            body = [frame({"content": piece}) for piece in chunks]
        tail = [frame({}, _finish_reason(answer))]
        if req.include_usage:
            base["choices"] = []
            base["usage"] = _usage(req, answer)
            tail.append(b"data: " + orjson.dumps(base) + b"\n\n")
        tail.append(b"data: [DONE]\n\n")
        return StreamEvents(head, body, tail)

    def early_end(self) -> list[bytes]:
        return [b"data: [DONE]\n\n"]

    def malformed_event(self) -> bytes:
        return b'data: {"id": "chatcmpl-sim", "object": "chat.completion.chunk", "choices": [{\n\n'

    def error(self, status: int, message: str | None = None, *, request_id: str = "") -> ErrorReply:
        default_message, type_ = _MESSAGES.get(status, ("Unexpected error.", "server_error"))
        body = _error_body(message or default_message, type_, None)
        return ErrorReply(status, body, {"x-request-id": request_id} if request_id else {})

    def auth_error(self, key: str | None, *, request_id: str = "") -> ErrorReply:
        if not key:
            message = (
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer "
                "YOUR_KEY), or as the password field (with blank username) if you're "
                "accessing the API from your browser and are prompted for a username and "
                "password. You can obtain an API key from "
                "https://platform.openai.com/account/api-keys."
            )
            body = _error_body(message, "invalid_request_error", None)
        else:
            message = (
                f"Incorrect API key provided: {mask_key(key)}. You can find your API key "
                "at https://platform.openai.com/account/api-keys."
            )
            body = _error_body(message, "invalid_request_error", "invalid_api_key")
        return ErrorReply(401, body, {"x-request-id": request_id})

    def body_too_large(self, max_bytes: int, *, request_id: str = "") -> ErrorReply:
        message = f"The request body is too large: the limit is {max_bytes} bytes."
        return self.error(413, message, request_id=request_id)

    def rate_limited(
        self, req: SimRequest, refusal: Refusal, *, request_id: str = ""
    ) -> ErrorReply:
        headers = {"x-request-id": request_id, **_limit_headers(refusal.state)}
        budget = refusal.budget
        unit = _UNITS[budget.name]
        type_ = "requests" if budget.kind.counts == "requests" else "tokens"
        if refusal.too_large:
            # The real API sends this as a 429 with no retry-after: only the "Request too
            # large" message tells it from a 429 that waiting would cure.
            message = (
                f"Request too large for {req.model} in organization {_ORG} on {unit}: "
                f"Limit {budget.limit}, Requested {refusal.requested}. The input or "
                "output tokens must be reduced in order to run successfully."
            )
            return ErrorReply(429, _error_body(message, type_, "rate_limit_exceeded"), headers)
        message = (
            f"Rate limit reached for {req.model} in organization {_ORG} on {unit}: "
            f"Limit {budget.limit}, Used {budget.used}, Requested {refusal.requested}. "
            f"Please try again in {go_duration(refusal.retry_after_s)}. Visit "
            "https://platform.openai.com/account/rate-limits to learn more."
        )
        headers.update(_retry_headers(refusal.retry_after_s))
        return ErrorReply(429, _error_body(message, type_, "rate_limit_exceeded"), headers)

    def injected_rate_limit(
        self, req: SimRequest, retry_after_s: float, *, request_id: str = ""
    ) -> ErrorReply:
        message = (
            f"Rate limit reached for {req.model} in organization {_ORG} on requests per "
            f"min (RPM): Please try again in {go_duration(retry_after_s)}. Visit "
            "https://platform.openai.com/account/rate-limits to learn more."
        )
        headers = {"x-request-id": request_id, **_retry_headers(retry_after_s)}
        return ErrorReply(429, _error_body(message, "requests", "rate_limit_exceeded"), headers)

    def quota_exhausted(self, req: SimRequest, *, request_id: str = "") -> ErrorReply:
        message = (
            "You exceeded your current quota, please check your plan and billing details. For "
            "more information on this error, read the docs: "
            "https://platform.openai.com/docs/guides/error-codes/api-errors."
        )
        body = _error_body(message, "insufficient_quota", "insufficient_quota")
        return ErrorReply(429, body, {"x-request-id": request_id})

    def spend_limited(self, req: SimRequest, *, request_id: str = "") -> ErrorReply:
        # A hard spend limit names itself in `code`; the `type` is the billing family's.
        message = (
            f"Your organization {_ORG} has reached its monthly spend limit. Raise or remove "
            "the limit in the organization's limit settings, or wait for the monthly reset."
        )
        body = _error_body(message, "insufficient_quota", "organization_spend_limit_exceeded")
        return ErrorReply(429, body, {"x-request-id": request_id})


def _tools(raw: Any) -> list[dict[str, Any]] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise BadRequest("Invalid type for 'tools': expected an array of tools.")
    tools = []
    for i, tool in enumerate(raw):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type") != "function":
            raise BadRequest(f"Missing required parameter: 'tools[{i}].function'.")
        tools.append(tool_entry(function.get("name"), function.get("parameters"), f"tools[{i}]"))
    return tools or None


def _tool_choice(raw: Any, tools: list[dict[str, Any]] | None) -> str | dict[str, str] | None:
    if raw is None:
        return None
    if tools is None:
        raise BadRequest(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified."
        )
    if raw in ("auto", "required", "none"):
        return str(raw)
    function = raw.get("function") if isinstance(raw, dict) else None
    if not isinstance(function, dict):
        raise BadRequest("Invalid value for 'tool_choice'.")
    return chosen_name(function.get("name"), tools, "tool_choice.function.name")


def _response_schema(raw: Any) -> dict[str, Any] | None:
    """The schema a `response_format` asks the answer to fit (json_object: any object)."""
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "json_object":
        return JSON_OBJECT
    if kind == "json_schema":
        spec = raw.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
            raise BadRequest("Missing required parameter: 'response_format.json_schema'.")
        return spec.get("schema") or {"type": "object"}
    if kind == "text":
        return None
    raise BadRequest("Invalid value for 'response_format.type'.")


def _message(answer: Answer, ids: IdMaker) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if answer.calls else answer.text,
        "refusal": None,
        "annotations": [],
    }
    if answer.calls:
        message["tool_calls"] = [
            {
                "id": ids.make("call_"),
                "type": "function",
                "function": {"name": call.name, "arguments": call.json},
            }
            for call in answer.calls
        ]
    return message


def _call_deltas(answer: Answer, ids: IdMaker) -> list[dict[str, Any]]:
    """Each call as the real API streams it: id, name and empty arguments, then fragments."""
    deltas: list[dict[str, Any]] = []
    for index, call in enumerate(answer.calls):
        function = {"name": call.name, "arguments": ""}
        deltas.append(
            {"index": index, "id": ids.make("call_"), "type": "function", "function": function}
        )
        deltas += [{"index": index, "function": {"arguments": piece}} for piece in call.pieces()]
    return deltas


def _finish_reason(answer: Answer) -> str:
    if answer.calls:
        return "tool_calls"
    return "length" if answer.finished_by_length else "stop"


def _usage(req: SimRequest, answer: Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": req.input_tokens,
        "completion_tokens": answer.output_tokens,
        "total_tokens": req.input_tokens + answer.output_tokens,
        "prompt_tokens_details": {"cached_tokens": req.cache.read, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _retry_headers(retry_after_s: float) -> Headers:
    return {
        "retry-after": str(ceil_seconds(retry_after_s)),
        "retry-after-ms": str(ceil_ms(retry_after_s)),
    }


DIALECT = OpenAIDialect()
