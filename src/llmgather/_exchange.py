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
from typing import Protocol

import orjson

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
    Outcome's `value`, and is parsed only for its usage and announced limits. A 2xx JSON object
    the adapter does not model (a tool call, a field added later) is relayed all the same: it
    is the client's to read. A 2xx body that is no JSON object at all (cut short, garbled)
    would only break the client's SDK: it is a MalformedResponseError, retried as anywhere."""
    response = await transport.send(http)
    if response.status >= 300:
        raise error_from_answer(provider, response.status, response.headers, response.body)
    try:
        completion = provider.parse_response(response.status, response.headers, response.body)
    except (MalformedResponseError, *_SHAPE_ERRORS) as exc:
        if not _json_object(response.body):
            raise MalformedResponseError(
                f"the answer is not a JSON object ({type(exc).__name__})"
            ) from None
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
    transport: Transport,
    provider: Provider,
    http: HttpRequest,
    *,
    relay: StreamEdges | None = None,
) -> AsyncIterator[LiveStream]:
    """A streaming answer to iterate piece by piece (given the `relay`'s edges, raw chunk by
    raw chunk, as a `RelayedStream`); `outcome()` once it is exhausted."""
    async with transport.stream(http) as response:
        if response.status >= 300:
            body = await response.read()
            raise error_from_answer(provider, response.status, response.headers, body)
        if relay is None:
            yield LiveStream(response, provider)
        else:
            yield RelayedStream(response, provider, relay)


class StreamEdges(Protocol):
    """Where the answer in a relayed stream starts and where its dialect says it is whole."""

    def opening(self, event: SSEEvent) -> bool:
        """Whether the event carries nothing of the answer yet (a role chunk, a ping)."""
        ...

    def terminal(self, event: SSEEvent) -> bool:
        """Whether the event tells the client the answer is whole (`data: [DONE]`)."""
        ...


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
        async for _, _, pieces in self._decoded():
            for piece in pieces:
                yield piece

    async def _decoded(self) -> AsyncIterator[tuple[bytes, list[SSEEvent], list[str]]]:
        """Each chunk as it arrives, with the events and the text pieces it completed; at the
        end, the completion is checked whole (TruncatedStreamError if it is not)."""
        sse = SSEDecoder()
        try:
            async for chunk in self._response.iter_bytes():
                events = sse.feed(chunk)
                yield chunk, events, list(self._pieces(events))
            events = sse.flush()
            yield b"", events, list(self._pieces(events))
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
    decoded on the way too, so errors, usage and announced limits are read as for text.

    Only whole events go out, so an error said after them is read as an event of its own.
    Two stretches are held back. The events before the answer starts (a role chunk, a ping)
    wait for the first that carries some of it: until then a failure is retried unseen. The
    dialect's terminal event waits for the stream's end and its check: a stream that ends
    incomplete (`[DONE]` and no finish_reason) must fail where the client's SDK still reads,
    never after the event that tells it the answer is whole."""

    def __init__(self, response: StreamingResponse, provider: Provider, edges: StreamEdges) -> None:
        super().__init__(response, provider)
        self._edges = edges

    async def __aiter__(self) -> AsyncIterator[bytes]:  # type: ignore[override]
        edges = self._edges
        waiting = b""  # not sent yet: held back, or the start of an event not yet whole
        started = ending = False
        async for chunk, events, _ in self._decoded():
            if not started:
                started = not all(map(edges.opening, events))
            ending = ending or any(map(edges.terminal, events))
            waiting = waiting + chunk if waiting else chunk
            if started and not ending and (end := _whole_events(waiting)):
                yield waiting[:end]
                waiting = waiting[end:]
        if waiting:  # the stream ended whole: what waited for that goes out
            yield waiting


def _whole_events(data: bytes) -> int:
    """How many bytes at the start of `data` are whole server-sent events (each ends in a
    blank line)."""
    if data.endswith(b"\n\n"):
        return len(data)
    end = 0
    for blank in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        at = data.rfind(blank)
        if at >= 0:
            end = max(end, at + len(blank))
    return end


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
        # Beside what the headers announce, what the body did (Gemini's QuotaFailure values).
        announced = {**(error.announced or {}), **provider.announced_limits(headers)}
        error.announced = announced or None
    return error


def malformed(what: str, exc: Exception) -> MalformedResponseError:
    # The type only: the exception's text may quote the body, and a body may echo the key.
    return MalformedResponseError(f"{what} has an unexpected shape ({type(exc).__name__})")


def _json_object(body: bytes) -> bool:
    try:
        return isinstance(orjson.loads(body), dict)
    except orjson.JSONDecodeError:
        return False


def _with_announced(completion: Completion, provider: Provider, headers: Headers) -> Completion:
    announced = provider.announced_limits(headers)
    if not announced:
        return completion
    return dataclasses.replace(completion, announced=announced)
