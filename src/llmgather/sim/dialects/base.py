"""The neutral request and the interface each provider dialect implements.

A dialect is the whole difference between providers as the simulator sees them: where the key
is, how the body reads, and how answers, stream events, errors and rate-limit headers look.
The server does everything else once, for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from llmgather.limits.tokens import DEFAULT_OUTPUT_ESTIMATE, estimate_prompt_tokens
from llmgather.sim.limits import LimitState, Refusal
from llmgather.sim.prompt_cache import NO_CACHE, CacheUse
from llmgather.sim.text import Answer
from llmgather.sim.wire import IdMaker

Headers = dict[str, str]


class BadRequest(Exception):
    """The body cannot be a request of this dialect; the message goes into the 400 body."""


@dataclass(slots=True)
class SimRequest:
    """One parsed request in provider-neutral form (system prompt included as a message)."""

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    temperature: float | None = None
    stream: bool = False
    include_usage: bool = False  # OpenAI `stream_options.include_usage`
    # What it offers and asks for, neutral (see sim/structured.py): tools as {"name",
    # "parameters"}; tool_choice "auto" | "required" | "none" | {"name": ...}; the JSON schema
    # an answer must fit, if it asks for JSON.
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, str] | None = None
    json_schema: dict[str, Any] | None = None
    prompt: str = field(init=False)
    input_tokens: int = field(init=False)
    output_estimate: int = field(init=False)  # what output budgets reserve until it settles
    # What of `input_tokens` the prompt cache gave or took, set once the request is answered.
    cache: CacheUse = field(init=False, default=NO_CACHE)

    def __post_init__(self) -> None:
        # What the answer is derived from: the same conversation reads the same in every dialect.
        self.prompt = "\n".join(str(m["content"]) for m in self.messages)
        self.input_tokens = estimate_prompt_tokens(self.messages)
        # As llmgather's client estimates it, so both sides reserve the same.
        self.output_estimate = (
            DEFAULT_OUTPUT_ESTIMATE if self.max_tokens is None else self.max_tokens
        )

    @property
    def reserved_tokens(self) -> int:
        """What a tokens-per-minute budget reserves: the prompt and the output estimate."""
        return self.input_tokens + self.output_estimate


@dataclass(frozen=True, slots=True)
class StreamEvents:
    """A stream as SSE frames: `head` before the first token, one frame per chunk, `tail` ends it."""

    head: list[bytes]
    chunks: list[bytes]
    tail: list[bytes]


@dataclass(frozen=True, slots=True)
class ErrorReply:
    status: int
    body: bytes
    headers: Headers


class Dialect(Protocol):
    """What a provider dialect renders; every method is pure apart from reading the request."""

    name: str
    stream_content_type: str
    # What the names of its rate-limit headers start with ("" if it sends none): what
    # `SimConfig(limit_headers=False)` strips from every answer.
    limit_header_prefix: str

    def api_key(self, request: web.BaseRequest) -> str | None: ...

    def parse(self, body: Any, request: web.BaseRequest, model: str | None) -> SimRequest:
        """Read the JSON body (and the path's model, for Gemini); raise BadRequest if invalid."""
        ...

    def response_headers(self, request_id: str, limits: LimitState | None) -> Headers: ...

    def render(self, req: SimRequest, answer: Answer, ids: IdMaker) -> bytes: ...

    def stream(
        self, req: SimRequest, answer: Answer, chunks: list[str], ids: IdMaker
    ) -> StreamEvents: ...

    def malformed_event(self) -> bytes: ...

    def early_end(self) -> list[bytes]:
        """The frames that end a stream as if whole, without its finish reason (`done_early`)."""
        ...

    def error(self, status: int, message: str | None = None, *, request_id: str = "") -> ErrorReply:
        """A generic error of this status in the provider's shape."""
        ...

    def auth_error(self, key: str | None, *, request_id: str = "") -> ErrorReply: ...

    def body_too_large(self, max_bytes: int, *, request_id: str = "") -> ErrorReply:
        """The provider's answer to a body over `max_bytes` (a 413, or Gemini's 400)."""
        ...

    def rate_limited(
        self, req: SimRequest, refusal: Refusal, *, request_id: str = ""
    ) -> ErrorReply:
        """The provider's 429 (or, for a request too large to ever fit, its permanent error)."""
        ...

    def injected_rate_limit(
        self, req: SimRequest, retry_after_s: float, *, request_id: str = ""
    ) -> ErrorReply: ...

    def quota_exhausted(self, req: SimRequest, *, request_id: str = "") -> ErrorReply:
        """The provider's answer when the account is out of quota or credit for the day."""
        ...

    def spend_limited(self, req: SimRequest, *, request_id: str = "") -> ErrorReply:
        """The provider's answer when the account has reached a spend limit (`spend` fault)."""
        ...


def tool_entry(name: Any, parameters: Any, where: str) -> dict[str, Any]:
    """A neutral tool from a dialect's declaration; BadRequest naming `where` if it is none."""
    if not isinstance(name, str) or not name:
        raise BadRequest(f"{where}.name: a tool needs a name")
    if parameters is not None and not isinstance(parameters, dict):
        raise BadRequest(f"{where}: the parameters must be a JSON schema object")
    return {"name": name, "parameters": parameters or {"type": "object", "properties": {}}}


def chosen_name(choice: Any, tools: list[dict[str, Any]], where: str) -> dict[str, str]:
    """A tool_choice naming one tool, as {"name": ...}; BadRequest if no tool has that name."""
    if not any(tool["name"] == choice for tool in tools):
        raise BadRequest(f"{where}: no tool named {choice!r} is offered")
    return {"name": choice}


def positive_int(value: Any, name: str) -> int | None:
    """An optional positive integer field, or BadRequest naming it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(f"{name} must be a positive integer, got {value!r}")
    return value


def optional_float(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{name} must be a number, got {value!r}")
    return float(value)
