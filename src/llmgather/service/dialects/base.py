"""What a front dialect is: how the gateway reads a client's request and answers it in the
client's own wire format (OpenAI, Anthropic or Gemini).

Two paths go through a dialect. When the client speaks the upstream's dialect, the body is
relayed unchanged and the dialect only estimates its cost, words its errors and says where a
relayed stream's answer starts and ends. When they differ, the body is translated into
llmgather's `Request` (refusing, with a 400, what cannot be translated rather than dropping
it), and the upstream's `Completion` is rendered back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from llmgather._types import Completion, Request
from llmgather.limits import Cost
from llmgather.transport.sse import SSEEvent


class Untranslatable(Exception):
    """A request the gateway cannot carry to an upstream of another dialect: a 400 that names
    the field, never a field silently dropped."""


def refuse_unknown(
    body: Mapping[str, Any], carried: frozenset[str] | set[str], *, prefix: str = ""
) -> None:
    """Untranslatable, naming them, if `body` sets fields outside `carried`."""
    refused = sorted(prefix + key for key in body if key not in carried and body[key] is not None)
    if refused:
        them = "them" if len(refused) > 1 else "it"
        raise Untranslatable(
            f"{', '.join(refused)} cannot be carried to this gateway's upstream, which speaks "
            f"another API; send the request without {them}"
        )


class StreamWriter(Protocol):
    """The server-sent events of one translated streaming answer, as bytes to send."""

    def start(self) -> bytes: ...

    def piece(self, text: str) -> bytes: ...

    def end(self, completion: Completion) -> bytes: ...


class FrontDialect(Protocol):
    """One wire format the gateway serves. `name` is the provider whose format it is."""

    name: str

    def cost(self, body: Mapping[str, Any]) -> Cost:
        """What the request reserves: one request, its prompt's tokens, its output budget."""
        ...

    def to_request(self, body: Mapping[str, Any]) -> Request:
        """The request in llmgather's terms, for an upstream of another dialect; raises
        Untranslatable for what it cannot carry. Stop sequences go in `extra["stop"]` (a
        list of strings), whatever the dialect calls them: the upstream puts them where its
        own API takes them."""
        ...

    def answer(self, completion: Completion, *, model: str) -> dict[str, Any]:
        """A whole answer in this dialect."""
        ...

    def stream_writer(self, body: Mapping[str, Any], *, model: str) -> StreamWriter:
        """The events of a translated streaming answer to `body`."""
        ...

    def error(self, status: int, message: str) -> dict[str, Any]:
        """An error body in this dialect, as its SDK reads it."""
        ...

    def stream_error(self, status: int, message: str) -> bytes:
        """The server-sent event that ends a stream cut after its first piece, as this
        dialect's SDK reads an error there."""
        ...

    def opening(self, event: SSEEvent) -> bool:
        """Whether a relayed stream's event carries nothing of the answer yet: held back
        with those before it until one does, so a failure until then is retried unseen."""
        ...

    def terminal(self, event: SSEEvent) -> bool:
        """Whether a relayed stream's event tells this dialect's SDK the answer is whole:
        held back until the stream has ended and been checked complete."""
        ...
