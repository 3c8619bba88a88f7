"""The values that flow through llmgather: requests in, completions and results out."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import orjson

if TYPE_CHECKING:  # named in a string below, which ruff does not read as a use
    from llmgather.limits.base import Cost  # noqa: F401

T = TypeVar("T")

Message = dict[str, Any]  # {"role": "user" | "system" | "assistant", "content": str}

# The name of the tool through which a provider without a JSON-schema mode of its own is asked
# for a `json_schema` answer (a forced call whose input is the answer): no user tool may take it.
JSON_ANSWER_TOOL = "json_answer"


class _UnlessSet(Generic[T]):
    """A request's attribute that reads None unless a subclass makes it a field (its slot or
    instance attribute wins over this class attribute, which no field shadows otherwise)."""

    __slots__ = ()

    def __get__(self, instance: object, owner: type | None = None) -> T | None:
        return None


@dataclass(frozen=True, slots=True)
class Request:
    """One prompt to send. `id` is the caller's; `metadata` is passed through untouched.

    `extra` holds provider-native body fields (OpenAI's `seed`, Anthropic's `stop_sequences`,
    Gemini's `safetySettings`...), merged into the request body as they are.

    Tools and JSON answers have one spelling each, translated by every adapter:
    `tools` is a tuple of `{"name", "description"?, "parameters"}` (a JSON schema of the
    arguments); `tool_choice` is "auto", "required", "none" or `{"name": ...}` (that tool);
    `json_schema` is `{"name", "schema", "description"?, "strict"?}` and asks for a JSON
    object that fits `schema` as the answer's text. `llmgather._prompt` checks all three.
    """

    messages: tuple[Message, ...]
    id: str = ""
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    metadata: Any = None
    extra: dict[str, Any] | None = None
    tools: tuple[dict[str, Any], ...] | None = None
    tool_choice: str | dict[str, str] | None = None
    json_schema: dict[str, Any] | None = None

    @classmethod
    def from_prompt(cls, prompt: str, *, system: str | None = None, **kwargs: Any) -> Request:
        messages: list[Message] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": prompt})
        return cls(messages=tuple(messages), **kwargs)

    def replace(self, **changes: Any) -> Request:
        return dataclasses.replace(self, **changes)

    # What the engine schedules is a call with a cost: a prompt reserves its estimate (`cost`
    # None) and goes through the engine's own send; a user's callable (`CallRequest`) brings
    # its cost, a check awaited once the permit is granted (`before_send`: raising withdraws
    # it unsent, its permit given back) and its send. A subclass sets them as fields.
    cost = _UnlessSet["Cost"]()
    before_send = _UnlessSet[Callable[[], Awaitable[None]]]()

    def sent_by(self, send: Callable[[Request], Awaitable[Outcome]]) -> Awaitable[Outcome]:
        """The send of this request, given the engine's `send` for prompts."""
        return send(self)


@dataclass(frozen=True, slots=True)
class Usage:
    """The tokens of one answer, normalised across providers before they are priced.

    `input_tokens` is every prompt token, cached or not (OpenAI's and Gemini's count; Anthropic's
    `input_tokens` plus its cache reads and writes); `cache_read_tokens` and `cache_write_tokens`
    are the parts of it read from and written to the provider's prompt cache, priced at their
    own rates. `output_tokens` includes reasoning ("thinking") tokens, billed as output.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def uncached_input_tokens(self) -> int:
        """The prompt tokens neither read from nor written to a cache: priced as plain input."""
        return max(0, self.input_tokens - self.cache_read_tokens - self.cache_write_tokens)

    def to_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        """The usage `to_dict` wrote (the cache counts absent from lines written before them)."""
        return cls(
            int(data["input_tokens"]),
            int(data["output_tokens"]),
            int(data.get("cache_read_tokens") or 0),
            int(data.get("cache_write_tokens") or 0),
        )


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call the model made: its id, the tool's name and the arguments it gave.

    `arguments` is the parsed JSON object. A model may send arguments that are not a JSON
    object (cut by max_tokens, or simply invalid): then `arguments` is None and
    `raw_arguments` holds the text as sent. The item is still ok (the model did answer);
    the output line shows `raw_arguments` beside the null so the caller can judge.
    """

    id: str
    name: str
    arguments: dict[str, Any] | None
    raw_arguments: str | None = None

    @classmethod
    def from_json(cls, id: str, name: str, text: str) -> ToolCall:
        """A call whose arguments came as JSON text (OpenAI's form, or assembled from deltas)."""
        try:
            parsed = orjson.loads(text) if text.strip() else {}
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            return cls(id, name, parsed)
        return cls(id, name, None, text)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "name": self.name, "arguments": self.arguments}
        if self.arguments is None:
            data["raw_arguments"] = self.raw_arguments
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolCall:
        """The call an output line (or a queue's wire) shows, as `to_dict` wrote it."""
        return cls(data["id"], data["name"], data["arguments"], data.get("raw_arguments"))


def remaining_key(budget: str) -> str:
    """Where announced limits carry what is left of one (`"rpm.remaining"`), beside the limit."""
    return f"{budget}.remaining"


@dataclass(frozen=True, slots=True)
class Completion:
    """What one successful HTTP exchange produced, as parsed by a provider adapter.

    `announced` holds the limits the answer's headers announced, by budget name ("rpm",
    "rpd", "tpm", "itpm", "otpm"), and what remains of each under `remaining_key(name)`:
    the engine hands them to the limiter.

    `finish_reason` is why the model stopped, in one vocabulary for every provider (OpenAI's):
    "stop", "length", "tool_calls", "content_filter", or "other"; `provider_finish_reason` is
    the provider's own word for it ("end_turn", "MAX_TOKENS", "SAFETY"…).

    `tool_calls` are the calls the answer asked for, in order (empty when none); `text` is
    what text came with them, often "".
    """

    text: str
    usage: Usage | None = None
    finish_reason: str | None = None
    model: str | None = None
    announced: Mapping[str, float] | None = None
    provider_finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A failure as data: the class name of the llmgather error, the HTTP status, a message."""

    type: str
    message: str
    status_code: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "status_code": self.status_code, "message": self.message}


@dataclass(slots=True)
class Result:
    """The one outcome of one request: `status` is "ok" with `text`, or "error" with `error`.

    `tool_calls` holds the calls an ok answer made (empty when none): a request that offers
    `tools` may be answered by calls instead of text.

    `cost` is what the answer cost in USD, exactly, priced from its usage on `cost_basis`
    ("standard"); None for a failure, or a model no price source knows. A `cached` answer
    came from the response cache: cost 0 on basis "cached", its usage the original's.
    """

    id: str
    status: Literal["ok", "error"]
    text: str | None = None
    usage: Usage | None = None
    attempts: int = 0
    latency_ms: float | None = None
    ttft_ms: float | None = None
    error: ErrorInfo | None = None
    metadata: Any = None
    finish_reason: str | None = None  # normalised, as on Completion
    provider_finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    cost: Decimal | None = None
    cost_basis: str | None = None
    # Answered from the response cache: no request sent, `cost` 0 on basis "cached", `usage`
    # the original answer's.
    cached: bool = False
    index: int = field(default=-1, repr=False)
    exception: BaseException | None = field(default=None, repr=False, compare=False)
    # What a user's own callable returned (`Client.call`/`map_calls`): an SDK's response object.
    value: Any = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of an output line; `tool_calls` is there only when there are some,
        so the lines of answers without calls keep the shape they always had."""
        data: dict[str, Any] = {"id": self.id, "status": self.status, "text": self.text}
        if self.tool_calls:
            data["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        data |= {
            "usage": self.usage.to_dict() if self.usage else None,
            "attempts": self.attempts,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 1),
            "finish_reason": self.finish_reason,
            "provider_finish_reason": self.provider_finish_reason,
            "cost": cost_number(self.cost),
            "cost_basis": self.cost_basis,
            "error": self.error.to_dict() if self.error else None,
            "metadata": self.metadata,
        }
        if self.cached:  # only then: the lines of sent answers keep the shape they had
            data["cached"] = True
        return data


COST_QUANTUM = Decimal("1e-9")  # a line's cost in JSON: to the nano-dollar


def cost_number(cost: Decimal | None) -> float | None:
    """A cost as a JSON number, rounded to the nano-dollar: the float whose shortest text is
    that decimal, so summing the lines' texts as decimals gives the job's exact total."""
    return None if cost is None else float(cost.quantize(COST_QUANTUM))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a send gives the engine: the completion, and the time to its first token if streamed.

    `value` is what a user's own callable returned (`Client.call`), kept for its Result.
    `keep_permit`, when set, takes the release of the send's permit: the answer is still being
    read after the send returns (an SDK's stream), and gives the permit back once read.
    """

    completion: Completion
    ttft_ms: float | None = None
    value: Any = None
    keep_permit: Callable[[Callable[..., Awaitable[None]]], None] | None = None
