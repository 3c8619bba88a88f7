"""The default transport: HTTP/1.1 on asyncio's own connections, parsed by httptools (the C
parser uvicorn uses), with a keep-alive pool; and the boundary where socket, TLS and parse
failures become llmgather's errors (`APIConnectionError`, `RequestTimeoutError`).

Why not aiohttp's client, which this replaced as the default: for a JSON request and answer it
costs ~120 µs of CPU a call on this machine (sessions, tracing hooks, cookie jar, URL objects,
a response object and a timer context each), more than the whole of llmgather's own work per
item. This client does what llmgather needs and no more: one request per connection at a time,
bodies as bytes, gzip and deflate answers, TLS, timeouts, and a pool that drops connections the
server closed. No proxies (as aiohttp with `trust_env=False`), cookies or redirects: an LLM
API uses none. `AiohttpTransport` stays for whoever wants aiohttp's.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import zlib
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from llmgather._config import DEFAULT_CONCURRENCY, Timeouts
from llmgather._errors import APIConnectionError, ConfigurationError, RequestTimeoutError

if TYPE_CHECKING:
    from llmgather.transport import Headers, HttpRequest, HttpResponse

IDLE_LIMIT_S = 15.0  # a pooled connection idle longer is closed, not reused (aiohttp's default)
STREAM_BUFFER = 256 * 1024  # a stream's unread bytes past which the socket stops being read
_URL_CACHE_SIZE = 256


class _Origin(NamedTuple):
    scheme: str
    host: str
    port: int


class _Target(NamedTuple):
    """What a URL means for the wire: where to connect and the request line's target."""

    origin: _Origin
    path: str  # path and query, as sent on the request line
    host_header: str


class Http11Transport:
    """A keep-alive pool of HTTP/1.1 connections, at most `max_connections` open at once.

    Connections open on first use, inside the running event loop, and close with `aclose`. A
    plain request must be answered in full within `timeouts.read`; a stream must not fall
    silent for longer than that between two reads.
    """

    def __init__(
        self, *, max_connections: int = DEFAULT_CONCURRENCY, timeouts: Timeouts | None = None
    ) -> None:
        timeouts = timeouts or Timeouts()
        self._read_timeout = timeouts.read
        self._connect_timeout = timeouts.connect
        self._pool = _Pool(max_connections)
        self._targets: dict[str, _Target] = {}
        self._tls: ssl.SSLContext | None = None
        self.stale_retries = 0  # requests resent on a fresh connection after a dead pooled one

    async def send(self, request: HttpRequest) -> HttpResponse:
        """Send one request and read the whole answer."""
        from llmgather.transport import HttpResponse

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._read_timeout
        target = self._target(request.url)
        wire = _wire(request, target)
        connection = await self._connection(target.origin, deadline, fresh=False)
        try:
            answer = await connection.exchange(wire, deadline, streaming=False)
        except _Unanswered as unanswered:
            answer = await self._resend_fresh(target, wire, deadline, unanswered)
        return HttpResponse(answer.status, answer.headers, answer.body())

    @asynccontextmanager
    async def stream(self, request: HttpRequest) -> AsyncIterator[_Stream]:
        """An answer whose body is read chunk by chunk, each within the read timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._read_timeout  # for the status line and headers
        target = self._target(request.url)
        wire = _wire(request, target)
        connection = await self._connection(target.origin, deadline, fresh=False)
        try:
            answer = await connection.exchange(wire, deadline, streaming=True)
        except _Unanswered as unanswered:
            answer = await self._resend_fresh(target, wire, deadline, unanswered, streaming=True)
        try:
            yield _Stream(answer, self._read_timeout)
        finally:
            answer.connection.finish_stream()

    async def aclose(self) -> None:
        self._pool.close_all()

    async def _connection(self, origin: _Origin, deadline: float, *, fresh: bool) -> _Connection:
        """An idle connection to `origin` (unless `fresh`), else a new one."""
        connection = None if fresh else self._pool.take_idle(origin)
        if connection is not None:
            return connection  # the hot path: no await
        connection = await self._pool.idle_or_room(origin, deadline, fresh=fresh)
        if connection is not None:
            return connection
        try:
            return await self._connect(origin, deadline)
        except BaseException:
            self._pool.unreserve()
            raise

    async def _resend_fresh(
        self,
        target: _Target,
        wire: list[bytes],
        deadline: float,
        first: _Unanswered,
        *,
        streaming: bool = False,
    ) -> _Answer:
        """Resend at once, on a connection opened for it, a request whose connection closed
        before a byte of answer came back.

        Most often the pool handed out a connection the server had already closed, and nothing
        reached the server, so this costs the item no attempt. If the fresh connection fails
        too, the failure is the server's, and is reported as such.
        """
        self.stale_retries += 1
        connection = await self._connection(target.origin, deadline, fresh=True)
        try:
            return await connection.exchange(wire, deadline, streaming=streaming)
        except _Unanswered as again:
            raise APIConnectionError(
                f"{first}; resent at once on a fresh connection, which failed too ({again})"
            ) from None

    async def _connect(self, origin: _Origin, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = self._tls_context() if origin.scheme == "https" else None
        pool = self._pool
        # Happy eyeballs (try IPv4 when IPv6 hangs), as aiohttp does; uvloop's loop (uvicorn's,
        # under `llmgather serve`) does not take the argument.
        eyeballs: dict[str, Any] = {}
        if isinstance(loop, asyncio.BaseEventLoop):
            eyeballs["happy_eyeballs_delay"] = 0.25
        try:
            async with asyncio.timeout(min(self._connect_timeout, deadline - loop.time())):
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop, pool, origin),
                    origin.host,
                    origin.port,
                    ssl=tls,
                    server_hostname=origin.host if tls else None,
                    **eyeballs,
                )
        except TimeoutError:
            raise RequestTimeoutError("no connection within the connect timeout") from None
        except socket.gaierror as exc:
            raise APIConnectionError(
                f"cannot resolve {origin.host} ({exc.strerror or 'unknown host'})"
            ) from None
        except ssl.SSLError as exc:
            raise APIConnectionError(
                f"the TLS handshake with {origin.host}:{origin.port} failed ({exc.reason or exc})"
            ) from None
        except OSError as exc:
            raise APIConnectionError(
                f"cannot connect to {origin.host}:{origin.port} ({exc.strerror or 'refused'})"
            ) from None
        return connection

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()  # the system's CAs, SSL_CERT_FILE honoured
            self._tls.set_alpn_protocols(["http/1.1"])
        return self._tls

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            target = _parse_url(url)
            if len(self._targets) >= _URL_CACHE_SIZE:
                self._targets.clear()  # a client calls a handful of URLs; this only bounds it
            self._targets[url] = target
        return target


def _parse_url(url: str) -> _Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        # Never quote the URL: a Gemini key may ride in its query.
        raise ConfigurationError(
            f"cannot send to a {scheme or 'scheme-less'} URL: give the base URL as "
            "http://host[:port]/… or https://host[:port]/…"
        )
    default_port = 443 if scheme == "https" else 80
    port = parts.port or default_port
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets
    host_header = shown if port == default_port else f"{shown}:{port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(_Origin(scheme, host, port), path, host_header)


_OWN_HEADERS = ("host", "content-length", "accept-encoding", "user-agent")


def _wire(request: HttpRequest, target: _Target) -> list[bytes]:
    """The request's bytes: a head (request line and headers) and its body."""
    lines = [f"{request.method} {target.path} HTTP/1.1\r\n"]
    given = set()
    for name, value in request.headers.items():
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            # Name the header, never its value: it may be the API key (read from a file with
            # its trailing newline, most often).
            raise ConfigurationError(
                f"the request header {name.strip()!r} holds a line break: remove it (an API "
                "key read from a file keeps its trailing newline unless stripped)"
            )
        lines.append(f"{name}: {value}\r\n")
        given.add(name.lower())
    if "host" not in given:
        lines.append(f"host: {target.host_header}\r\n")
    if request.body or request.method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
        if "content-length" not in given:
            lines.append(f"content-length: {len(request.body)}\r\n")
    if "accept-encoding" not in given:
        lines.append("accept-encoding: gzip, deflate\r\n")
    if "user-agent" not in given:
        lines.append(_USER_AGENT)
    lines.append("\r\n")
    return [("".join(lines)).encode("utf-8"), request.body]


def _user_agent() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"user-agent: llmgather/{version('llmgather')}\r\n"
    except PackageNotFoundError:  # run from a source tree
        return "user-agent: llmgather\r\n"


_USER_AGENT = _user_agent()


class _Unanswered(Exception):
    """The connection closed before a byte of the answer came: the request may be resent."""


class _Pool:
    """Idle connections by origin, and a count of those open, bounded by `limit`."""

    def __init__(self, limit: int) -> None:
        self._limit = max(1, limit)
        self._idle: dict[_Origin, deque[_Connection]] = {}
        self._open = 0
        self._live: set[_Connection] = set()  # every open connection, idle or busy
        self._waiters: deque[asyncio.Future[None]] = deque()

    def take_idle(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()  # the most recently used: the least likely to be closed
            if connection.reusable():
                return connection
            connection.close()
        return None

    async def idle_or_room(
        self, origin: _Origin, deadline: float, *, fresh: bool
    ) -> _Connection | None:
        """An idle connection to `origin` as soon as one is given back, or room for a new one
        (counted open from now: None), whichever comes first; waits at most until `deadline`."""
        loop = asyncio.get_running_loop()
        while True:
            connection = None if fresh else self.take_idle(origin)
            if connection is not None:
                return connection
            if self._open < self._limit:
                self._open += 1
                return None
            if self._evict_idle():  # idle to another origin (or, when `fresh`, to this one)
                continue
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                raise RequestTimeoutError(
                    f"no free connection within the timeout ({self._limit} all busy)"
                ) from None
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def unreserve(self) -> None:
        self._open -= 1
        self._wake_one()

    def give_back(self, connection: _Connection) -> None:
        self._idle.setdefault(connection.origin, deque()).append(connection)
        self._wake_one()

    def opened(self, connection: _Connection) -> None:
        self._live.add(connection)

    def dropped(self, connection: _Connection) -> None:
        """A connection closed (by either side): one fewer open."""
        self._live.discard(connection)
        self._open -= 1
        self._wake_one()

    def close_all(self) -> None:
        self._idle.clear()
        for connection in list(self._live):
            connection.close()

    def _evict_idle(self) -> bool:
        """Close an idle connection (to any origin) to make room for a new one."""
        for idle in self._idle.values():
            if idle:
                idle.popleft().close()
                return True
        return False

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class _Answer:
    """One answer as it arrives: status, headers, and its body (whole, or as a stream)."""

    __slots__ = ("chunks", "complete", "connection", "decoder", "headers", "size", "status")

    def __init__(self, connection: _Connection) -> None:
        self.connection = connection
        self.status = 0
        self.headers: Headers = _NO_HEADERS
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.complete = False
        self.decoder: _Decoder | None = None

    def body(self) -> bytes:
        chunks = self.chunks
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)


_NO_HEADERS: Headers = CIMultiDictProxy(CIMultiDict())


class _Connection(asyncio.Protocol):
    """One connection carrying one exchange at a time; httptools calls its `on_*` methods.

    The exchange's waiter is resolved when the answer's head has come (a stream) or its whole
    body (a plain request), or failed with the reason the exchange cannot go on.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: _Pool, origin: _Origin) -> None:
        self.origin = origin
        self._loop = loop
        self._pool = pool
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._closed = False
        self._idle_since = 0.0
        self._answer: _Answer | None = None
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

    # -- the exchange, as the transport drives it --

    async def exchange(self, wire: list[bytes], deadline: float, *, streaming: bool) -> _Answer:
        """Write the request and wait for its answer (its head only, when `streaming`)."""
        answer = _Answer(self)
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
            if answer.complete:
                return None
            if self._error is not None:
                raise self._error
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
            self._idle_since = self._loop.time()
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
        self._shut(abort=False, lost=True)
        answer = self._answer
        if answer is None or answer.complete:
            return
        if not self._got_bytes:
            self._fail(_Unanswered("the server closed the connection without answering"))
        elif answer.status and not self._framed:
            self._end_of_body()  # an answer without a length ends where the connection does
        else:
            self._fail(
                APIConnectionError("the connection closed in the middle of the response body")
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
            answer.decoder = _Decoder.for_encoding(encoding)
        if self._streaming:
            self._cancel_timer()  # the head came in time; silence is timed from here
            self._wake()

    def on_body(self, body: bytes) -> None:
        answer = self._answer
        assert answer is not None
        if answer.decoder is not None:
            try:
                body = answer.decoder.decode(body)
            except _DecodeError:
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
        if answer.decoder is not None:
            try:
                rest = answer.decoder.flush()
            except _DecodeError:
                self._fail(APIConnectionError("the server's compressed answer is corrupt"))
                return
            if rest:
                answer.chunks.append(rest)
                answer.size += len(rest)
        answer.complete = True
        self._wake()


class _DecodeError(Exception):
    pass


class _Decoder:
    """A gzip or deflate body decoded as it arrives."""

    __slots__ = ("_inflate", "_raw_fallback")

    def __init__(self, wbits: int, raw_fallback: bool) -> None:
        self._inflate = zlib.decompressobj(wbits)
        self._raw_fallback = raw_fallback

    @classmethod
    def for_encoding(cls, encoding: str) -> _Decoder | None:
        encoding = encoding.strip().lower()
        if encoding in ("gzip", "x-gzip"):
            return cls(16 + zlib.MAX_WBITS, raw_fallback=False)
        if encoding == "deflate":
            # "deflate" should be zlib-wrapped; some servers send it raw.
            return cls(zlib.MAX_WBITS, raw_fallback=True)
        return None  # identity, or an encoding not asked for: handed over as it came

    def decode(self, data: bytes) -> bytes:
        try:
            return self._inflate.decompress(data)
        except zlib.error:
            if not self._raw_fallback:
                raise _DecodeError from None
            self._raw_fallback = False
            self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            return self.decode(data)

    def flush(self) -> bytes:
        try:
            return self._inflate.flush()
        except zlib.error:
            raise _DecodeError from None


class _Stream:
    """A streamed answer, read piece by piece from its connection."""

    def __init__(self, answer: _Answer, read_timeout: float) -> None:
        self._connection = answer.connection
        self.status: int = answer.status
        self.headers: Headers = answer.headers
        self._connection.watch_silence(read_timeout)

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        while (chunk := await self._connection.next_chunk()) is not None:
            yield chunk

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_bytes()])
