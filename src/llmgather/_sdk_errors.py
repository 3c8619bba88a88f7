"""The official SDKs' exceptions and responses, as llmgather's: for the user's own calls.

No wire adapter (those are in `providers/`): a user's own SDK call (`Client.call`,
`_callables.CallRequest`) crosses this boundary so that it is limited and retried
exactly like llmgather's own requests: a status error goes through the same adapter's
`parse_error` (with the server's `x-should-retry` verdict and announced limits, as in
`_exchange.error_from_answer`), so Retry-After, `insufficient_quota`, context length and daily
quotas come out identical. No SDK is imported here until one of its exceptions is seen.

    openai, anthropic  APIStatusError        → the adapter's error for its status, headers, body
                       … an `error` event in a stream → the adapter's stream decoder
                       APIResponseValidationError → MalformedResponseError
                       APITimeoutError       → RequestTimeoutError
                       APIConnectionError    → APIConnectionError
                       credentials not found → AuthenticationError (never retried)
                       anthropic RetryableError → TransientError (it asks for a retry)
                       openai WebSocketConnectionClosedError → APIConnectionError
    google-genai       errors.APIError (ClientError, ServerError) → the Gemini adapter's error
                       UnknownApiResponseError → MalformedResponseError
    any of the three   a JSONDecodeError raised inside it (a 2xx body that is not JSON)
                                             → MalformedResponseError
    httpx, httpx2      TimeoutException      → RequestTimeoutError
                       ConnectError          → ConnectError (nothing was sent)
                       DecodingError         → MalformedResponseError
                       other RequestError    → APIConnectionError
    aiohttp            ClientError, and the bare TimeoutError of its total timeout → as the
                       aiohttp transport maps them
    anything else      None: the caller's own exception (a finish-reason error, a webhook
                       check, a function-calling bug), reported as it is and not retried

Messages hide the shapes of keys and tokens (`_redact`): a key a server echoes never depends on
where an SDK version keeps the headers it sent. The engine running the call hides, besides, every
key the process knows (the client's, the provider variables'). The returned error is fresh: no
cause, context or traceback, so it holds no frame of the SDK's (those hold the request and its
auth header). Keep it as a value, or raise it outside the
`except` block that caught the SDK's exception: raised inside, Python chains the two again.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from typing import Any

import orjson

from llmgather._errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ConnectError,
    MalformedResponseError,
    RequestTimeoutError,
    ServerError,
    TransientError,
)
from llmgather._exchange import error_from_answer, malformed
from llmgather._types import Usage
from llmgather.providers.base import Provider
from llmgather.providers.registry import PROVIDERS
from llmgather.transport.aiohttp import mapped as mapped_aiohttp
from llmgather.transport.sse import SSEEvent

# Each official SDK, by the package its exceptions live in, and the adapter of its wire format.
_SDK_PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "google.genai": "gemini"}
# What parsing an odd error body may raise (as `_exchange` treats them): a malformed answer.
_SHAPE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError)


def error_from_sdk(exc: BaseException) -> APIError | None:
    """The llmgather error for an exception an official SDK (or its HTTP library) raised.

    None for any other exception: it is the caller's own, reported as it is, never retried.
    """
    if not isinstance(exc, Exception):
        return None  # cancellation and interpreter exits are never a provider's failure
    family = sdk_family(type(exc))
    error: APIError | None
    if family in ("openai", "anthropic"):
        error = _from_stainless(exc, family)
    elif family == "google.genai":
        error = _from_genai(exc)
    elif family in ("httpx", "httpx2"):
        error = _from_httpx(exc, family)
    elif family == "aiohttp" or type(exc) is TimeoutError:
        # aiohttp's total timeout raises the builtin TimeoutError (google-genai's calls end so).
        error = _as_api_error(mapped_aiohttp(exc))
    elif isinstance(exc, json.JSONDecodeError) and (sdk := _raised_in_sdk(exc)):
        # All three SDKs let a 2xx body that is not JSON through as the json module's error;
        # raised by the caller's own code (parsing the model's answer), it stays theirs.
        name = sdk.replace(".", "-")
        error = MalformedResponseError(f"the answer is not valid JSON (in the {name} SDK)")
    else:
        error = None
    return _fresh(error) if error is not None else None


def usage_from_sdk(response: object) -> Usage | None:
    """The tokens an SDK's response reports, normalised as the adapters do, or None if it
    reports none.

    OpenAI's `usage.prompt_tokens/completion_tokens` (`prompt_tokens_details.cached_tokens`
    read from the cache), Anthropic's (and OpenAI Responses') `usage.input_tokens/output_tokens`
    (Anthropic's cache reads and writes added to the input), Gemini's
    `usage_metadata.prompt_token_count/candidates_token_count` (thoughts count as output,
    `cached_content_token_count` read from the cache), and LangChain's `usage_metadata` dict
    (`input_token_details.cache_read/cache_creation`). Attributes or dict keys alike.
    """
    usage = _field(response, "usage")
    if _has(usage, "prompt_tokens"):
        read = _count(_field(usage, "prompt_tokens_details"), "cached_tokens")
        return Usage(
            _count(usage, "prompt_tokens"),
            _count(usage, "completion_tokens"),
            cache_read_tokens=read,
        )
    if _has(usage, "input_tokens"):
        read = _count(usage, "cache_read_input_tokens")
        written = _count(usage, "cache_creation_input_tokens")
        # OpenAI Responses' input_tokens counts its cached ones (input_tokens_details).
        read += _count(_field(usage, "input_tokens_details"), "cached_tokens")
        return Usage(
            _count(usage, "input_tokens") + _count(usage, "cache_read_input_tokens") + written,
            _count(usage, "output_tokens"),
            cache_read_tokens=read,
            cache_write_tokens=written,
        )
    metadata = _field(response, "usage_metadata")
    if metadata is None:
        metadata = _field(response, "usageMetadata")  # a raw generateContent JSON body
    for prompt, candidates, thoughts, cached in (
        (
            "prompt_token_count",
            "candidates_token_count",
            "thoughts_token_count",
            "cached_content_token_count",
        ),
        (
            "promptTokenCount",
            "candidatesTokenCount",
            "thoughtsTokenCount",
            "cachedContentTokenCount",
        ),
    ):
        if _has(metadata, prompt):
            output = _count(metadata, candidates) + _count(metadata, thoughts)
            return Usage(
                _count(metadata, prompt), output, cache_read_tokens=_count(metadata, cached)
            )
    if _has(metadata, "input_tokens"):
        details = _field(metadata, "input_token_details")
        return Usage(
            _count(metadata, "input_tokens"),
            _count(metadata, "output_tokens"),
            cache_read_tokens=_count(details, "cache_read"),
            cache_write_tokens=_count(details, "cache_creation"),
        )
    return None


def priced_as(response: object) -> tuple[str, str] | None:
    """The provider (its registry name) and the model an official SDK's answer names, to price
    its usage by (`gpt-4o-mini-2024-07-18`: the price table knows the dated names); None for
    anything else (a dict, a string, a LangChain message), which cannot say who answered."""
    provider = _SDK_PROVIDERS.get(sdk_family(type(response)) or "")
    if provider is None:
        return None
    model = _field(response, "model")
    if not isinstance(model, str):
        model = _field(response, "model_version")  # google-genai's GenerateContentResponse
    return (provider, model) if isinstance(model, str) and model else None


def text_from_sdk(response: object) -> str | None:
    """The answer's text: OpenAI's first choice, Anthropic's text blocks, Gemini's first
    candidate (without thoughts), OpenAI Responses' `output_text`, LangChain's `content`."""
    if isinstance(response, str):
        return response
    choices = _field(response, "choices")
    if isinstance(choices, list) and choices:
        content = _field(_field(choices[0], "message"), "content")
        return content if isinstance(content, str) else ""
    candidates = _field(response, "candidates")
    if isinstance(candidates, list) and candidates:
        parts = _field(_field(candidates[0], "content"), "parts") or ()
        return "".join(
            text
            for part in parts
            if isinstance(text := _field(part, "text"), str) and not _field(part, "thought")
        )
    content = _field(response, "content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            text
            for block in content
            if _field(block, "type") == "text" and isinstance(text := _field(block, "text"), str)
        )
    output_text = _field(response, "output_text")
    return output_text if isinstance(output_text, str) else None


# -- openai and anthropic (both generated by Stainless: one shape of exception) ----------------


def _from_stainless(exc: Exception, family: str) -> APIError | None:
    sdk = importlib.import_module(family)
    if isinstance(exc, sdk.APIStatusError):
        return _status_error(exc, family)
    if isinstance(exc, sdk.APIResponseValidationError):
        return MalformedResponseError(
            f"the answer does not match the {family} SDK's schema ({type(exc).__name__})",
            status_code=exc.status_code,
        )
    if isinstance(exc, sdk.APITimeoutError):
        return _cause(exc) or RequestTimeoutError("no answer within the timeout")
    if isinstance(exc, sdk.APIConnectionError):
        return _cause(exc) or APIConnectionError(f"cannot reach {_host(exc.request)}")
    if type(exc) is sdk.APIError:
        # The openai SDK raises its bare APIError for an `error` event inside a stream.
        return _event_error(exc, family)
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "CredentialsError" in names or "SubjectTokenProviderError" in names:
        return AuthenticationError(f"the {family} SDK found no usable credentials")
    if "RetryableError" in names:
        return TransientError(f"the {family} SDK was asked to retry ({type(exc).__name__})")
    if "WebSocketConnectionClosedError" in names:
        return APIConnectionError("the WebSocket connection closed with messages unsent")
    return None


def _status_error(exc: Any, family: str) -> APIError:
    response = exc.response
    if response.status_code < 400:
        # anthropic raises an `error` event inside a 200 stream as a status error.
        return _event_error(exc, family)
    provider = sdk_adapter(family)
    body = _raw_body(response, exc.body)
    return _as_api_error(error_from_answer(provider, response.status_code, response.headers, body))


def _event_error(exc: Any, family: str) -> APIError:
    """An error event of a stream, decoded by the adapter's own stream decoder."""
    body = exc.body
    event = "error"  # Anthropic names its events; OpenAI's error event is a plain `data:`
    if family == "openai":
        event = ""
        if isinstance(body, Mapping) and "error" not in body:
            body = {"error": body}  # the SDK keeps only the event's `error` object
    provider = sdk_adapter(family)
    data = body if isinstance(body, str) else orjson.dumps(body, default=str).decode()
    try:
        provider.stream_decoder().feed(SSEEvent(event, data))
    except APIError as error:
        return error
    except _SHAPE_ERRORS as shape:
        return malformed("a stream's error event", shape)
    return ServerError("the stream carried an error event")


def _raw_body(response: Any, parsed: object) -> bytes:
    """The body as the server sent it; the SDK's parsed copy if it was never read."""
    try:
        content = response.content
    except Exception:  # httpx's ResponseNotRead: a stream closed before its body was read
        content = None
    if isinstance(content, bytes):
        return content
    if parsed is None:
        return b""
    if isinstance(parsed, str):
        return parsed.encode()
    return orjson.dumps(parsed, default=str)


def _cause(exc: BaseException) -> APIError | None:
    """The SDK's connection and timeout errors wrap the HTTP library's, which say more."""
    cause = exc.__cause__
    if cause is None or cause is exc:
        return None
    error = error_from_sdk(cause)
    return error if isinstance(error, (APIConnectionError, RequestTimeoutError)) else None


# -- google-genai --------------------------------------------------------------------------------


def _from_genai(exc: Exception) -> APIError | None:
    errors = importlib.import_module("google.genai.errors")
    if isinstance(exc, errors.APIError):
        code = exc.code
        # An error event inside a stream may carry no HTTP code: the adapter's decoder says 500.
        status = code if isinstance(code, int) and code >= 400 else 500
        response = exc.response
        headers = getattr(response, "headers", None) or {}
        provider = sdk_adapter("google.genai")
        return _as_api_error(error_from_answer(provider, status, headers, _genai_body(exc)))
    if isinstance(exc, errors.UnknownApiResponseError):
        return MalformedResponseError("the answer is not the JSON google-genai expects")
    return None


def _genai_body(exc: Any) -> bytes:
    details = exc.details  # the parsed body; for a body that is not JSON, its text as message
    if isinstance(details, Mapping) and "error" not in details and "message" in details:
        return str(details["message"]).encode()
    return orjson.dumps(details, default=str)


# -- httpx and httpx2 (under openai, anthropic and google-genai) --------------------------------


def _from_httpx(exc: Exception, family: str) -> APIError | None:
    httpx = importlib.import_module(family)
    if isinstance(exc, httpx.ConnectTimeout):
        return RequestTimeoutError("no connection within the connect timeout")
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeoutError("no answer within the timeout")
    if isinstance(exc, httpx.ConnectError):
        return ConnectError(f"cannot connect to {_host(_httpx_request(exc))}")
    if isinstance(exc, httpx.RemoteProtocolError):
        return APIConnectionError("the server closed the connection or broke the HTTP protocol")
    if isinstance(exc, httpx.DecodingError):
        return MalformedResponseError("the answer's body could not be decoded")
    if isinstance(exc, httpx.RequestError):
        # The type only: the text may quote the URL, and a URL may carry a key.
        return APIConnectionError(f"connection error: {type(exc).__name__}")
    return None


def _httpx_request(exc: Any) -> Any:
    try:
        return exc.request
    except RuntimeError:  # httpx: an error raised outside any request
        return None


# -- shared --------------------------------------------------------------------------------------


def sdk_family(cls: type) -> str | None:
    """The SDK or HTTP library an exception class comes from, subclasses of theirs included."""
    for klass in cls.__mro__:
        family = _family_of(klass.__module__)
        if family is not None:
            return family
    return None


def _family_of(module: str) -> str | None:
    if module == "google.genai" or module.startswith("google.genai."):
        return "google.genai"
    root = module.partition(".")[0]
    return root if root in ("openai", "anthropic", "httpx", "httpx2", "aiohttp") else None


def _raised_in_sdk(exc: BaseException) -> str | None:
    """The official SDK whose code the exception passed through, if any."""
    frame = exc.__traceback__
    while frame is not None:
        family = _family_of(str(frame.tb_frame.f_globals.get("__name__", "")))
        if family in _SDK_PROVIDERS:
            return family
        frame = frame.tb_next
    return None


def sdk_adapter(family: str) -> Provider:
    # No key: the adapter's messages hide the shapes of keys; the engine that runs the call
    # hides every key the process knows (where an SDK keeps the one it sent is its own affair).
    return PROVIDERS[_SDK_PROVIDERS[family]].factory(api_key=None)


def _host(request: Any) -> str:
    """`host:port` of a request, never the whole URL (a query may carry a key)."""
    url = getattr(request, "url", None)
    host = getattr(url, "host", None)
    if not host:
        return "the server"
    port = getattr(url, "port", None)
    return f"{host}:{port}" if port else str(host)


def _as_api_error(error: Exception) -> APIError:
    if isinstance(error, APIError):
        return error
    return ServerError(f"unexpected error while mapping an answer ({type(error).__name__})")


def _fresh(error: APIError) -> APIError:
    """Drop whatever links the error to the SDK's exception and frames."""
    error.__cause__ = None
    error.__context__ = None
    error.__traceback__ = None
    return error


def _field(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _has(obj: Any, name: str) -> bool:
    return _field(obj, name) is not None


def _count(obj: Any, name: str) -> int:
    value = _field(obj, name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
