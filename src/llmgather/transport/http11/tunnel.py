"""Through an HTTP proxy to an https:// origin: a connection to the proxy, `CONNECT host:port`,
and once the proxy answers 2xx, TLS with the origin inside the tunnel (its name sent as SNI and
checked against its certificate, never the proxy's)."""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING

from llmgather._errors import ConnectError
from llmgather.transport.proxies import refused

if TYPE_CHECKING:
    from llmgather.transport.http11.wire import Origin
    from llmgather.transport.proxies import Proxy

_MAX_HEAD = 64 * 1024  # a proxy's answer to CONNECT is a few lines


async def open_tunnel(
    loop: asyncio.AbstractEventLoop, origin: Origin, proxy: Proxy, tls: ssl.SSLContext
) -> asyncio.Transport:
    """A TLS connection to `origin` through `proxy`, its handshake done; for an https://
    proxy, inside the TLS connection to the proxy (TLS in TLS).

    A failure to reach the proxy raises as the socket's error (the caller names the proxy); a
    proxy that refuses, or a handshake that fails, raises llmgather's error or the TLS error."""
    to_proxy = tls if proxy.scheme == "https" else None
    try:
        raw, handshake = await loop.create_connection(
            lambda: _Handshake(loop, proxy),
            proxy.host,
            proxy.port,
            ssl=to_proxy,
            server_hostname=proxy.host if to_proxy else None,
        )
    except ssl.SSLError as exc:
        raise ConnectError(f"the TLS handshake with {proxy} failed ({_why(exc)})") from None
    target = _authority(origin)
    try:
        raw.write(_connect_request(target, proxy))
        status = await handshake.answered
        if not 200 <= status < 300:
            raise refused(proxy, status, target)
        try:
            tunnel = await loop.start_tls(raw, handshake, tls, server_hostname=origin.host)
        except ssl.SSLError:
            raise
        except (OSError, EOFError) as exc:  # the proxy or the origin hung up mid-handshake
            raise ConnectError(
                f"the TLS handshake with {target} through {proxy} failed "
                f"({getattr(exc, 'strerror', None) or type(exc).__name__})"
            ) from None
    except BaseException:
        handshake.settle()
        raw.abort()
        raise
    if tunnel is None:  # the connection closed as the handshake ended
        raise ConnectError(f"{proxy} closed the tunnel to {target}")
    return tunnel


def _why(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return exc.verify_message
    return str(exc.reason or exc)


def _authority(origin: Origin) -> str:
    host = f"[{origin.host}]" if ":" in origin.host else origin.host
    return f"{host}:{origin.port}"


def _connect_request(target: str, proxy: Proxy) -> bytes:
    lines = [f"CONNECT {target} HTTP/1.1\r\n", f"host: {target}\r\n"]
    authorization = proxy.authorization
    if authorization:
        lines.append(f"proxy-authorization: {authorization}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("utf-8")


class _Handshake(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT up to the end of its head: `answered` is its status."""

    def __init__(self, loop: asyncio.AbstractEventLoop, proxy: Proxy) -> None:
        self._proxy = proxy
        self._head = bytearray()
        self.answered: asyncio.Future[int] = loop.create_future()

    def data_received(self, data: bytes) -> None:
        if self.answered.done():
            return  # a refusal's body: the connection is closed next
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end >= 0:
            self._answer(bytes(self._head[:end]))
        elif len(self._head) > _MAX_HEAD:
            self._fail(f"{self._proxy} answered CONNECT with a head past {_MAX_HEAD} bytes")

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"{self._proxy} closed the connection without answering CONNECT")

    def _answer(self, head: bytes) -> None:
        status_line = head.split(b"\r\n", 1)[0].split(b" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/"):
            self._fail(f"{self._proxy} answered CONNECT with something that is not HTTP")
        elif not status_line[1].isdigit():
            self._fail(f"{self._proxy} answered CONNECT with a status that is not a number")
        else:
            self.answered.set_result(int(status_line[1]))

    def _fail(self, message: str) -> None:
        if not self.answered.done():
            self.answered.set_exception(ConnectError(message))

    def settle(self) -> None:
        """The handshake is given up: what the connection's close would set is read by no one."""
        if not self.answered.done():
            self.answered.cancel()
        elif not self.answered.cancelled():
            self.answered.exception()  # marks a failure as seen
