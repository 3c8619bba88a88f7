"""The seam between llmgather and a provider's wire format: sans-IO, no sockets here.

A provider adapter turns a `Request` into an `HttpRequest`, a response body into a
`Completion`, a stream of server-sent events into text pieces, and any failure status or
body into llmgather's exception tree. The transport (`transport/aiohttp.py`) does the I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from llmgather._types import Completion, Request
from llmgather.transport.sse import SSEEvent

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


class StreamDecoder(Protocol):
    def feed(self, event: SSEEvent) -> list[str]:
        """Text pieces carried by one event; raises an APIError for an error event."""
        ...

    def finish(self) -> Completion:
        """The whole completion once the body has ended; TruncatedStreamError if incomplete."""
        ...


class Provider(Protocol):
    """One provider's wire format. Instances hold the API key and base URL, never print them."""

    name: str

    def build_request(self, request: Request, *, model: str, stream: bool) -> HttpRequest: ...

    def parse_response(self, status: int, headers: Headers, body: bytes) -> Completion:
        """A 2xx body as a Completion; raises MalformedResponseError if it does not parse."""
        ...

    def parse_error(self, status: int, headers: Headers, body: bytes) -> Exception:
        """The llmgather error for a non-2xx answer (an APIError subclass)."""
        ...

    def stream_decoder(self) -> StreamDecoder: ...

    def announced_limits(self, headers: Headers) -> tuple[float | None, float | None]:
        """(requests, tokens) per minute from the rate-limit headers of any answer, if sent."""
        ...
