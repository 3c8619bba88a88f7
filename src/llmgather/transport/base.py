"""The transport protocol and the request and answer it carries, apart from any transport.

Every transport module imports these from here, so the package's `__init__` can import the
transports themselves at its top (it re-exports all of it).
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
