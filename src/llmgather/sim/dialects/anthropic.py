"""The Anthropic messages dialect: `POST /v1/messages`, plain and its named SSE events."""

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
from llmgather.sim.limits import BudgetState, LimitState, Refusal
from llmgather.sim.text import Answer, ToolUse
from llmgather.sim.wire import IdMaker, ceil_seconds, rfc3339_in

_TYPES = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Rate limited."),
    500: ("api_error", "Internal server error"),
    502: ("api_error", "Bad gateway"),
    503: ("api_error", "Service unavailable"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}
_ORG = "00000000-0000-4000-8000-00000000516d"


def _error(status: int, message: str | None, request_id: str) -> bytes:
    type_, default = _TYPES.get(status, ("api_error", "Internal server error"))
    return orjson.dumps(
        {
            "type": "error",
            "error": {"type": type_, "message": message or default},
            "request_id": request_id,
        }
    )


def _limit_headers(state: LimitState | None) -> Headers:
    headers: Headers = {}
    if state is None:
        return headers
    # Each header set reports the most restrictive limit in effect for what it counts, as
    # Anthropic documents: a combined TPM budget limits input and output tokens too, and the
    # `tokens` set shows whichever token budget is closest to running out.
    for name, budget in (
        ("requests", state.most_restrictive("rpm", "rpd")),
        ("tokens", state.most_restrictive("tpm", "itpm", "otpm")),
        ("input-tokens", state.most_restrictive("itpm", "tpm")),
        ("output-tokens", state.most_restrictive("otpm", "tpm")),
    ):
        if budget is not None:
            _put(headers, name, budget)
    return headers


def _put(headers: Headers, name: str, budget: BudgetState) -> None:
    headers[f"anthropic-ratelimit-{name}-limit"] = str(budget.limit)
    headers[f"anthropic-ratelimit-{name}-remaining"] = str(budget.remaining)
    headers[f"anthropic-ratelimit-{name}-reset"] = rfc3339_in(budget.reset_s)


# How the messages name each budget: "… of 40,000 input tokens per minute".
_UNITS = {
    "rpm": "requests per minute",
    "rpd": "requests per day",
    "tpm": "tokens per minute",
    "itpm": "input tokens per minute",
    "otpm": "output tokens per minute",
}


def _frame(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class AnthropicDialect:
    name = "anthropic"
    stream_content_type = "text/event-stream; charset=utf-8"
    limit_header_prefix = "anthropic-ratelimit-"

    def api_key(self, request: web.BaseRequest) -> str | None:
        key = request.headers.get("x-api-key")
        if key:
            return key
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None

    def parse(self, body: Any, request: web.BaseRequest, model: str | None) -> SimRequest:
        if "anthropic-version" not in request.headers:
            raise BadRequest("anthropic-version: header is required")
        if not isinstance(body, dict):
            raise BadRequest("The request body is not a JSON object.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("model: Field required")
        if "max_tokens" not in body:
            raise BadRequest("max_tokens: Field required")
        raw_messages = body.get("messages")
        if not isinstance(raw_messages, list) or not raw_messages:
            raise BadRequest("messages: at least one message is required")
        messages: list[dict[str, Any]] = []
        system = body.get("system")
        if system:
            if not isinstance(system, str | list):
                raise BadRequest("system: Input should be a valid string or list of text blocks")
            messages.append({"role": "system", "content": message_text({"content": system})})
        for i, message in enumerate(raw_messages):
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                raise BadRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
            messages.append({"role": message["role"], "content": message_text(message)})
        tools = _tools(body.get("tools"))
        return SimRequest(
            model=model,
            messages=messages,
            max_tokens=positive_int(body.get("max_tokens"), "max_tokens"),
            temperature=optional_float(body.get("temperature"), "temperature"),
            stream=bool(body.get("stream")),
            tools=tools,
            tool_choice=_tool_choice(body.get("tool_choice"), tools),
            json_schema=_output_schema(body.get("output_config")),
        )

    def response_headers(self, request_id: str, limits: LimitState | None) -> Headers:
        headers = {"request-id": request_id, "anthropic-organization-id": _ORG}
        headers.update(_limit_headers(limits))
        return headers

    def render(self, req: SimRequest, answer: Answer, ids: IdMaker) -> bytes:
        message = _message(req, answer, ids)
        if answer.calls:
            message["content"] = [_tool_use(call, ids) for call in answer.calls]
        else:
            message["content"] = [{"type": "text", "text": answer.text}]
        message["stop_reason"] = _stop_reason(answer)
        message["usage"]["output_tokens"] = answer.output_tokens
        return orjson.dumps(message)

    def stream(
        self, req: SimRequest, answer: Answer, chunks: list[str], ids: IdMaker
    ) -> StreamEvents:
        if answer.calls:
            return _tool_stream(req, answer, ids)
        head = [
            _frame(
                "message_start", {"type": "message_start", "message": _message(req, answer, ids)}
            ),
            _frame(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            _frame("ping", {"type": "ping"}),
        ]
        body = [
            _frame(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
            for piece in chunks
        ]
        tail = [
            _frame("content_block_stop", {"type": "content_block_stop", "index": 0}),
            *_ending(answer),
        ]
        return StreamEvents(head, body, tail)

    def early_end(self) -> list[bytes]:
        return [_frame("message_stop", {"type": "message_stop"})]  # no message_delta before it

    def malformed_event(self) -> bytes:
        return b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0,\n\n'

    def error(self, status: int, message: str | None = None, *, request_id: str = "") -> ErrorReply:
        return ErrorReply(status, _error(status, message, request_id), {"request-id": request_id})

    def auth_error(self, key: str | None, *, request_id: str = "") -> ErrorReply:
        message = "invalid x-api-key" if key else "x-api-key header is required"
        return self.error(401, message, request_id=request_id)

    def body_too_large(self, max_bytes: int, *, request_id: str = "") -> ErrorReply:
        return self.error(413, request_id=request_id)  # the real message names no limit

    def rate_limited(
        self, req: SimRequest, refusal: Refusal, *, request_id: str = ""
    ) -> ErrorReply:
        headers = {"request-id": request_id, **_limit_headers(refusal.state)}
        budget = refusal.budget
        unit = _UNITS[budget.name]
        if refusal.too_large:
            message = (
                f"This request needs an estimated {refusal.requested} "
                f"{unit.removesuffix(' per minute')}, more than your organization's rate limit "
                f"of {budget.limit:,} {unit} allows; reduce the prompt length or max_tokens."
            )
            return ErrorReply(400, _error(400, message, request_id), headers)
        headers["retry-after"] = str(ceil_seconds(refusal.retry_after_s))
        message = _rate_message(f" of {budget.limit:,} {unit}")
        return ErrorReply(429, _error(429, message, request_id), headers)

    def injected_rate_limit(
        self, req: SimRequest, retry_after_s: float, *, request_id: str = ""
    ) -> ErrorReply:
        headers = {"request-id": request_id, "retry-after": str(ceil_seconds(retry_after_s))}
        return ErrorReply(429, _error(429, _rate_message(""), request_id), headers)

    def quota_exhausted(self, req: SimRequest, *, request_id: str = "") -> ErrorReply:
        message = (
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
            "Billing to upgrade or purchase credits."
        )
        return ErrorReply(400, _error(400, message, request_id), {"request-id": request_id})

    def spend_limited(self, req: SimRequest, *, request_id: str = "") -> ErrorReply:
        # The tier's monthly spend cap: a rate_limit_error told apart only by
        # `error.details.error_code`, and sent with no retry-after.
        body = {
            "type": "error",
            "error": {
                "type": "rate_limit_error",
                "message": (
                    "Your organization has reached the monthly spend limit of its usage tier. "
                    "API access resumes at 00:00 UTC on the first day of next month."
                ),
                "details": {"error_code": "enforced_spend_limit_reached"},
            },
            "request_id": request_id,
        }
        return ErrorReply(429, orjson.dumps(body), {"request-id": request_id})


def _tools(raw: Any) -> list[dict[str, Any]] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise BadRequest("tools: Input should be a valid list")
    tools = []
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict):
            raise BadRequest(f"tools.{i}: Input should be a valid dictionary")
        if "input_schema" not in tool and tool.get("type") not in (None, "custom"):
            continue  # a server tool (web search, code execution…): never called here
        if not isinstance(tool.get("input_schema"), dict):
            raise BadRequest(f"tools.{i}.custom.input_schema: Field required")
        tools.append(tool_entry(tool.get("name"), tool["input_schema"], f"tools.{i}.custom"))
    return tools or None


def _tool_choice(raw: Any, tools: list[dict[str, Any]] | None) -> str | dict[str, str] | None:
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise BadRequest("tool_choice: Input tag does not match any of the expected tags")
    if tools is None and kind != "none":
        raise BadRequest("tool_choice may only be specified while providing tools.")
    if kind == "tool":
        return chosen_name(raw.get("name"), tools or [], "tool_choice.name")
    return "required" if kind == "any" else str(kind)


def _output_schema(config: Any) -> dict[str, Any] | None:
    """The schema of `output_config.format` (structured outputs of the newer models): the
    answer's text is then a JSON object fitting it."""
    spec = config.get("format") if isinstance(config, dict) else None
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.get("type") != "json_schema":
        raise BadRequest("output_config.format.type: Input should be 'json_schema'")
    if not isinstance(spec.get("schema"), dict):
        raise BadRequest("output_config.format.schema: Field required")
    schema: dict[str, Any] = spec["schema"]
    return schema


def _tool_use(call: ToolUse, ids: IdMaker) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": ids.make("toolu_"),
        "name": call.name,
        "input": call.arguments,
    }


def _tool_stream(req: SimRequest, answer: Answer, ids: IdMaker) -> StreamEvents:
    """A tool-use answer streamed: per call, a tool_use block whose input arrives as
    `input_json_delta` fragments of its JSON text (the first one empty, as the API's is)."""
    head = [
        _frame("message_start", {"type": "message_start", "message": _message(req, answer, ids)}),
        _frame("ping", {"type": "ping"}),
    ]
    body: list[bytes] = []
    for index, call in enumerate(answer.calls):
        block = {**_tool_use(call, ids), "input": {}}
        start = {"type": "content_block_start", "index": index, "content_block": block}
        body.append(_frame("content_block_start", start))
        for piece in ["", *call.pieces()]:
            delta = {"type": "input_json_delta", "partial_json": piece}
            data = {"type": "content_block_delta", "index": index, "delta": delta}
            body.append(_frame("content_block_delta", data))
        body.append(_frame("content_block_stop", {"type": "content_block_stop", "index": index}))
    return StreamEvents(head, body, _ending(answer))


def _ending(answer: Answer) -> list[bytes]:
    delta = {"stop_reason": _stop_reason(answer), "stop_sequence": None}
    usage = {"output_tokens": answer.output_tokens}
    return [
        _frame("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}),
        _frame("message_stop", {"type": "message_stop"}),
    ]


def _stop_reason(answer: Answer) -> str:
    if answer.calls:
        return "tool_use"
    return "max_tokens" if answer.finished_by_length else "end_turn"


def _rate_message(of_limit: str) -> str:
    return (
        f"This request would exceed the rate limit for your organization ({_ORG}){of_limit}. "
        "For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the "
        "response headers for current usage. Please reduce the prompt length or the maximum "
        "tokens requested, or try again later."
    )


def _message(req: SimRequest, answer: Answer, ids: IdMaker) -> dict[str, Any]:
    return {
        "id": ids.make("msg_"),
        "type": "message",
        "role": "assistant",
        "model": req.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            # Anthropic's input_tokens are those after the last cache breakpoint only.
            "input_tokens": req.input_tokens - req.cache.read - req.cache.written,
            "cache_creation_input_tokens": req.cache.written,
            "cache_read_input_tokens": req.cache.read,
            "output_tokens": 1,
            "service_tier": "standard",
        },
    }


DIALECT = AnthropicDialect()
