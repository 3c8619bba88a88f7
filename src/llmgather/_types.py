"""The values that flow through llmgather: requests in, completions and results out."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Message = dict[str, Any]  # {"role": "user" | "system" | "assistant", "content": str}


@dataclass(frozen=True, slots=True)
class Request:
    """One prompt to send. `id` is the caller's; `metadata` is passed through untouched.

    `extra` holds provider-native body fields (OpenAI's `response_format` or `seed`, Anthropic's
    `stop_sequences`, Gemini's `safetySettings`...), merged into the request body as they are.
    """

    messages: tuple[Message, ...]
    id: str = ""
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    metadata: Any = None
    extra: dict[str, Any] | None = None

    @classmethod
    def from_prompt(cls, prompt: str, *, system: str | None = None, **kwargs: Any) -> Request:
        messages: list[Message] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": prompt})
        return cls(messages=tuple(messages), **kwargs)

    def replace(self, **changes: Any) -> Request:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
        }


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
    """

    text: str
    usage: Usage | None = None
    finish_reason: str | None = None
    model: str | None = None
    announced: Mapping[str, float] | None = None
    provider_finish_reason: str | None = None


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
    """The one outcome of one request: `status` is "ok" with `text`, or "error" with `error`."""

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
    index: int = field(default=-1, repr=False)
    exception: BaseException | None = field(default=None, repr=False, compare=False)
    # What a user's own callable returned (`Client.call`/`map_calls`): an SDK's response object.
    value: Any = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of an output line."""
        return {
            "id": self.id,
            "status": self.status,
            "text": self.text,
            "usage": self.usage.to_dict() if self.usage else None,
            "attempts": self.attempts,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 1),
            "finish_reason": self.finish_reason,
            "provider_finish_reason": self.provider_finish_reason,
            "error": self.error.to_dict() if self.error else None,
            "metadata": self.metadata,
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a send gives the engine: the completion, and the time to its first token if streamed.

    `value` is what a user's own callable returned (`Client.call`), kept for its Result.
    """

    completion: Completion
    ttft_ms: float | None = None
    value: Any = None
