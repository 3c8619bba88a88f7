"""`MockTransport(handler)`: a transport that answers with a function, no sockets (as httpx's).

    def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, {"content-type": "application/json"}, b'{"choices": ...}')

    async with llmgather.Client("openai:gpt-4o-mini", api_key="k",
                                transport=MockTransport(handler)) as client: ...

The handler may be a plain or an async function, and may raise an llmgather `APIError`
(`APIConnectionError`, `RequestTimeoutError`) to play a failed connection. A streamed answer
is the response's body, handed out in `chunk_size` pieces.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmgather.transport.base import Headers, HttpRequest, HttpResponse

Handler = Callable[["HttpRequest"], "HttpResponse | Awaitable[HttpResponse]"]


class MockTransport:
    def __init__(self, handler: Handler, *, chunk_size: int = 64) -> None:
        self._handler = handler
        self._chunk_size = chunk_size
        self.requests: list[HttpRequest] = []  # every request sent, for tests to inspect

    async def send(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(request)
        response = self._handler(request)
        if inspect.isawaitable(response):
            response = await response
        return response

    @asynccontextmanager
    async def stream(self, request: HttpRequest) -> AsyncIterator[_MockStream]:
        yield _MockStream(await self.send(request), self._chunk_size)

    async def aclose(self) -> None:
        pass


class _MockStream:
    def __init__(self, response: HttpResponse, chunk_size: int) -> None:
        self._body = response.body
        self._chunk_size = chunk_size
        self.status: int = response.status
        self.headers: Headers = response.headers

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self._body), self._chunk_size):
            yield self._body[start : start + self._chunk_size]

    async def read(self) -> bytes:
        return self._body
