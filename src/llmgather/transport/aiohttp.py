"""The one pooled HTTP session every request goes through, and the boundary where aiohttp's and
asyncio's exceptions become llmgather's (`APIConnectionError`, `RequestTimeoutError`)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from llmgather._config import Timeouts
from llmgather._errors import (
    APIConnectionError,
    APIError,
    MalformedResponseError,
    RequestTimeoutError,
    error_for_status,
)
from llmgather._types import Completion
from llmgather.providers.base import Headers, HttpRequest, Provider
from llmgather.transport.sse import SSEDecoder, SSEEvent

# What an adapter's parsing raises on an answer of a shape it did not expect (a list where an
# object belongs, a string for a count): a garbled answer is a transient fault, retried like a
# cut connection, never a reason to fail the item for good.
_SHAPE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError)


@dataclass(frozen=True, slots=True)
class Outcome:
    completion: Completion
    ttft_ms: float | None = None


class Transport:
    """A pooled aiohttp session sized for the engine's concurrency (never aiohttp's default 100)."""

    def __init__(
        self,
        *,
        max_connections: int,
        timeouts: Timeouts | None = None,
        on_headers: Callable[[Headers], None] | None = None,
    ) -> None:
        """`on_headers` sees the headers of every answer (the limiter learns limits from them)."""
        self._max_connections = max_connections
        self._timeouts = timeouts or Timeouts()
        self._on_headers = on_headers
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Transport:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, limit_per_host=0, enable_cleanup_closed=False
        )
        # A whole answer must come within `read`: one timer per request. A stream only has to
        # keep talking: a timer per chunk, which is dearer, so only streams pay for it.
        self._plain_timeout = aiohttp.ClientTimeout(
            total=self._timeouts.read, sock_connect=self._timeouts.connect
        )
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._timeouts.connect, sock_read=self._timeouts.read
        )
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=True, trust_env=False
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the transport is not open: use it inside `async with`")
        return self._session

    async def complete(self, provider: Provider, http: HttpRequest) -> Outcome:
        """Send one request and parse the whole answer."""
        # Written out rather than as an async context manager: this is the hot path, and a context
        # manager per request costs more CPU than the rest of llmgather's own work.
        try:
            response = await self.session.request(
                http.method, http.url, headers=http.headers, data=http.body,
                timeout=self._plain_timeout,
            )  # fmt: skip
            try:
                body = await response.read()
            finally:
                response.release()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _mapped(exc) from None
        if self._on_headers is not None:
            self._on_headers(response.headers)
        if response.status >= 300:
            raise _error(provider, response.status, response.headers, body)
        try:
            return Outcome(provider.parse_response(response.status, response.headers, body))
        except _SHAPE_ERRORS as exc:
            raise _malformed("the answer", exc) from None

    async def stream(self, provider: Provider, http: HttpRequest) -> Outcome:
        """Send one streaming request and read it to the end (which records time to first token)."""
        async with self.open_stream(provider, http) as live:
            async for _ in live:
                pass
        return live.outcome()

    @asynccontextmanager
    async def open_stream(self, provider: Provider, http: HttpRequest) -> AsyncIterator[LiveStream]:
        """A streaming answer to iterate piece by piece; `outcome()` once it is exhausted."""
        try:
            response = await self.session.request(
                http.method, http.url, headers=http.headers, data=http.body,
                timeout=self._stream_timeout,
            )  # fmt: skip
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _mapped(exc) from None
        if self._on_headers is not None:
            self._on_headers(response.headers)
        # Only the sending is mapped here: what the caller raises while reading stays its own.
        async with response:
            if response.status >= 300:
                body = await _read(response)
                raise _error(provider, response.status, response.headers, body)
            yield LiveStream(response, provider)


class LiveStream:
    """The text pieces of one streaming answer, decoded as the bytes arrive."""

    def __init__(self, response: aiohttp.ClientResponse, provider: Provider) -> None:
        self._response = response
        self._decoder = provider.stream_decoder()
        self._started = time.perf_counter()
        self._ttft_ms: float | None = None
        self._completion: Completion | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        sse = SSEDecoder()
        try:
            async for chunk in self._response.content.iter_any():
                for piece in self._pieces(sse.feed(chunk)):
                    yield piece
            for piece in self._pieces(sse.flush()):
                yield piece
            self._completion = self._decoder.finish()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _mapped(exc) from None
        except _SHAPE_ERRORS as exc:
            raise _malformed("a stream event", exc) from None

    def _pieces(self, events: list[SSEEvent]) -> Iterator[str]:
        for event in events:
            for piece in self._decoder.feed(event):
                if self._ttft_ms is None:
                    self._ttft_ms = (time.perf_counter() - self._started) * 1000
                yield piece

    def outcome(self) -> Outcome:
        if self._completion is None:
            raise RuntimeError("the stream has not been read to its end")
        return Outcome(self._completion, self._ttft_ms)


async def _read(response: aiohttp.ClientResponse) -> bytes:
    try:
        return await response.read()
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise _mapped(exc) from None


def _error(provider: Provider, status: int, headers: Headers, body: bytes) -> Exception:
    try:
        error = provider.parse_error(status, headers, body)
    except _SHAPE_ERRORS:
        # The status still says what happened when the error body has an unexpected shape.
        message = f"HTTP {status} with an error body of an unexpected shape"
        error = error_for_status(status)(message, status_code=status, retry_after=None)
    # The server's own verdict (OpenAI and Anthropic send it; their SDKs obey it) wins over
    # what the status alone suggests.
    verdict = headers.get("x-should-retry")
    if verdict in ("true", "false") and isinstance(error, APIError):
        error.retryable = verdict == "true"
    return error


def _malformed(what: str, exc: Exception) -> MalformedResponseError:
    # The type only: the exception's text may quote the body, and a body may echo the key.
    return MalformedResponseError(f"{what} has an unexpected shape ({type(exc).__name__})")


def _mapped(exc: BaseException) -> Exception:
    """aiohttp/asyncio failures as llmgather errors, without the URL (it may carry a key)."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return RequestTimeoutError("no connection within the connect timeout")
    if isinstance(exc, TimeoutError):  # aiohttp's read timeouts are TimeoutErrors too
        return RequestTimeoutError("no answer within the timeout")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return APIConnectionError("the connection closed in the middle of the response body")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return APIConnectionError("the server closed the connection without answering")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return APIConnectionError(
            f"cannot connect to {exc.host}:{exc.port} ({exc.strerror or 'refused'})"
        )
    if isinstance(exc, aiohttp.ClientResponseError):
        return APIConnectionError(f"invalid HTTP response (status {exc.status})")
    return APIConnectionError(f"connection error: {type(exc).__name__}")
