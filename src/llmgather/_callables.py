"""A user's own async callable as a request the engine can run: an official SDK call, a
LangChain runnable's `ainvoke`, an HTTP call of their own, under the same limits and retries.

The call travels the pipeline as a `CallRequest` (a `Request` that carries the function, its
arguments and its cost), so the engine needs no second code path: it reserves the cost, runs
the call, and reads the SDK's errors and usage through `_sdk_errors`, the limits its answer's
headers announce through `_sdk_answers`; a stream it returns holds the permit until read
(`_held_stream`). The callable's own exception reaches the caller as it was raised.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from llmgather._attempt import CallerFailure
from llmgather._errors import APIError
from llmgather._held_stream import HeldStream
from llmgather._sdk_answers import announced, is_stream, parsed, raw_form
from llmgather._sdk_errors import error_from_sdk, text_from_sdk, usage_from_sdk
from llmgather._types import Completion, Outcome, Request
from llmgather.limits import Cost
from llmgather.limits.tokens import (
    DEFAULT_OUTPUT_ESTIMATE,
    estimate_prompt_tokens,
    estimate_text_tokens,
)

AsyncCallable = Callable[..., Awaitable[Any]]

# Set while a call runs inside an engine that holds its permit and retries it: a llmgather
# model called inside (a `ChatLLMGather` in a LangChain chain) then sends at once, without a
# second permit from its own limiter and without retries of its own.
PERMIT_HELD: contextvars.ContextVar[bool] = contextvars.ContextVar("permit_held", default=False)
CostOf = Callable[[Any], Cost]

# Where the official SDKs take the output budget: OpenAI, Anthropic, and google-genai's config.
_MAX_OUTPUT_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRequest(Request):
    """One call of `fn(*args, **kwargs)`, with the cost to reserve before it runs."""

    fn: AsyncCallable
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    cost: Cost
    # Awaited once the permit is granted, before the call counts as sent: raising there
    # withdraws the call unsent, its permit given back (a gateway's client that left).
    before_send: Callable[[], Awaitable[None]] | None = None

    def sent_by(self, send: Callable[[Request], Awaitable[Outcome]]) -> Awaitable[Outcome]:
        """The call runs itself: the engine's `send` is for prompts."""
        return self.run()

    async def run(self) -> Outcome:
        mapped: APIError | None = None
        held = PERMIT_HELD.set(True)
        try:
            # An SDK method is called in its raw form, whose answer has the headers as well.
            answer = await (raw_form(self.fn) or self.fn)(*self.args, **self.kwargs)
            value, headers = await parsed(answer)
        except APIError:
            raise
        except Exception as exc:
            mapped = error_from_sdk(exc)
            if mapped is None:
                # The callable's own failure, never retried: reported with its traceback from
                # the callable on (this frame left out), and its chain.
                raise CallerFailure(exc.with_traceback(_below(exc.__traceback__))) from None
        finally:
            PERMIT_HELD.reset(held)
        if mapped is not None:
            # Raised outside the handler, so not even as context does it carry the SDK's
            # exception, whose frames hold the request and its auth header.
            raise mapped
        if isinstance(value, Outcome):
            return value  # a callable of llmgather's own (the gateway's) that parsed its answer
        completion = Completion(
            text=text_from_sdk(value) or "",
            usage=usage_from_sdk(value),
            announced=announced(value, headers),
        )
        if is_stream(value):
            stream = HeldStream(value)
            return Outcome(completion, value=stream, keep_permit=stream.keep)
        return Outcome(completion, value=value)

    def __repr__(self) -> str:
        return f"<CallRequest {getattr(self.fn, '__qualname__', self.fn)!r} id={self.id!r}>"


def _below(frame: TracebackType | None) -> TracebackType | None:
    return frame.tb_next if frame is not None else None


def call_request(
    fn: AsyncCallable, item: Any, cost_of: CostOf | None, unpack: bool = True
) -> CallRequest:
    """The call `fn(**item)` for a dict item (when `unpack`), `fn(item)` for anything else."""
    if unpack and isinstance(item, Mapping):
        args: tuple[Any, ...] = ()
        kwargs: Mapping[str, Any] = item
    else:
        args, kwargs = (item,), {}
    cost = cost_of(item) if cost_of is not None else default_cost(args, kwargs)
    return CallRequest(messages=(), fn=fn, args=args, kwargs=kwargs, cost=cost)


def single_call(
    fn: AsyncCallable, args: tuple[Any, ...], kwargs: Mapping[str, Any], cost: Cost | None
) -> CallRequest:
    return CallRequest(
        messages=(), fn=fn, args=args, kwargs=kwargs, cost=cost or default_cost(args, kwargs)
    )


async def async_call_requests(
    fn: AsyncCallable, items: AsyncIterable[Any], cost_of: CostOf | None, unpack: bool
) -> AsyncIterator[Request]:
    async for item in items:
        yield call_request(fn, item, cost_of, unpack)


def default_cost(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    """One request, the tokens of the prompt the call passes (`messages`, `contents`, `input`,
    or a lone string argument) and its output budget, when it names one."""
    prompt: Any = next(
        (kwargs[key] for key in ("messages", "contents", "input", "prompt") if key in kwargs),
        args[0] if len(args) == 1 else None,
    )
    config = kwargs.get("config")
    limits = [kwargs.get(key) for key in _MAX_OUTPUT_KEYS]
    if config is not None:  # google-genai: GenerateContentConfig(max_output_tokens=...) or a dict
        limits.append(
            config.get("max_output_tokens")
            if isinstance(config, Mapping)
            else getattr(config, "max_output_tokens", None)
        )
    output = next((limit for limit in limits if isinstance(limit, int)), DEFAULT_OUTPUT_ESTIMATE)
    return Cost(requests=1, input_tokens=_prompt_tokens(prompt), output_tokens=output)


def _prompt_tokens(prompt: Any) -> int:
    if prompt is None:
        return 0
    if isinstance(prompt, str):
        return estimate_text_tokens(prompt)
    if isinstance(prompt, list) and all(isinstance(m, Mapping) and "content" in m for m in prompt):
        return estimate_prompt_tokens(prompt)
    # Another shape (Gemini's contents, a LangChain input): its printed form over-counts a
    # little, which a reservation may; it is settled with the real usage afterwards.
    return estimate_text_tokens(str(prompt))
