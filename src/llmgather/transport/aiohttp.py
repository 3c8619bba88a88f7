"""The aiohttp transport (`Http11Transport` is the default): one pooled aiohttp session, and
the boundary where aiohttp's and asyncio's exceptions become llmgather's (`APIConnectionError`,
`RequestTimeoutError`).

A raw aiohttp call costs a fifth of the CPU of an official SDK's, and httpx degrades past a few
hundred concurrent requests: hence aiohttp, and one session for all. aiohttp reads no proxy
variable itself (`trust_env=False`): the proxy for each URL comes from `proxies=`, resolved at
the edge as for the default transport, so both go through the same proxies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit

import aiohttp

from llmgather._config import DEFAULT_CONCURRENCY, Timeouts
from llmgather._errors import APIConnectionError, ConnectError, RequestTimeoutError
from llmgather.transport.base import HttpResponse
from llmgather.transport.proxies import Proxies, Proxy, refused

if TYPE_CHECKING:
    from llmgather.transport.base import Headers, HttpRequest

# A server that closes a kept-alive connection after each answer (llama.cpp's llama-server does
# after every stream) leaves a dead connection in the pool; the next request written to it
# fails before the server could have read it. These are the failures of that write.
_STALE_CONNECTION_ERRORS = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
_URL_CACHE_SIZE = 256


class _Route(NamedTuple):
    """How a URL is reached: directly (all None), or through `proxy` as aiohttp is told it.

    The proxy's credentials go in `connect_headers` for an https:// URL (aiohttp sends them with
    CONNECT) and in `forward_headers` for an http:// one (aiohttp forwards the request itself,
    and sends only the request's own headers)."""

    proxy: Proxy | None = None
    url: str | None = None
    connect_headers: dict[str, str] | None = None
    forward_headers: dict[str, str] | None = None


_DIRECT = _Route()


class AiohttpTransport:
    """A pooled aiohttp session sized for the engine's concurrency (never aiohttp's default 100).

    The session opens on first use, inside the running event loop, and closes with `aclose`.
    `proxies` (`Proxies.from_env(os.environ)`) names the proxy each URL goes through; None
    connects directly.
    """

    def __init__(
        self,
        *,
        max_connections: int = DEFAULT_CONCURRENCY,
        timeouts: Timeouts | None = None,
        proxies: Proxies | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._proxies = proxies
        self._routes: dict[str, _Route] = {}
        timeouts = timeouts or Timeouts()
        # A whole answer must come within `read`: one timer per request. A stream only has to
        # keep talking: a timer per chunk, which is dearer, so only streams pay for it.
        self._plain_timeout = aiohttp.ClientTimeout(
            total=timeouts.read, sock_connect=timeouts.connect
        )
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.connect, sock_read=timeouts.read
        )
        self._session: aiohttp.ClientSession | None = None
        self._fresh: aiohttp.ClientSession | None = None
        self.stale_retries = 0  # requests resent on a fresh connection after a dead pooled one

    async def send(self, request: HttpRequest) -> HttpResponse:
        """Send one request and read the whole answer."""
        # Written out rather than as an async context manager: this is the hot path, and a
        # context manager per request costs more CPU than the rest of llmgather's own work.
        session = self._session or self._open()
        route = _DIRECT if self._proxies is None else self._route(request.url)
        try:
            try:
                response = await session.request(
                    request.method, request.url, headers=_headers(request, route),
                    data=request.body, timeout=self._plain_timeout, proxy=route.url,
                    proxy_headers=route.connect_headers,
                )  # fmt: skip
            except _STALE_CONNECTION_ERRORS as exc:
                if isinstance(exc, aiohttp.ClientConnectorError):
                    raise  # refused: no connection was ever made, so none was stale
                response = await self._resend_fresh(request, self._plain_timeout, exc, route)
            try:
                if (
                    route.proxy is not None
                    and response.status == 407
                    and request.url.startswith("http:")
                ):
                    raise refused(route.proxy, 407, _authority(request.url))
                body = await response.read()
            finally:
                response.release()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._mapped(exc, request.url, route) from None
        return HttpResponse(response.status, response.headers, body)

    @asynccontextmanager
    async def stream(self, request: HttpRequest) -> AsyncIterator[_AiohttpStream]:
        """An answer whose body is read chunk by chunk, each within the read timeout."""
        session = self._session or self._open()
        route = _DIRECT if self._proxies is None else self._route(request.url)
        try:
            try:
                response = await session.request(
                    request.method, request.url, headers=_headers(request, route),
                    data=request.body, timeout=self._stream_timeout, proxy=route.url,
                    proxy_headers=route.connect_headers,
                )  # fmt: skip
            except _STALE_CONNECTION_ERRORS as exc:
                if isinstance(exc, aiohttp.ClientConnectorError):
                    raise
                response = await self._resend_fresh(request, self._stream_timeout, exc, route)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._mapped(exc, request.url, route) from None
        if route.proxy is not None and response.status == 407 and request.url.startswith("http:"):
            response.release()
            raise refused(route.proxy, 407, _authority(request.url))
        async with response:
            yield _AiohttpStream(response)

    async def aclose(self) -> None:
        for session in (self._session, self._fresh):
            if session is not None:
                await session.close()
        self._session = self._fresh = None

    async def _resend_fresh(
        self,
        request: HttpRequest,
        limit: aiohttp.ClientTimeout,
        first: BaseException,
        route: _Route,
    ) -> aiohttp.ClientResponse:
        """Resend at once, on a connection opened for it, a request whose write failed.

        The pool handed out a connection the server had already closed: nothing reached the
        server, so this costs the item no attempt. aiohttp cannot tell that from a server that
        read the request and then closed, so every resend is counted (`stale_retries`, the
        engine's `resent`). If the fresh connection fails too, the failure is the server's,
        and is reported as such.
        """
        self.stale_retries += 1
        if self._fresh is None:
            self._fresh = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True, limit=self._max_connections),
                trust_env=False,
            )
        try:
            return await self._fresh.request(
                request.method, request.url, headers=_headers(request, route),
                data=request.body, timeout=limit, proxy=route.url,
                proxy_headers=route.connect_headers,
            )  # fmt: skip
        except (TimeoutError, aiohttp.ClientError) as exc:
            if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ClientHttpProxyError):
                self.stale_retries -= 1  # no connection: the resend never went out
                raise self._mapped(exc, request.url, route) from None
            raise APIConnectionError(
                f"{_describe(first)}; resent at once on a fresh connection, which failed "
                f"too ({_describe(exc)})"
            ) from None

    def _route(self, url: str) -> _Route:
        """The proxy for `url` as aiohttp takes it, looked up once per URL."""
        route = self._routes.get(url)
        if route is None:
            route = _DIRECT
            scheme, host, port = _origin(url)
            proxy = None if self._proxies is None else self._proxies.for_origin(scheme, host, port)
            if proxy is not None:
                authorization = proxy.authorization
                login = None if authorization is None else {"Proxy-Authorization": authorization}
                if scheme == "https":
                    route = _Route(proxy, proxy.url, connect_headers=login)
                else:
                    route = _Route(proxy, proxy.url, forward_headers=login)
            if len(self._routes) >= _URL_CACHE_SIZE:
                self._routes.clear()  # a client calls a handful of URLs; this only bounds it
            self._routes[url] = route
        return route

    def _mapped(self, exc: BaseException, url: str, route: _Route) -> Exception:
        """`mapped`, naming the proxy a failure came from (never its credentials), or a proxy
        variable that is set but was not used for a host that does not resolve."""
        proxy = route.proxy
        if proxy is not None and isinstance(exc, aiohttp.ClientHttpProxyError):
            return refused(proxy, exc.status, _authority(url))
        if (
            proxy is not None
            and isinstance(exc, aiohttp.ClientConnectorError)
            and not isinstance(exc, aiohttp.ClientSSLError)
            and exc.host == proxy.host
        ):
            if isinstance(exc, aiohttp.ClientConnectorDNSError):
                return ConnectError(f"cannot resolve the host of {proxy} ({_why(exc)})")
            return ConnectError(f"cannot connect to {proxy} ({exc.strerror or 'refused'})")
        if proxy is not None and isinstance(exc, aiohttp.ClientSSLError):
            certificate = getattr(exc, "certificate_error", None)
            why = getattr(certificate, "verify_message", None) or "a TLS error"
            where = _authority(url)
            return ConnectError(f"the TLS handshake with {where} through {proxy} failed ({why})")
        if proxy is None and isinstance(exc, aiohttp.ClientConnectorDNSError):
            hint = "" if self._proxies is None else self._proxies.unused_hint(*_origin(url))
            return ConnectError(f"cannot resolve {exc.host} ({_why(exc)}){hint}")
        return mapped(exc)

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, limit_per_host=0, enable_cleanup_closed=False
        )
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=True, trust_env=False
        )
        return self._session


class _AiohttpStream:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status: int = response.status
        self.headers: Headers = response.headers

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise mapped(exc) from None

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise mapped(exc) from None


def mapped(exc: BaseException) -> Exception:
    """aiohttp/asyncio failures as llmgather errors, without the URL (it may carry a key)."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return RequestTimeoutError("no connection within the connect timeout")
    if isinstance(exc, TimeoutError):  # aiohttp's read timeouts are TimeoutErrors too
        return RequestTimeoutError("no answer within the timeout")
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, DNS, TLS: nothing was sent
        return ConnectError(_describe(exc))
    return APIConnectionError(_describe(exc))


def _headers(request: HttpRequest, route: _Route) -> dict[str, str]:
    if route.forward_headers is None:
        return request.headers
    return {**request.headers, **route.forward_headers}


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        port = 0
    return scheme, parts.hostname or "", port


def _authority(url: str) -> str:
    _, host, port = _origin(url)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _why(exc: aiohttp.ClientConnectorError) -> str:
    return exc.strerror or "unknown host"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the connection closed in the middle of the response body"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port} ({exc.strerror or 'refused'})"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"invalid HTTP response (status {exc.status})"
    if isinstance(exc, aiohttp.ClientOSError):
        return f"the connection failed while sending ({exc.strerror or type(exc).__name__})"
    return f"connection error: {type(exc).__name__}"
