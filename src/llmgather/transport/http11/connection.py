"""One HTTP/1.1 connection: it writes a request, feeds what comes back to httptools' parser
and hands the answer over whole, or as a stream read piece by piece."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from llmgather._errors import APIConnectionError, RequestTimeoutError
from llmgather.transport.http11.decoding import DecodeError, Decoder

if TYPE_CHECKING:
    from llmgather.transport.base import Headers
    from llmgather.transport.http11.pool import Pool
    from llmgather.transport.http11.wire import Origin

IDLE_LIMIT_S = 15.0  # a pooled connection idle longer is closed, not reused (aiohttp's default)
STREAM_BUFFER = 256 * 1024  # a stream's unread bytes past which the socket stops being read


class Unanswered(Exception):
    """The connection closed before a byte of the answer came: the request may be resent."""


class Answer:
    """One answer as it arrives: status, headers, and its body (whole, or as a stream)."""

    __slots__ = ("chunks", "complete", "connection", "decoder", "headers", "size", "status")

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.status = 0
        self.headers: Headers = _NO_HEADERS
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.complete = False
        self.decoder: Decoder | None = None

    def body(self) -> bytes:
        chunks = self.chunks
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)


_NO_HEADERS: Headers = CIMultiDictProxy(CIMultiDict())


class Connection(asyncio.Protocol):
    """One connection carrying one exchange at a time; httptools calls its `on_*` methods.

    The exchange's waiter is resolved when the answer's head has come (a stream) or its whole
    body (a plain request), or failed with the reason the exchange cannot go on.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: Pool, origin: Origin) -> None:
        self.origin = origin
        self._loop = loop
        self._pool = pool
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._closed = False
        self.gone: asyncio.Future[None] = loop.create_future()  # set once asyncio reports it lost
        self._idle_since = 0.0
        self._answer: Answer | None = None
        self._streaming = False
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None  # what ended the exchange early
        self._timer: asyncio.TimerHandle | None = None
        self._raw_headers: list[tuple[str, str]] = []
        self._got_bytes = False
        self._framed = True  # the answer says where its body ends (length or chunks)
        self._keep_alive = True
        self._paused = False
        self._stream_read_timeout = 0.0
        self._last_read = 0.0
        self.made = False  # connection_made has run
        self.reused = False  # it carried an answer before: a pooled connection

    # -- the exchange, as the transport drives it --

    async def exchange(self, wire: list[bytes], deadline: float, *, streaming: bool) -> Answer:
        """Write the request and wait for its answer (its head only, when `streaming`)."""
        answer = Answer(self)
        self._answer = answer
        self._streaming = streaming
        self._raw_headers = []
        self._got_bytes = False
        self._framed = True
        self._error = None
        self._waiter = waiter = self._loop.create_future()
        self._timer = self._loop.call_at(deadline, self._time_out)
        assert self._transport is not None
        self._transport.writelines(wire)
        try:
            await waiter
        except BaseException:
            self._abandon()  # cancelled, timed out or failed: this connection cannot be reused
            raise
        if not streaming:
            self._done_with_exchange()
        return answer

    def finish_stream(self) -> None:
        """The stream's reader is done with it: keep the connection if it was read to its end."""
        if self._answer is not None and self._answer.complete:
            self._done_with_exchange()
        else:
            self._abandon()  # left mid-body: the rest would arrive as the next answer's start

    async def next_chunk(self) -> bytes | None:
        """The stream's next piece of body; None once it is whole."""
        answer = self._answer
        assert answer is not None
        while not answer.chunks:
            if self._error is not None:  # before `complete`: a corrupt end must not pass as one
                raise self._error
            if answer.complete:
                return None
            self._waiter = self._loop.create_future()
            await self._waiter  # raises what ended the stream
        chunk = answer.chunks.popleft()
        answer.size -= len(chunk)
        if self._paused and answer.size < STREAM_BUFFER // 2 and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return chunk

    def watch_silence(self, read_timeout: float) -> None:
        """From now on, time the stream out when it stays silent for `read_timeout`."""
        self._stream_read_timeout = read_timeout
        self._last_read = self._loop.time()
        self._timer = self._loop.call_at(self._last_read + read_timeout, self._check_silence)

    def reusable(self) -> bool:
        return (
            not self._closed
            and self._answer is None
            and self._loop.time() - self._idle_since < IDLE_LIMIT_S
        )

    def close(self) -> None:
        self._shut(abort=False)

    def abort(self) -> None:
        self._shut(abort=True)

    def drop(self) -> None:
        """Abort the socket of a connection already closed whose close has not ended (a TLS
        shutdown waiting on its peer): nothing more is said to the server."""
        if self._transport is not None and not self.gone.done():
            self._transport.abort()

    def _shut(self, *, abort: bool, lost: bool = False) -> None:
        """Close now (`abort`: dropping what is unsent) and count the connection out of the
        pool at once, not when asyncio reports it lost: the room is free from here."""
        if self._closed:
            return
        self._closed = True
        self._pool.dropped(self)
        if self._transport is not None and not lost:
            if abort:
                self._transport.abort()
            else:
                self._transport.close()

    def _done_with_exchange(self) -> None:
        self._cancel_timer()
        self._answer = None
        self._waiter = None
        if self._keep_alive and not self._closed:
            if self._paused and self._transport is not None:
                self._paused = False  # a stream ended while its reader was behind
                self._transport.resume_reading()
            self._idle_since = self._loop.time()
            self.reused = True
            self._pool.give_back(self)
        else:
            self.close()

    def _abandon(self) -> None:
        self._cancel_timer()
        self._answer = None
        self._waiter = None
        self._shut(abort=True)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error  # a stream's reader not waiting now meets it at its next read
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self._shut(abort=True)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _time_out(self) -> None:
        self._timer = None
        self._fail(RequestTimeoutError("no answer within the timeout"))

    def _check_silence(self) -> None:
        waiting = self._waiter is not None and not self._waiter.done()
        silent_until = self._last_read + self._stream_read_timeout
        if waiting and not self._paused and self._loop.time() >= silent_until:
            self._timer = None
            self._fail(RequestTimeoutError("the stream fell silent for longer than the timeout"))
            return
        # Data came since, or the reader is behind (not the server's fault): look again later.
        later = max(silent_until, self._loop.time() + 0.05)
        self._timer = self._loop.call_at(later, self._check_silence)

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.made = True
        self._pool.opened(self)

    def data_received(self, data: bytes) -> None:
        if self._answer is None:
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        self._got_bytes = True
        if self._streaming:
            self._last_read = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(APIConnectionError("the server switched protocols (an HTTP upgrade)"))
        except httptools.HttpParserError:
            self._fail(APIConnectionError("the server's answer is not valid HTTP/1.1"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.gone.done():
            self.gone.set_result(None)
        self._shut(abort=False, lost=True)
        answer = self._answer
        if answer is None or answer.complete:
            return
        if not self._got_bytes:
            self._fail(Unanswered("the server closed the connection without answering"))
        elif answer.status and not self._framed and exc is None:
            self._end_of_body()  # an answer without a length ends where the connection does
        elif answer.status:
            self._fail(
                APIConnectionError("the connection closed in the middle of the response body")
            )
        else:
            self._fail(
                APIConnectionError("the connection closed in the middle of the response head")
            )

    # -- httptools' callbacks --

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # 100 Continue, 103 Early Hints: the real answer follows
            self._raw_headers = []
            return
        answer = self._answer
        assert answer is not None
        answer.status = status
        answer.headers = headers = CIMultiDictProxy(CIMultiDict(self._raw_headers))
        self._keep_alive = self._parser.should_keep_alive()
        self._framed = (
            "content-length" in headers or "chunked" in headers.get("transfer-encoding", "").lower()
        )
        encoding = headers.get("content-encoding")
        if encoding:
            answer.decoder = Decoder.for_encoding(encoding)
        if self._streaming:
            self._cancel_timer()  # the head came in time; silence is timed from here
            self._wake()

    def on_body(self, body: bytes) -> None:
        answer = self._answer
        assert answer is not None
        if self._error is not None:
            return  # the exchange has failed: what follows in the same read is not its body
        if answer.decoder is not None:
            try:
                body = answer.decoder.decode(body)
            except DecodeError:
                self._fail(APIConnectionError("the server's compressed answer is corrupt"))
                return
            if not body:
                return
        answer.chunks.append(body)
        if self._streaming:
            answer.size += len(body)
            if answer.size >= STREAM_BUFFER and not self._paused and self._transport is not None:
                self._paused = True  # the reader is behind: let TCP push back on the server
                self._transport.pause_reading()
            self._wake()

    def on_message_complete(self) -> None:
        answer = self._answer
        if answer is None or answer.status == 0:
            return  # the end of a 1xx answer
        self._end_of_body()

    def _end_of_body(self) -> None:
        answer = self._answer
        assert answer is not None
        if self._error is not None:
            return
        if answer.decoder is not None:
            try:
                rest = answer.decoder.flush()
            except DecodeError:
                self._fail(APIConnectionError("the server's compressed answer is corrupt"))
                return
            if rest:
                answer.chunks.append(rest)
                answer.size += len(rest)
        answer.complete = True
        self._wake()


class Stream:
    """A streamed answer, read piece by piece from its connection."""

    def __init__(self, answer: Answer, read_timeout: float) -> None:
        self._connection = answer.connection
        self.status: int = answer.status
        self.headers: Headers = answer.headers
        self._connection.watch_silence(read_timeout)

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        while (chunk := await self._connection.next_chunk()) is not None:
            yield chunk

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_bytes()])
