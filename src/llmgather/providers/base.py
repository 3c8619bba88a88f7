"""The seam between llmgather and a provider's wire format: sans-IO, no sockets here.

A provider adapter turns a `Request` into an `HttpRequest`, a response body into a
`Completion`, a stream of server-sent events into text pieces, and any failure status or
body into llmgather's exception tree. A transport (`transport/`: `Http11Transport` by
default) does the I/O.
"""

from __future__ import annotations

from typing import Protocol

from llmgather._types import Completion, Request
from llmgather.transport import Headers, HttpRequest
from llmgather.transport.sse import SSEEvent


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

    def announced_limits(self, headers: Headers) -> dict[str, float]:
        """The limits an answer's rate-limit headers announce, by budget name ("rpm", "rpd",
        "tpm", "itpm", "otpm"), each per its window; empty when the headers announce none."""
        ...
