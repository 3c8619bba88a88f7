"""The official SDKs' exceptions and responses become llmgather's exactly as its own answers do.

Real exceptions from the real `openai`, `anthropic` and `google-genai` async clients, against
the simulator over loopback: each maps to the error llmgather's own adapter gives for the same
answer (class, status, Retry-After, retryability, message). A key echoed by a server never
reaches the mapped error, and the last tests check that every exception class the three SDKs
export is classified, as tests/test_error_mapping.py does for the adapters.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import anthropic
import httpx2
import openai
import pytest
from aiohttp import web
from anthropic import AsyncAnthropic
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from openai import AsyncOpenAI

from llmgather._errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    MalformedResponseError,
    OverloadedError,
    QuotaExhaustedError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    TransientError,
)
from llmgather._exchange import error_from_answer
from llmgather._sdk_errors import error_from_sdk, text_from_sdk, usage_from_sdk
from llmgather._types import Usage
from llmgather.providers.registry import PROVIDERS
from llmgather.sim import RunningSimulator
from tests.loopbackserver import serving_handler
from tests.simfixtures import ANTHROPIC, GEMINI, OPENAI, PROMPT, body_for, post, running

SDKS = ("openai", "anthropic", "gemini")
PATHS = {"openai": OPENAI, "anthropic": ANTHROPIC, "gemini": GEMINI}
KEY = "sk-secret-KEY-0123456789abcdef"
MAX_TOKENS = 256  # what simfixtures.body_for asks of Anthropic, so both calls get one answer
Call = Callable[[], Awaitable[Any]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # google-genai subclasses aiohttp.ClientSession for its own session, which aiohttp
    # deprecates (a warning, so an error here); handing it a plain session avoids that.
    async with aiohttp.ClientSession() as own:
        yield own


@contextlib.asynccontextmanager
async def sdk_call(
    sdk: str,
    base_url: str,
    session: aiohttp.ClientSession,
    *,
    key: str = "k",
    timeout_s: float | None = None,
    stream: bool = False,
) -> AsyncIterator[Call]:
    """One generate call of the official SDK, its own retries off, as the README tells users."""
    messages: Any = [{"role": "user", "content": PROMPT}]
    if sdk == "openai":
        oai = AsyncOpenAI(
            base_url=base_url + "/v1", api_key=key, max_retries=0, timeout=timeout_s or 60
        )
        async with oai:
            yield lambda: _drain(
                oai.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=stream)
            )
    elif sdk == "anthropic":
        ant = AsyncAnthropic(base_url=base_url, api_key=key, max_retries=0, timeout=timeout_s or 60)
        async with ant:
            yield lambda: _drain(
                ant.messages.create(
                    model="claude-sim", max_tokens=MAX_TOKENS, messages=messages, stream=stream
                )
            )
    else:
        # attempts=1: no tenacity retries, and no implicit retry after a connection error.
        options = types.HttpOptions(
            base_url=base_url,
            aiohttp_client=session,
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        if timeout_s is not None:
            options.timeout = int(timeout_s * 1000)  # milliseconds
        gemini = genai.Client(api_key=key, http_options=options)
        models = gemini.aio.models
        try:
            if stream:
                yield lambda: _drain(
                    models.generate_content_stream(model="gemini-2.0-flash", contents=PROMPT)
                )
            else:
                yield lambda: models.generate_content(model="gemini-2.0-flash", contents=PROMPT)
        finally:
            await gemini.aio.aclose()


async def _drain(answer: Awaitable[Any]) -> Any:
    """The whole answer: a stream is read to its end, where its errors surface."""
    result = await answer
    if hasattr(result, "__aiter__"):
        return [chunk async for chunk in result]
    return result


async def raised(call: Call) -> Exception:
    try:
        await call()
    except Exception as exc:
        return exc
    raise AssertionError("the SDK call succeeded")


async def own_error(sdk: str, sim: RunningSimulator, session: aiohttp.ClientSession) -> APIError:
    """What llmgather's own adapter makes of the simulator's answer to the same request."""
    status, headers, body = await post(session, sim, PATHS[sdk])
    assert status >= 400
    error = error_from_answer(PROVIDERS[sdk].factory(api_key="k"), status, headers, body)
    assert isinstance(error, APIError)
    return error


def same(mapped: APIError | None, own: APIError) -> None:
    assert mapped is not None
    assert type(mapped) is type(own)
    assert mapped.status_code == own.status_code
    assert mapped.retry_after == own.retry_after
    assert mapped.retryable == own.retryable
    assert mapped.message == own.message
    assert mapped.announced == own.announced


# -- status errors: identical to llmgather's own adapter ----------------------------------------

EXPECTED = {
    ("openai", "429"): RateLimitError,
    ("anthropic", "429"): RateLimitError,
    ("gemini", "429"): RateLimitError,
    ("openai", "quota"): QuotaExhaustedError,
    ("anthropic", "quota"): QuotaExhaustedError,
    ("gemini", "quota"): QuotaExhaustedError,
    ("openai", "500"): ServerError,
    ("anthropic", "500"): ServerError,
    ("gemini", "500"): ServerError,
    ("openai", "503"): ServerError,
    ("anthropic", "503"): ServerError,
    ("gemini", "503"): ServerError,
    ("openai", "529"): OverloadedError,
    ("anthropic", "529"): OverloadedError,
    ("gemini", "529"): ServerError,  # Gemini's body names it UNAVAILABLE
}


@pytest.mark.parametrize(("sdk", "fault"), list(EXPECTED), ids=lambda v: str(v))
async def test_a_status_error_maps_as_llmgathers_own_adapter_maps_the_same_answer(
    sdk: str, fault: str, session: aiohttp.ClientSession
) -> None:
    async with (
        running(f"{fault}=1", fault_retry_after_s=2.5) as sim,
        sdk_call(sdk, sim.base_url, session) as call,
    ):
        exc = await raised(call)
        own = await own_error(sdk, sim, session)
    mapped = error_from_sdk(exc)
    same(mapped, own)
    assert type(mapped) is EXPECTED[sdk, fault]
    if fault == "429":
        assert mapped is not None and mapped.retry_after is not None and mapped.retry_after >= 2.5


@pytest.mark.parametrize("sdk", SDKS)
async def test_a_real_rate_limit_429_carries_the_servers_retry_after(
    sdk: str, session: aiohttp.ClientSession
) -> None:
    async with running(rpm=1) as sim, sdk_call(sdk, sim.base_url, session) as call:
        await call()  # the one request the minute allows
        exc = await raised(call)
    mapped = error_from_sdk(exc)
    assert isinstance(mapped, RateLimitError) and mapped.retryable
    assert mapped.status_code == 429
    assert mapped.retry_after is not None and mapped.retry_after > 0


@pytest.mark.parametrize("sdk", SDKS)
async def test_a_wrong_key_is_an_authentication_error_never_retried(
    sdk: str, session: aiohttp.ClientSession
) -> None:
    async with (
        running(require_key="the-right-key") as sim,
        sdk_call(sdk, sim.base_url, session, key=KEY) as call,
    ):
        exc = await raised(call)
    mapped = error_from_sdk(exc)
    assert isinstance(mapped, AuthenticationError)
    assert not mapped.retryable
    # Gemini answers a wrong key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID.
    assert mapped.status_code == (400 if sdk == "gemini" else 401)
    assert KEY not in str(mapped)


# -- connection failures, timeouts, malformed answers -------------------------------------------


@pytest.mark.parametrize("sdk", SDKS)
async def test_a_refused_connection_is_a_connection_error(
    sdk: str,
    session: aiohttp.ClientSession,
    closed_port: Callable[[], int],
) -> None:
    port = closed_port()
    async with sdk_call(sdk, f"http://127.0.0.1:{port}", session) as call:
        exc = await raised(call)
    mapped = error_from_sdk(exc)
    assert isinstance(mapped, APIConnectionError) and mapped.retryable
    assert f"127.0.0.1:{port}" in str(mapped)


@pytest.mark.parametrize("sdk", SDKS)
async def test_no_answer_within_the_sdks_timeout_is_a_request_timeout(
    sdk: str, session: aiohttp.ClientSession
) -> None:
    async with (
        running("stall=1", stall_s=2.0) as sim,
        sdk_call(sdk, sim.base_url, session, timeout_s=0.2) as call,
    ):
        exc = await raised(call)
    mapped = error_from_sdk(exc)
    assert isinstance(mapped, RequestTimeoutError) and mapped.retryable


@pytest.mark.parametrize("sdk", SDKS)
@pytest.mark.parametrize("fault", ["reset", "cut"])
async def test_a_broken_connection_is_a_connection_error(
    sdk: str, fault: str, session: aiohttp.ClientSession
) -> None:
    async with (
        running(f"{fault}=1") as sim,
        sdk_call(sdk, sim.base_url, session) as call,
    ):
        exc = await raised(call)
    # (A cut *stream* is no exception at all: the openai SDK ends it quietly, without [DONE].)
    assert isinstance(error_from_sdk(exc), APIConnectionError)


@pytest.mark.parametrize("sdk", SDKS)
async def test_a_body_that_is_not_json_is_a_malformed_answer(
    sdk: str, session: aiohttp.ClientSession
) -> None:
    # Every SDK lets the json module's error through: from inside the SDK it is the answer's.
    async with running("malformed=1") as sim, sdk_call(sdk, sim.base_url, session) as call:
        exc = await raised(call)
    assert isinstance(error_from_sdk(exc), MalformedResponseError)


def test_a_json_error_of_the_callers_own_code_stays_theirs() -> None:
    import json

    try:
        json.loads("{not json")
    except ValueError as exc:
        assert error_from_sdk(exc) is None


@pytest.mark.parametrize("exc", [ValueError("x"), KeyError("x"), asyncio.CancelledError()])
def test_other_exceptions_are_not_mapped(exc: BaseException) -> None:
    assert error_from_sdk(exc) is None


# -- what a server echoes: keys, verdicts, errors inside a stream -------------------------------


def sent_key(request: web.Request) -> str:
    for name in ("x-api-key", "x-goog-api-key"):
        if name in request.headers:
            return request.headers[name]
    return request.headers.get("authorization", "").removeprefix("Bearer ")


async def echo_the_key(request: web.Request) -> web.Response:
    """A server that quotes the caller's key in its error message, as proxies sometimes do."""
    message = f"the key {sent_key(request)} is not valid"
    if "/models/" in request.path:  # Gemini
        error = {"code": 401, "status": "UNAUTHENTICATED", "message": message}
        return web.json_response({"error": error}, status=401)
    if request.path == ANTHROPIC:
        error = {"type": "authentication_error", "message": message}
        return web.json_response({"type": "error", "error": error}, status=401)
    error = {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}
    return web.json_response({"error": error}, status=401)


@pytest.mark.parametrize("sdk", SDKS)
async def test_a_key_the_server_echoes_never_reaches_the_mapped_error(
    sdk: str, session: aiohttp.ClientSession
) -> None:
    async with serving_handler(echo_the_key) as url, sdk_call(sdk, url, session, key=KEY) as call:
        exc = await raised(call)
    assert KEY in repr(getattr(exc, "body", None) or getattr(exc, "details", None))
    # Hidden by its shape, wherever (if anywhere) the SDK keeps the headers it sent; a key of
    # no known shape is hidden by the engine that runs the call (tests/test_redaction.py).
    mapped = error_from_sdk(exc)
    assert isinstance(mapped, AuthenticationError)
    assert KEY not in str(mapped) and "[redacted]" in str(mapped)
    assert KEY not in repr(vars(mapped)) and KEY not in repr(mapped.args)
    # Nothing links it to the SDK's exception, whose frames hold the request and its header.
    assert mapped.__cause__ is None and mapped.__context__ is None
    assert mapped.__traceback__ is None


async def overloaded_unless_told(request: web.Request) -> web.Response:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    return web.json_response(body, status=529, headers={"x-should-retry": "false"})


async def test_the_servers_x_should_retry_wins_over_the_status(
    session: aiohttp.ClientSession,
) -> None:
    async with (
        serving_handler(overloaded_unless_told) as url,
        sdk_call("anthropic", url, session) as call,
    ):
        exc = await raised(call)
    mapped = error_from_sdk(exc)
    assert isinstance(mapped, OverloadedError) and not mapped.retryable


def sse(*events: tuple[str, str]) -> bytes:
    return b"".join(
        (f"event: {name}\n" if name else "").encode() + f"data: {data}\n\n".encode()
        for name, data in events
    )


async def error_inside_a_stream(request: web.Request) -> web.StreamResponse:
    """A 200 stream that fails part-way with the provider's own error event."""
    if request.path == ANTHROPIC:
        start = (
            '{"type": "message_start", "message": {"id": "m", "type": "message", '
            '"role": "assistant", "content": [], "model": "claude-sim", "stop_reason": null, '
            '"usage": {"input_tokens": 5, "output_tokens": 0}}}'
        )
        error = '{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
        body = sse(("message_start", start), ("error", error))
    elif "/models/" in request.path:  # Gemini (google-genai says /v1/ to a custom base URL)
        error = '{"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}'
        body = sse(("", error))
    else:
        error = '{"error": {"message": "The server had an error", "type": "server_error"}}'
        body = sse(("", error))
    return web.Response(body=body, content_type="text/event-stream")


@pytest.mark.parametrize(
    ("sdk", "expected"),
    [("openai", ServerError), ("anthropic", OverloadedError), ("gemini", ServerError)],
)
async def test_an_error_event_inside_a_stream_maps_as_the_adapters_decoder_maps_it(
    sdk: str, expected: type[APIError], session: aiohttp.ClientSession
) -> None:
    async with (
        serving_handler(error_inside_a_stream) as url,
        sdk_call(sdk, url, session, stream=True) as call,
    ):
        try:
            await call()
        except Exception as exc:
            # Mapped inside the `except`, as an engine does: the decoder raises the error, and
            # it must still come out with no context, cause or traceback.
            mapped = error_from_sdk(exc)
    assert type(mapped) is expected and mapped.retryable
    assert mapped.__cause__ is None and mapped.__context__ is None
    assert mapped.__traceback__ is None


# -- usage and text of a real response ------------------------------------------------------------


@pytest.mark.parametrize("sdk", SDKS)
async def test_usage_and_text_are_the_simulators(sdk: str, session: aiohttp.ClientSession) -> None:
    async with running(seed=4) as sim, sdk_call(sdk, sim.base_url, session) as call:
        response = await call()
        status, headers, body = await post(session, sim, PATHS[sdk], body_for(PATHS[sdk]))
    assert status == 200
    own = PROVIDERS[sdk].factory(api_key="k").parse_response(status, headers, body)
    assert own.usage is not None and own.usage.output_tokens > 0
    assert usage_from_sdk(response) == own.usage
    assert text_from_sdk(response) == own.text != ""


@pytest.mark.parametrize(
    ("response", "usage"),
    [
        ({"usage": {"prompt_tokens": 3, "completion_tokens": 4}}, Usage(3, 4)),
        (  # OpenAI: the cached tokens are inside prompt_tokens
            {
                "usage": {
                    "prompt_tokens": 30,
                    "completion_tokens": 4,
                    "prompt_tokens_details": {"cached_tokens": 20},
                }
            },
            Usage(30, 4, cache_read_tokens=20),
        ),
        (  # Anthropic: outside input_tokens, added to it
            {
                "usage": {
                    "input_tokens": 3,
                    "cache_read_input_tokens": 10,
                    "cache_creation_input_tokens": 7,
                    "output_tokens": 4,
                }
            },
            Usage(20, 4, cache_read_tokens=10, cache_write_tokens=7),
        ),
        (  # OpenAI Responses: the cached tokens are inside input_tokens
            {
                "usage": {
                    "input_tokens": 30,
                    "input_tokens_details": {"cached_tokens": 20},
                    "output_tokens": 4,
                }
            },
            Usage(30, 4, cache_read_tokens=20),
        ),
        ({"usageMetadata": {"promptTokenCount": 3, "thoughtsTokenCount": 2}}, Usage(3, 2)),
        (  # Gemini: cachedContentTokenCount is inside promptTokenCount
            {"usageMetadata": {"promptTokenCount": 30, "cachedContentTokenCount": 20}},
            Usage(30, 0, cache_read_tokens=20),
        ),
        ({"usage_metadata": {"input_tokens": 3, "output_tokens": 4}}, Usage(3, 4)),  # LangChain
        (
            {
                "usage_metadata": {
                    "input_tokens": 30,
                    "output_tokens": 4,
                    "input_token_details": {"cache_read": 20, "cache_creation": 5},
                }
            },
            Usage(30, 4, cache_read_tokens=20, cache_write_tokens=5),
        ),
        ({"usage": None}, None),
        ({"choices": []}, None),
        ("just text", None),
        (None, None),
    ],
)
def test_usage_of_other_shapes(response: object, usage: Usage | None) -> None:
    assert usage_from_sdk(response) == usage


# -- completeness: every exception class the three SDKs export is classified --------------------

REQUEST = httpx2.Request("POST", "https://api.example.com/v1/x", headers={"x-api-key": KEY})

# The exceptions that are not an HTTP status, and what each becomes (None: the caller's own).
NOT_STATUS: dict[type[BaseException], type[APIError] | None] = {
    openai.OpenAIError: None,
    openai.APIError: ServerError,  # an `error` event inside a stream
    openai.APIConnectionError: APIConnectionError,
    openai.APITimeoutError: RequestTimeoutError,
    openai.APIResponseValidationError: MalformedResponseError,
    openai.LengthFinishReasonError: None,  # an answer cut by max_tokens: the caller's call
    openai.ContentFilterFinishReasonError: None,
    openai.InvalidWebhookSignatureError: None,
    openai.WebSocketConnectionClosedError: APIConnectionError,
    openai.WebSocketQueueFullError: None,  # the caller sent faster than the socket drains
    anthropic.AnthropicError: None,
    anthropic.APIError: OverloadedError,  # an `error` event (this one says overloaded_error)
    anthropic.APIConnectionError: APIConnectionError,
    anthropic.APITimeoutError: RequestTimeoutError,
    anthropic.APIResponseValidationError: MalformedResponseError,
    anthropic.APIWebhookValidationError: None,
    anthropic.RetryableError: TransientError,
    anthropic.CredentialsError: AuthenticationError,
    anthropic.IdentityTokenFileError: AuthenticationError,
    genai_errors.UnknownApiResponseError: MalformedResponseError,
    genai_errors.UnknownFunctionCallArgumentError: None,
    genai_errors.UnsupportedFunctionError: None,
    genai_errors.FunctionInvocationError: None,
    genai_errors.ContinuationInterruptedError: None,  # holds what to resume from
    genai_errors.ExperimentalWarning: None,
}
STATUS_ERRORS = (openai.APIStatusError, anthropic.APIStatusError, genai_errors.APIError)


def exported() -> list[type[BaseException]]:
    classes: set[type[BaseException]] = set()
    for module in (openai, anthropic):
        for name in module.__all__:
            value = getattr(module, name, None)
            if isinstance(value, type) and issubclass(value, BaseException):
                classes.add(value)
    for value in vars(genai_errors).values():
        if isinstance(value, type) and issubclass(value, BaseException):
            classes.add(value)
    return sorted(classes, key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


def status_of(cls: type[BaseException]) -> int:
    status = getattr(cls, "status_code", None)
    if isinstance(status, int):
        return status
    return 500 if "InternalServerError" in {c.__name__ for c in cls.__mro__} else 418


def instance(cls: type[BaseException]) -> BaseException:
    """One exception of the class, built as its SDK builds it."""
    any_cls: Any = cls
    if issubclass(cls, (openai.APIStatusError, anthropic.APIStatusError)):
        response = httpx2.Response(status_of(cls), request=REQUEST, content=b"{}")
        try:
            return any_cls("boom", response=response, body={})
        except TypeError:  # openai's OAuthError builds its own message
            return any_cls(response=response, body={})
    if issubclass(cls, genai_errors.APIError):
        code = 400 if cls is genai_errors.ClientError else 500
        return any_cls(code, {"error": {"code": code, "message": "boom", "status": ""}})
    if issubclass(cls, (openai.APIResponseValidationError, anthropic.APIResponseValidationError)):
        return any_cls(httpx2.Response(200, request=REQUEST), body=None)
    if issubclass(cls, (openai.APIConnectionError, anthropic.APIConnectionError)):
        return any_cls(request=REQUEST)
    if cls is openai.APIError:
        return any_cls("boom", REQUEST, body={"message": "boom", "type": "server_error"})
    if cls is anthropic.APIError:
        body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return any_cls("boom", REQUEST, body=body)
    return any_cls.__new__(cls)  # mapped (or not) by its class alone


@pytest.mark.parametrize("cls", exported(), ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_every_exception_the_sdks_export_is_classified(cls: type[BaseException]) -> None:
    exc = instance(cls)
    mapped = error_from_sdk(exc)
    if issubclass(cls, STATUS_ERRORS):
        # Identical to llmgather's own adapter given the same status and body.
        family = "anthropic" if issubclass(cls, anthropic.APIStatusError) else "openai"
        if issubclass(cls, genai_errors.APIError):
            family = "gemini"
        status = exc.code if isinstance(exc, genai_errors.APIError) else status_of(cls)
        body = b'{"error": {"code": %d, "message": "boom", "status": ""}}' % status
        if family != "gemini":
            body = b"{}"
        own = error_from_answer(PROVIDERS[family].factory(api_key=KEY), status, {}, body)
        assert isinstance(own, APIError)
        same(mapped, own)
        return
    assert cls in NOT_STATUS, f"{cls.__module__}.{cls.__name__} is new: classify it"
    expected = NOT_STATUS[cls]
    if expected is None:
        assert mapped is None
    else:
        assert type(mapped) is expected


def test_the_completeness_table_names_only_exported_classes() -> None:
    assert set(NOT_STATUS) <= set(exported())
