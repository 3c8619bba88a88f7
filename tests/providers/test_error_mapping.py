"""Every status and provider error body maps to the intended class, and every class is mapped.

Like httpx's test that each transport exception is mapped: the tables below are the contract of
`parse_error` for all three providers, and the last test checks that no APIError subclass is
left that nothing produces.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.client_reqrep import ConnectionKey

from llmgather import _errors
from llmgather._errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConnectError,
    ContextLengthError,
    MalformedResponseError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    QuotaExhaustedError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    TruncatedStreamError,
)
from llmgather.providers.anthropic import AnthropicProvider
from llmgather.providers.base import Provider
from llmgather.providers.gemini import GeminiProvider
from llmgather.providers.openai import OpenAIProvider
from llmgather.transport.aiohttp import mapped as _mapped
from llmgather.transport.sse import SSEEvent

KEY = "sk-secret-KEY-0123456789abcdef"
PROVIDERS: dict[str, Provider] = {
    "openai": OpenAIProvider(api_key=KEY),
    "gemini": GeminiProvider(api_key=KEY),
    "anthropic": AnthropicProvider(api_key=KEY),
}


@dataclass(frozen=True)
class Case:
    provider: str
    status: int
    body: Any
    expected: type[APIError]
    retry_after: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    id: str = ""

    def run(self) -> APIError:
        raw = self.body if isinstance(self.body, bytes) else orjson.dumps(self.body)
        error = PROVIDERS[self.provider].parse_error(self.status, self.headers, raw)
        assert isinstance(error, APIError)
        return error


# -- by HTTP status alone (a body that says nothing: a proxy's HTML page) ----------------------

BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: RequestTimeoutError,
    413: BadRequestError,
    422: BadRequestError,
    429: RateLimitError,
    500: ServerError,
    502: ServerError,
    503: ServerError,
    504: ServerError,
    529: OverloadedError,
}
STATUS_CASES = [
    Case(name, status, b"<html><body>Bad Gateway</body></html>", cls, id=f"{name}-{status}")
    for name in PROVIDERS
    for status, cls in BY_STATUS.items()
]


# -- OpenAI bodies ------------------------------------------------------------------------------


def openai_error(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


OPENAI_CASES = [
    Case(
        "openai",
        429,
        openai_error(
            "Request too large for gpt-4o-mini in organization org-x on tokens per min (TPM): "
            "Limit 30000, Requested 50000. The input or output tokens must be reduced in order "
            "to run successfully.",
            "tokens",
            "rate_limit_exceeded",
        ),
        BadRequestError,
        id="openai-429-request-too-large",
    ),
    Case(
        "openai",
        429,
        openai_error(
            "Rate limit reached for gpt-4o-mini in organization org-x on requests per min (RPM): "
            "Limit 3, Used 3, Requested 1. Please try again in 20s.",
            "requests",
            "rate_limit_exceeded",
        ),
        RateLimitError,
        retry_after=0.25,
        headers={"retry-after-ms": "250", "retry-after": "1"},
        id="openai-rate-limit-retry-after-ms",
    ),
    Case(
        "openai",
        429,
        openai_error(
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            "insufficient_quota",
        ),
        QuotaExhaustedError,
        id="openai-insufficient-quota",
    ),
    Case(
        "openai",
        400,
        openai_error(
            "This model's maximum context length is 128000 tokens. However, your messages resulted "
            "in 130000 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
        ),
        ContextLengthError,
        id="openai-context-length",
    ),
    Case(
        "openai",
        400,
        openai_error("'messages' must contain at least one message", "invalid_request_error"),
        BadRequestError,
        id="openai-400",
    ),
    Case(
        "openai",
        401,
        openai_error("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
        AuthenticationError,
        id="openai-401",
    ),
    Case(
        "openai",
        403,
        openai_error(
            "Country, region, or territory not supported",
            "request_forbidden",
            "unsupported_country_region_territory",
        ),
        PermissionDeniedError,
        id="openai-403",
    ),
    Case(
        "openai",
        404,
        openai_error(
            "The model `gpt-9` does not exist", "invalid_request_error", "model_not_found"
        ),
        NotFoundError,
        id="openai-404",
    ),
    Case(
        "openai",
        500,
        openai_error("The server had an error while processing your request.", "server_error"),
        ServerError,
        id="openai-500",
    ),
    Case(
        "openai",
        503,
        openai_error("The engine is currently overloaded, please try again later", "server_error"),
        ServerError,
        retry_after=3.0,
        headers={"retry-after": "3"},
        id="openai-503-retry-after-seconds",
    ),
    # The servers that copy the API, with the bodies they really send. Their `code` is the
    # HTTP status as a number; the `type` or the words say what went wrong.
    Case(
        "openai",
        400,
        {
            "error": {
                "code": 400,
                "message": "request (4476 tokens) exceeds the available context size "
                "(4096 tokens), try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 4476,
                "n_ctx": 4096,
            }
        },
        ContextLengthError,
        id="llama-server-exceed-context-size",
    ),
    Case(
        "openai",
        503,
        {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}},
        ServerError,
        id="llama-server-loading-model",
    ),
    Case(
        "openai",
        400,
        {
            "error": {
                "code": 400,
                "message": "'temperature' must be >= 0",
                "type": "BadRequestError",
            }
        },
        BadRequestError,
        id="numeric-code-bad-request",
    ),
    Case(
        "openai",
        400,
        {
            "error": {
                "message": "'max_tokens' or 'max_completion_tokens' is too large: 8000. This "
                "model's maximum context length is 4096 tokens and your request has 2778 input "
                "tokens (8000 > 4096 - 2778). None",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            }
        },
        ContextLengthError,
        id="vllm-maximum-context-length",
    ),
    Case(
        "openai",
        400,
        {
            "object": "error",
            "message": "This model's maximum context length is 4096 tokens. However, you "
            "requested 5000 tokens (4000 in the messages, 1000 in the completion).",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        },
        ContextLengthError,
        id="vllm-old-top-level-error",
    ),
    Case(
        "openai",
        400,
        {
            "object": "error",
            "message": "The decoder prompt (length 8825) is longer than the maximum model length "
            "of 8192. Make sure that `max_model_len` is no smaller than the number of text tokens.",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        },
        ContextLengthError,
        id="vllm-maximum-model-length",
    ),
    Case(
        "openai",
        400,
        {"error": "the input length exceeds the context length"},
        ContextLengthError,
        id="ollama-string-error",
    ),
]


# -- Gemini bodies ------------------------------------------------------------------------------


def gemini_error(code: int, status: str, message: str, *details: dict[str, Any]) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return {"error": error}


def retry_info(delay: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


def quota_failure(quota_id: str, metric: str) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
            {
                "quotaMetric": metric,
                "quotaId": quota_id,
                "quotaDimensions": {"location": "global", "model": "gemini-2.0-flash"},
                "quotaValue": "15",
            }
        ],
    }


PER_MINUTE = quota_failure(
    "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
    "generativelanguage.googleapis.com/generate_content_free_tier_requests",
)
PER_DAY = quota_failure(
    "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
    "generativelanguage.googleapis.com/generate_content_free_tier_requests",
)
EXHAUSTED = "You exceeded your current quota, please check your plan and billing details."
GEMINI_CASES = [
    Case(
        "gemini",
        429,
        gemini_error(429, "RESOURCE_EXHAUSTED", EXHAUSTED, PER_MINUTE, retry_info("37s")),
        RateLimitError,
        retry_after=37.0,
        headers={"retry-after": "5"},
        id="gemini-rate-limit-retry-delay-beats-header",
    ),
    Case(
        "gemini",
        429,
        gemini_error(429, "RESOURCE_EXHAUSTED", EXHAUSTED, retry_info("1.5s")),
        RateLimitError,
        retry_after=1.5,
        id="gemini-rate-limit-fractional-retry-delay",
    ),
    Case(
        "gemini",
        429,
        gemini_error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
        RateLimitError,
        retry_after=12.0,
        headers={"retry-after": "12"},
        id="gemini-rate-limit-header-fallback",
    ),
    Case(
        "gemini",
        429,
        gemini_error(429, "RESOURCE_EXHAUSTED", EXHAUSTED, PER_DAY, retry_info("25s")),
        QuotaExhaustedError,
        retry_after=25.0,
        id="gemini-per-day-quota",
    ),
    Case(
        "gemini",
        429,
        [
            gemini_error(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for quota metric "
                "'Gemini 2.5 Pro Requests' and limit 'Gemini 2.5 Pro "
                "Requests per day per user per tier'.",
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "RATE_LIMIT_EXCEEDED",
                    "domain": "googleapis.com",
                    "metadata": {"quota_limit": "Gemini25ProRequestsPerDay"},
                },
            )
        ],
        QuotaExhaustedError,
        id="gemini-per-day-quota-error-info-in-a-list",
    ),
    Case(
        "gemini",
        400,
        gemini_error(
            400,
            "INVALID_ARGUMENT",
            "The input token count (3475108) "
            "exceeds the maximum number of tokens allowed (1048576).",
        ),
        ContextLengthError,
        id="gemini-context-length",
    ),
    Case(
        "gemini",
        400,
        gemini_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
        BadRequestError,
        id="gemini-invalid-argument",
    ),
    Case(
        "gemini",
        400,
        gemini_error(400, "FAILED_PRECONDITION", "User location is not supported for the API use."),
        BadRequestError,
        id="gemini-failed-precondition",
    ),
    Case(
        "gemini",
        400,
        gemini_error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
            },
        ),
        AuthenticationError,
        id="gemini-api-key-invalid",
    ),
    Case(
        "gemini",
        401,
        gemini_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
        AuthenticationError,
        id="gemini-401",
    ),
    Case(
        "gemini",
        403,
        gemini_error(403, "PERMISSION_DENIED", "The caller does not have permission"),
        PermissionDeniedError,
        id="gemini-403",
    ),
    Case(
        "gemini",
        404,
        gemini_error(404, "NOT_FOUND", "models/gemini-9 is not found for API version v1beta."),
        NotFoundError,
        id="gemini-404",
    ),
    Case(
        "gemini",
        500,
        gemini_error(500, "INTERNAL", "An internal error has occurred."),
        ServerError,
        id="gemini-500",
    ),
    Case(
        "gemini",
        503,
        gemini_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
        ServerError,
        id="gemini-503",
    ),
    Case(
        "gemini",
        504,
        gemini_error(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
        ServerError,
        id="gemini-504",
    ),
]


# -- Anthropic bodies ---------------------------------------------------------------------------


def anthropic_error(type_: str, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": type_, "message": message},
        "request_id": "req_011CSLsW7mFqvHHnzrKdKjAE",
    }


ANTHROPIC_CASES = [
    Case(
        "anthropic",
        429,
        anthropic_error(
            "rate_limit_error", "This request would exceed the rate limit for your organization."
        ),
        RateLimitError,
        retry_after=7.0,
        headers={"retry-after": "7"},
        id="anthropic-rate-limit",
    ),
    Case(
        "anthropic",
        529,
        anthropic_error("overloaded_error", "Overloaded"),
        OverloadedError,
        id="anthropic-overloaded",
    ),
    Case(
        "anthropic",
        500,
        anthropic_error("api_error", "Internal server error"),
        ServerError,
        id="anthropic-500",
    ),
    Case(
        "anthropic",
        504,
        anthropic_error("timeout_error", "Request timed out"),
        ServerError,
        id="anthropic-504",
    ),
    Case(
        "anthropic",
        400,
        anthropic_error("invalid_request_error", "messages: Field required"),
        BadRequestError,
        id="anthropic-400",
    ),
    Case(
        "anthropic",
        400,
        anthropic_error(
            "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"
        ),
        ContextLengthError,
        id="anthropic-prompt-too-long",
    ),
    Case(
        "anthropic",
        400,
        anthropic_error(
            "invalid_request_error",
            "input length and `max_tokens` exceed context limit: 199000 + 8192 > 200000",
        ),
        ContextLengthError,
        id="anthropic-exceed-context-limit",
    ),
    Case(
        "anthropic",
        400,
        anthropic_error(
            "invalid_request_error",
            "Your credit balance is too low "
            "to access the Anthropic API. Please go to Plans & "
            "Billing to upgrade or purchase credits.",
        ),
        QuotaExhaustedError,
        id="anthropic-credit-balance",
    ),
    Case(
        "anthropic",
        402,
        anthropic_error("billing_error", "Billing issue."),
        QuotaExhaustedError,
        id="anthropic-billing",
    ),
    Case(
        "anthropic",
        401,
        anthropic_error("authentication_error", "invalid x-api-key"),
        AuthenticationError,
        id="anthropic-401",
    ),
    Case(
        "anthropic",
        403,
        anthropic_error(
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
        PermissionDeniedError,
        id="anthropic-403",
    ),
    Case(
        "anthropic",
        404,
        anthropic_error("not_found_error", "model: claude-9"),
        NotFoundError,
        id="anthropic-404",
    ),
    Case(
        "anthropic",
        413,
        anthropic_error(
            "request_too_large", "Request exceeds the maximum allowed number of bytes."
        ),
        BadRequestError,
        id="anthropic-413",
    ),
]

ALL_CASES = STATUS_CASES + OPENAI_CASES + GEMINI_CASES + ANTHROPIC_CASES


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_error_maps_to_the_intended_class(case: Case) -> None:
    error = case.run()
    assert type(error) is case.expected, error
    assert error.status_code == case.status
    assert error.retry_after == case.retry_after
    assert error.retryable == issubclass(case.expected, _errors.TransientError)
    assert error.message


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_retry_after_as_an_http_date(name: str) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    error = PROVIDERS[name].parse_error(429, {"retry-after": when}, b"{}")
    assert isinstance(error, RateLimitError)
    assert error.retry_after is not None and 27 <= error.retry_after <= 31


ECHO_BODIES = {
    "openai": openai_error(
        f"Incorrect API key provided: {KEY}.", "invalid_request_error", "invalid_api_key"
    ),
    "gemini": gemini_error(
        400,
        "INVALID_ARGUMENT",
        f"API key not valid: {KEY}",
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"},
    ),
    "anthropic": anthropic_error("authentication_error", f"invalid x-api-key {KEY}"),
}


@pytest.mark.parametrize("name", list(PROVIDERS))
@pytest.mark.parametrize("status", [400, 401, 429, 500])
def test_the_api_key_never_appears_in_a_mapped_message(name: str, status: int) -> None:
    provider = PROVIDERS[name]
    for raw in (orjson.dumps(ECHO_BODIES[name]), f"<html>bad key {KEY}</html>".encode()):
        error = provider.parse_error(status, {}, raw)
        assert isinstance(error, APIError)
        assert KEY not in str(error) and KEY not in error.message and KEY not in repr(error)
        assert "[redacted]" in error.message


def test_an_error_event_in_a_compatible_servers_stream_keeps_its_numeric_status() -> None:
    event = {
        "error": {
            "code": 400,
            "message": "request (9412 tokens) exceeds the available context size (8192 tokens)",
            "type": "exceed_context_size_error",
        }
    }
    decoder = PROVIDERS["openai"].stream_decoder()
    with pytest.raises(ContextLengthError) as info:
        decoder.feed(SSEEvent("message", orjson.dumps(event).decode()))
    assert info.value.status_code == 400 and not info.value.retryable


# -- completeness ---------------------------------------------------------------------------


def stream_and_body_errors() -> list[APIError]:
    """Errors the adapters raise from 2xx answers: bodies and streams that are broken or cut."""
    errors: list[APIError] = []
    for provider in PROVIDERS.values():
        for attempt in (
            lambda p=provider: p.parse_response(200, {}, b"{not json"),
            lambda p=provider: p.stream_decoder().finish(),
            lambda p=provider: p.stream_decoder().feed(SSEEvent("message", "{not json")),
        ):
            try:
                attempt()
            except APIError as exc:
                errors.append(exc)
    return errors


def transport_errors() -> list[Exception]:
    return [
        _mapped(exc)
        for exc in (
            TimeoutError(),
            aiohttp.ServerTimeoutError(),
            aiohttp.ClientPayloadError(),
            aiohttp.ServerDisconnectedError(),
            aiohttp.ClientOSError(),
            aiohttp.ClientConnectorError(
                ConnectionKey("127.0.0.1", 8000, False, True, None, None, None, None),
                ConnectionRefusedError(111, "Connection refused"),
            ),
        )
    ]


def test_stream_and_body_failures_are_transient() -> None:
    kinds = {type(e) for e in stream_and_body_errors()}
    assert kinds == {MalformedResponseError, TruncatedStreamError}
    assert {type(e) for e in transport_errors()} == {
        RequestTimeoutError,
        APIConnectionError,
        ConnectError,
    }


def test_every_api_error_class_is_produced_by_some_mapping() -> None:
    def leaves(cls: type[APIError]) -> set[type[APIError]]:
        subclasses = [s for s in cls.__subclasses__() if s.__module__ == _errors.__name__]
        return {cls} if not subclasses else set().union(*(leaves(s) for s in subclasses))

    reached = {type(case.run()) for case in ALL_CASES}
    reached |= {type(e) for e in stream_and_body_errors()}
    reached |= {type(e) for e in transport_errors() if isinstance(e, APIError)}
    # Raised by llmgather itself, never mapped from an answer: the cost cap refuses a send.
    reached.add(_errors.BudgetExhaustedError)
    missing = leaves(APIError) - reached
    assert not missing, (
        f"no provider or transport mapping produces {sorted(c.__name__ for c in missing)}"
    )


@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "1e999"])
def test_a_retry_after_that_is_not_a_finite_number_is_ignored(value: str) -> None:
    for name in ("retry-after", "retry-after-ms"):
        error = PROVIDERS["openai"].parse_error(429, {name: value}, b"{}")
        assert error.retry_after is None or error.retry_after == 0.0, (name, value)
