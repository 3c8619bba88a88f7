"""OpenAI chat completions (and any OpenAI-compatible server): requests, responses, errors.

Statuses and bodies map to llmgather's tree as follows:

    429 rate_limit_exceeded   → RateLimitError (Retry-After honoured)
    429 insufficient_quota    → QuotaExhaustedError (billing: never retried)
    429 "Request too large"   → BadRequestError (one request over the TPM limit: no wait helps)
    400 context_length_exceeded → ContextLengthError
    400, 422                  → BadRequestError
    401 / 403 / 404           → AuthenticationError / PermissionDeniedError / NotFoundError
    408                       → RequestTimeoutError
    500, 502, 503, 504        → ServerError
    529                       → OverloadedError
    a 200 that does not parse → MalformedResponseError
    a stream without finish_reason or [DONE] → TruncatedStreamError
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import orjson

from llmgather._errors import (
    APIError,
    BadRequestError,
    ContextLengthError,
    MalformedResponseError,
    QuotaExhaustedError,
    TruncatedStreamError,
)
from llmgather._types import Completion, Request, Usage
from llmgather.providers._common import (
    announced_limits,
    error_body,
    fallback_message,
    load_json,
    redact,
    retry_after_from_headers,
    status_error,
    with_extra,
)
from llmgather.providers.base import Headers, HttpRequest
from llmgather.transport.sse import SSEEvent

DEFAULT_BASE_URL = "https://api.openai.com/v1"


# The caller who sets either in `extra` has chosen the field: the adapter adds neither.
_MAX_TOKENS_FIELDS = frozenset({"max_tokens", "max_completion_tokens"})


class OpenAIProvider:
    name = "openai"

    def __init__(self, *, api_key: str | None, base_url: str | None = None) -> None:
        self._api_key = api_key
        # A query in the base URL (Azure's `?api-version=`) stays at the end of the full URL.
        root, _, query = (base_url or DEFAULT_BASE_URL).partition("?")
        self._url = root.rstrip("/") + "/chat/completions" + (f"?{query}" if query else "")
        # OpenAI's own API takes max_completion_tokens for every model (and o-series models
        # take nothing else); the servers that copy the API (vLLM, llama-server, Ollama) know
        # the older max_tokens.
        official = urlsplit(base_url or DEFAULT_BASE_URL).hostname == "api.openai.com"
        self._max_tokens_field = "max_completion_tokens" if official else "max_tokens"
        self._headers = {"content-type": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"

    def build_request(self, request: Request, *, model: str, stream: bool) -> HttpRequest:
        payload: dict[str, Any] = {"model": model, "messages": list(request.messages)}
        extra = request.extra or {}
        if request.max_tokens is not None and not extra.keys() & _MAX_TOKENS_FIELDS:
            payload[self._max_tokens_field] = request.max_tokens
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        body = orjson.dumps(with_extra(payload, request.extra))
        return HttpRequest("POST", self._url, self._headers, body)

    def parse_response(self, status: int, headers: Headers, body: bytes) -> Completion:
        data = load_json(body, "the chat completion")
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            return Completion(
                text=text,
                usage=_usage(data.get("usage")),
                finish_reason=choice.get("finish_reason"),
                model=data.get("model"),
            )
        except (KeyError, IndexError, TypeError, AttributeError):
            raise MalformedResponseError("the chat completion has no choices[0].message") from None

    def parse_error(self, status: int, headers: Headers, body: bytes) -> APIError:
        data = error_body(body)
        error = data.get("error") if isinstance(data, dict) else None
        if not isinstance(error, dict):
            error = {}
        code = error.get("code") or error.get("type") or ""
        message = redact(str(error.get("message") or fallback_message(status, body)), self._api_key)
        retry_after = retry_after_from_headers(headers)
        cls: type[APIError] | None = None
        if code == "insufficient_quota":
            cls = QuotaExhaustedError
        elif code == "context_length_exceeded":
            cls = ContextLengthError
        elif status == 429 and message.startswith("Request too large"):
            cls = BadRequestError
        return status_error(status, message, retry_after=retry_after, cls=cls)

    def stream_decoder(self) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder(self)

    def announced_limits(self, headers: Headers) -> tuple[float | None, float | None]:
        return announced_limits(headers, "x-ratelimit-limit-requests", "x-ratelimit-limit-tokens")


class OpenAIStreamDecoder:
    """Chunks of `chat.completion.chunk` until `data: [DONE]`."""

    def __init__(self, provider: OpenAIProvider) -> None:
        self._provider = provider
        self._pieces: list[str] = []
        self._finish_reason: str | None = None
        self._usage: Usage | None = None
        self._model: str | None = None
        self._done = False

    def feed(self, event: SSEEvent) -> list[str]:
        if event.data == "[DONE]":
            self._done = True
            return []
        data = load_json(event.data.encode(), "a stream event")
        if not isinstance(data, dict):
            raise MalformedResponseError("a stream event is not a JSON object")
        if data.get("error"):
            raise self._provider.parse_error(500, {}, event.data.encode())
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
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
        self._pieces.extend(pieces)
        return pieces

    def finish(self) -> Completion:
        if self._finish_reason is None or not self._done:
            missing = "finish_reason" if self._finish_reason is None else "data: [DONE]"
            raise TruncatedStreamError(f"the stream ended before its {missing}")
        return Completion(
            text="".join(self._pieces),
            usage=self._usage,
            finish_reason=self._finish_reason,
            model=self._model,
        )


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return Usage(
        input_tokens=int(raw.get("prompt_tokens") or 0),
        output_tokens=int(raw.get("completion_tokens") or 0),
    )
