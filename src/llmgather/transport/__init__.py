"""The transport seam: one method carries an `HttpRequest` and returns an `HttpResponse`.

    Transport.send(HttpRequest) -> HttpResponse             a whole answer
    Transport.stream(HttpRequest) -> StreamingResponse       status and headers, then bytes

Everything above it (building the request, parsing the answer, the retry verdict) lives in
`llmgather._exchange`; everything below it is I/O. `Http11Transport` (a keep-alive pool of
HTTP/1.1 connections parsed by httptools) is the default; `AiohttpTransport` (one pooled aiohttp
session) does the same on aiohttp's client; `MockTransport(handler)` answers with a function and
no sockets, for tests. `Proxies` (from the proxy variables, read at the edge) tells the first
two which proxy each URL goes through.
A transport maps its own I/O failures to `APIConnectionError` and `RequestTimeoutError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

Headers = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    def __repr__(self) -> str:
        # Never show headers: they carry the API key.
        return f"<HttpRequest {self.method} {self.url}>"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Headers
    body: bytes

    def __repr__(self) -> str:
        return f"<HttpResponse {self.status} ({len(self.body)} bytes)>"


class StreamingResponse(Protocol):
    """An answer whose status and headers have arrived and whose body is still coming."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Headers: ...

    def iter_bytes(self) -> AsyncIterator[bytes]:
        """The body's chunks as they arrive."""
        ...

    async def read(self) -> bytes:
        """The rest of the body at once (an error answer's)."""
        ...


@runtime_checkable
class Transport(Protocol):
    async def send(self, request: HttpRequest) -> HttpResponse: ...

    def stream(self, request: HttpRequest) -> AbstractAsyncContextManager[StreamingResponse]: ...

    async def aclose(self) -> None: ...


from llmgather.transport.aiohttp import AiohttpTransport  # noqa: E402
from llmgather.transport.http11 import Http11Transport  # noqa: E402
from llmgather.transport.mock import MockTransport  # noqa: E402
from llmgather.transport.proxies import Proxies, Proxy  # noqa: E402

__all__ = [
    "AiohttpTransport",
    "Headers",
    "Http11Transport",
    "HttpRequest",
    "HttpResponse",
    "MockTransport",
    "Proxies",
    "Proxy",
    "StreamingResponse",
    "Transport",
]
