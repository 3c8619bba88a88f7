"""One exchange with a provider, above the transport: the adapter builds the request, the
transport carries it, the adapter parses the answer, and the server's retry verdict is applied.

This is the one place where a response becomes a `Completion` or an `APIError`, with the limits
its headers announced attached to either, for the engine to hand to the limiter.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

from llmgather._errors import APIError, MalformedResponseError, error_for_status
from llmgather._types import Completion, Outcome
from llmgather.providers.base import Provider
from llmgather.transport import Headers, HttpRequest, StreamingResponse, Transport
from llmgather.transport.sse import SSEDecoder, SSEEvent

# What an adapter's parsing raises on an answer of a shape it did not expect (a list where an
# object belongs, a string for a count): a garbled answer is a transient fault, retried like a
# cut connection, never a reason to fail the item for good.
_SHAPE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError)


async def complete(transport: Transport, provider: Provider, http: HttpRequest) -> Outcome:
    """Send one request and parse the whole answer."""
    response = await transport.send(http)
    if response.status >= 300:
        raise error_from_answer(provider, response.status, response.headers, response.body)
    try:
        completion = provider.parse_response(response.status, response.headers, response.body)
    except _SHAPE_ERRORS as exc:
        raise malformed("the answer", exc) from None
    return Outcome(_with_announced(completion, provider, response.headers))


async def relay(transport: Transport, provider: Provider, http: HttpRequest) -> Outcome:
    """Send one request whose answer a gateway relays unchanged: the response rides on the
    Outcome's `value`, and is parsed only for its usage and announced limits. A 2xx body the
    adapter cannot read (a tool call, say) is relayed all the same: it is the client's to read."""
    response = await transport.send(http)
    if response.status >= 300:
        raise error_from_answer(provider, response.status, response.headers, response.body)
    try:
        completion = provider.parse_response(response.status, response.headers, response.body)
    except (MalformedResponseError, *_SHAPE_ERRORS):
        completion = Completion(text="")
    return Outcome(_with_announced(completion, provider, response.headers), value=response)


async def stream_to_end(transport: Transport, provider: Provider, http: HttpRequest) -> Outcome:
    """Send one streaming request and read it to its end (which records time to first token)."""
    async with open_stream(transport, provider, http) as live:
        async for _ in live:
            pass
    return live.outcome()


@asynccontextmanager
async def open_stream(
    transport: Transport, provider: Provider, http: HttpRequest, *, relay: bool = False
) -> AsyncIterator[LiveStream]:
    """A streaming answer to iterate piece by piece (with `relay`, raw chunk by raw chunk, as
    a `RelayedStream`); `outcome()` once it is exhausted."""
    async with transport.stream(http) as response:
        if response.status >= 300:
            body = await response.read()
            raise error_from_answer(provider, response.status, response.headers, body)
        yield (RelayedStream if relay else LiveStream)(response, provider)


class LiveStream:
    """The text pieces of one streaming answer, decoded as the bytes arrive."""

    def __init__(self, response: StreamingResponse, provider: Provider) -> None:
        self._response = response
        self._provider = provider
        self._decoder = provider.stream_decoder()
        self._started = time.perf_counter()
        self._ttft_ms: float | None = None
        self._completion: Completion | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        async for _, pieces in self._decoded():
            for piece in pieces:
                yield piece

    async def _decoded(self) -> AsyncIterator[tuple[bytes, list[str]]]:
        """Each chunk as it arrives, with the text pieces it completed."""
        sse = SSEDecoder()
        try:
            async for chunk in self._response.iter_bytes():
                yield chunk, list(self._pieces(sse.feed(chunk)))
            yield b"", list(self._pieces(sse.flush()))
            completion = self._decoder.finish()
        except _SHAPE_ERRORS as exc:
            raise malformed("a stream event", exc) from None
        self._completion = _with_announced(completion, self._provider, self._response.headers)

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


class RelayedStream(LiveStream):
    """The raw chunks of one streaming answer, for a gateway to relay unchanged; each is
    decoded on the way too, so errors, usage and announced limits are read as for text."""

    async def __aiter__(self) -> AsyncIterator[bytes]:  # type: ignore[override]
        async for chunk, _ in self._decoded():
            if chunk:
                yield chunk


def error_from_answer(provider: Provider, status: int, headers: Headers, body: bytes) -> Exception:
    """The llmgather error for a non-2xx answer, with the server's own retry verdict applied."""
    try:
        error = provider.parse_error(status, headers, body)
    except _SHAPE_ERRORS:
        # The status still says what happened when the error body has an unexpected shape.
        message = f"HTTP {status} with an error body of an unexpected shape"
        error = error_for_status(status)(message, status_code=status, retry_after=None)
    if isinstance(error, APIError):
        # The server's own verdict (OpenAI and Anthropic send it; their SDKs obey it) wins
        # over what the status alone suggests.
        verdict = headers.get("x-should-retry")
        if verdict in ("true", "false"):
            error.retryable = verdict == "true"
        error.announced = provider.announced_limits(headers) or None
    return error


def malformed(what: str, exc: Exception) -> MalformedResponseError:
    # The type only: the exception's text may quote the body, and a body may echo the key.
    return MalformedResponseError(f"{what} has an unexpected shape ({type(exc).__name__})")


def _with_announced(completion: Completion, provider: Provider, headers: Headers) -> Completion:
    announced = provider.announced_limits(headers)
    if not announced:
        return completion
    return dataclasses.replace(completion, announced=announced)
