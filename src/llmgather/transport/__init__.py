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
The protocol and its request and answer types are in `transport.base`.
"""

from __future__ import annotations

from llmgather.transport.aiohttp import AiohttpTransport
from llmgather.transport.base import (
    Headers,
    HttpRequest,
    HttpResponse,
    StreamingResponse,
    Transport,
)
from llmgather.transport.http11 import Http11Transport
from llmgather.transport.mock import MockTransport
from llmgather.transport.proxies import Proxies, Proxy

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
