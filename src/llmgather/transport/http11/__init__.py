"""The default transport: HTTP/1.1 on asyncio's own connections, parsed by httptools (the C
parser uvicorn uses), with a keep-alive pool; and the boundary where socket, TLS and parse
failures become llmgather's errors (`APIConnectionError`, `RequestTimeoutError`).

Why not aiohttp's client: profiled in `llmgather serve`, it took about a third of the CPU per
relayed request (a session's request and response objects, tracing hooks, cookie jar, URL
objects, a timer context each), more than llmgather's own work; with this client the library's
whole path spends about half the CPU per request of a bare aiohttp loop (BENCHMARKS.md:
gateway, overhead). It does what llmgather needs and no more: one request per
connection at a time, bodies as bytes, gzip and deflate answers, TLS, timeouts, a pool that
drops connections the server closed, and HTTP proxies (`proxies=`: CONNECT tunnels for https://,
the whole URL to the proxy for http://). No cookies or redirects: an LLM API uses neither.
`AiohttpTransport` stays for whoever wants aiohttp's.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from llmgather._config import DEFAULT_CONCURRENCY, Timeouts
from llmgather._errors import APIConnectionError, ConnectError, RequestTimeoutError
from llmgather.transport.base import HttpResponse
from llmgather.transport.http11.connection import Answer, Connection, Stream, Unanswered
from llmgather.transport.http11.pool import Pool
from llmgather.transport.http11.tunnel import open_tunnel
from llmgather.transport.http11.wire import Origin, Target, parse_url, request_bytes
from llmgather.transport.proxies import refused

if TYPE_CHECKING:
    from llmgather.transport.base import HttpRequest
    from llmgather.transport.proxies import Proxies

_URL_CACHE_SIZE = 256
CLOSE_WAIT_S = 0.5  # how long aclose waits for a closing connection before aborting it


class Http11Transport:
    """A keep-alive pool of HTTP/1.1 connections, at most `max_connections` open at once.

    Connections open on first use, inside the running event loop, and close with `aclose`. A
    plain request must be answered in full within `timeouts.read`; a stream must not fall
    silent for longer than that between two reads. `proxies` (`Proxies.from_env(os.environ)`,
    as `Client` builds it) names the proxy each URL goes through; None connects directly.
    """

    def __init__(
        self,
        *,
        max_connections: int = DEFAULT_CONCURRENCY,
        timeouts: Timeouts | None = None,
        proxies: Proxies | None = None,
    ) -> None:
        timeouts = timeouts or Timeouts()
        self._proxies = proxies
        self._read_timeout = timeouts.read
        self._connect_timeout = timeouts.connect
        self._pool = Pool(max_connections)
        self._targets: dict[str, Target] = {}
        self._tls: ssl.SSLContext | None = None
        self.stale_retries = 0  # requests resent on a fresh connection after a dead pooled one
        self._closed = False

    async def send(self, request: HttpRequest) -> HttpResponse:
        """Send one request and read the whole answer."""
        answer = await self._answer(request, streaming=False)
        return HttpResponse(answer.status, answer.headers, answer.body())

    @asynccontextmanager
    async def stream(self, request: HttpRequest) -> AsyncIterator[Stream]:
        """An answer whose body is read chunk by chunk, each within the read timeout."""
        answer = await self._answer(request, streaming=True)
        try:
            yield Stream(answer, self._read_timeout)
        finally:
            answer.connection.finish_stream()

    async def _answer(self, request: HttpRequest, *, streaming: bool) -> Answer:
        """The answer, whole or (`streaming`) once its head has come: within the read timeout."""
        deadline = asyncio.get_running_loop().time() + self._read_timeout
        target = self._target(request.url)
        wire = request_bytes(request, target)
        connection = await self._connection(target.origin, deadline, fresh=False)
        try:
            answer = await connection.exchange(wire, deadline, streaming=streaming)
        except Unanswered as unanswered:
            if not connection.reused or self._closed:
                # A new connection closed unanswered: the server may have read the request,
                # so it is not sent again here (the engine's retry, if any, counts an attempt).
                raise APIConnectionError(str(unanswered)) from None
            answer = await self._resend_fresh(target, wire, deadline, unanswered, streaming)
        if (
            answer.status == 407
            and target.origin.via is not None
            and target.origin.scheme == "http"
        ):
            # A 407 to a forwarded http:// request is the proxy's (through an https:// tunnel,
            # the proxy's 407 came at CONNECT; one inside it is the origin's own).
            if streaming:
                answer.connection.finish_stream()
            raise refused(target.origin.via, 407, target.host_header)
        return answer

    async def aclose(self) -> None:
        """Close every connection, busy ones included, and return once each is closed; the
        transport opens none after.

        A TLS connection's close is an exchange with its peer (through a proxy's tunnel, a
        slow one): a connection still closing at `CLOSE_WAIT_S` is aborted, so no socket
        outlives the transport (a loop closed over one reports it, uvloop's refuses to close).
        """
        self._closed = True
        closing = [c for c in self._pool.close_all() if c.made]
        pending = {c.gone for c in closing if not c.gone.done()}
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=CLOSE_WAIT_S)
        if late:
            for connection in closing:
                connection.drop()
            await asyncio.wait(late, timeout=CLOSE_WAIT_S)

    async def _connection(self, origin: Origin, deadline: float, *, fresh: bool) -> Connection:
        """An idle connection to `origin` (unless `fresh`), else a new one."""
        if self._closed:
            raise ConnectError("the transport is closed (its client has ended)")
        connection = None if fresh else self._pool.take_idle(origin)
        if connection is not None:
            return connection  # the hot path: no await
        connection = await self._pool.idle_or_room(origin, deadline, fresh=fresh)
        if connection is not None:
            return connection
        return await self._connect(origin, deadline)  # gives the room back if it fails

    async def _resend_fresh(
        self,
        target: Target,
        wire: list[bytes],
        deadline: float,
        first: Unanswered,
        streaming: bool,
    ) -> Answer:
        """Resend at once, on a connection opened for it, a request whose pooled connection
        closed before a byte of answer came back.

        Most often the server closed the connection while it was idle (its close crossed the
        request on the wire), so nothing reached it, and this costs the item no attempt. But a
        server that read the request and then closed looks the same from here, so every resend
        is counted (`stale_retries`, the engine's `resent`): it may have been a second request.
        If the fresh connection fails too, the failure is the server's, and is reported as such.
        """
        connection = await self._connection(target.origin, deadline, fresh=True)
        self.stale_retries += 1
        try:
            return await connection.exchange(wire, deadline, streaming=streaming)
        except Unanswered as again:
            raise APIConnectionError(
                f"{first}; resent at once on a fresh connection, which failed too ({again})"
            ) from None

    async def _connect(self, origin: Origin, deadline: float) -> Connection:
        """A new connection, in the room the pool reserved for it; the room is given back,
        once, however the connect fails (cancelled included).

        No happy eyeballs: asyncio's (3.11) leaves a socket open when cancelled mid-race, and
        uvloop's loop does not take the argument."""
        loop = asyncio.get_running_loop()
        via = origin.via
        over_tls = origin.scheme == "https" or (via is not None and via.scheme == "https")
        tls = self._tls_context() if over_tls else None
        pool = self._pool
        made: list[Connection] = []

        def protocol() -> Connection:
            made.append(Connection(loop, pool, origin))
            return made[0]

        try:
            async with asyncio.timeout(min(self._connect_timeout, deadline - loop.time())):
                if via is not None and origin.scheme == "https":
                    assert tls is not None
                    tunnel = await open_tunnel(loop, origin, via, tls)
                    tunnel.set_protocol(protocol())
                    made[0].connection_made(tunnel)
                elif via is not None:  # http:// through a proxy: each request names its URL
                    await loop.create_connection(
                        protocol,
                        via.host,
                        via.port,
                        ssl=tls,
                        server_hostname=via.host if tls else None,
                    )
                else:
                    await loop.create_connection(
                        protocol,
                        origin.host,
                        origin.port,
                        ssl=tls,
                        server_hostname=origin.host if tls else None,
                    )
        except BaseException as exc:
            # Cancelled once the connection was made (asyncio calls connection_made before
            # create_connection returns): closing it counts it out; else the room goes back.
            if made and made[0].made:
                made[0].abort()
            else:
                pool.unreserve()
            raise _connect_error(exc, origin, self._proxies) from None
        return made[0]

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()  # the system's CAs, SSL_CERT_FILE honoured
            self._tls.set_alpn_protocols(["http/1.1"])
        return self._tls

    def _target(self, url: str) -> Target:
        target = self._targets.get(url)
        if target is None:
            target = parse_url(url, self._proxies)
            if len(self._targets) >= _URL_CACHE_SIZE:
                self._targets.clear()  # a client calls a handful of URLs; this only bounds it
            self._targets[url] = target
        return target


def _connect_error(exc: BaseException, origin: Origin, proxies: Proxies | None) -> BaseException:
    """A failed connect as llmgather's error, naming the host and port (and the proxy, never
    its credentials), never the URL: a `ConnectError`, since nothing was sent (a connect
    timeout spends an attempt as a timeout). A name that does not resolve is told with any
    proxy variable that is set but was not used for it."""
    where = f"{origin.host}:{origin.port}"
    via = origin.via
    through = f" through {via}" if via is not None else ""
    if isinstance(exc, TimeoutError):
        return RequestTimeoutError(f"no connection to {where}{through} within the connect timeout")
    if via is not None and origin.scheme == "http" and isinstance(exc, ssl.SSLError):
        where, through = str(via), ""  # the one TLS handshake is with an https:// proxy
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or exc.reason or "certificate verify failed"
        return ConnectError(f"the TLS handshake with {where}{through} failed ({why})")
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or exc
        return ConnectError(f"the TLS handshake with {where}{through} failed ({reason})")
    if via is not None and isinstance(exc, (OSError, UnicodeError)):  # reaching the proxy
        if isinstance(exc, socket.gaierror):
            return ConnectError(f"cannot resolve the host of {via} ({exc.strerror or 'unknown'})")
        return ConnectError(
            f"cannot connect to {via} ({getattr(exc, 'strerror', None) or 'refused'})"
        )
    if isinstance(exc, socket.gaierror):
        hint = "" if proxies is None else proxies.unused_hint(*origin[:3])
        why = exc.strerror or "unknown host"
        return ConnectError(f"cannot resolve {origin.host} ({why}){hint}")
    if isinstance(exc, OSError):
        return ConnectError(f"cannot connect to {where} ({exc.strerror or 'refused'})")
    if isinstance(exc, UnicodeError):  # a host name IDNA cannot encode
        return ConnectError(f"cannot resolve {origin.host} (not a valid host name)")
    return exc  # a cancellation and the like, as they are
