"""One request in the engine's hands: what it reserves, the permit it holds while it is sent,
and what an attempt comes to, as named outcomes.

What the engine schedules is a call with a cost (`Request`'s work-item side): `cost`, what it
reserves (None: its prompt's estimate), `before_send`, a check awaited once the permit is
granted (raising withdraws it unsent), and `sent_by(send)`, the send itself (a prompt goes
through the engine's `send`; a user's callable, `CallRequest`, runs itself).

    attempt ─▶ Result          finished: ok, or failed for good
            ─▶ RetryIn(delay)   failed, to be sent again after `delay`
            ─▶ UNSENT           a stop came while it waited for the limiter
    judge   ─▶ RetryIn(delay) | GiveUp(error)
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, final

from llmgather._errors import APIError, AuthenticationError, RateLimitError, TruncatedStreamError
from llmgather._redact import Redactor
from llmgather._stop import NOTHING_USED, StoppableWaits
from llmgather._types import Completion, ErrorInfo, Outcome, Request, Result, Usage
from llmgather.cache.responses import CACHED_BASIS
from llmgather.limits.base import Cost, Ending, Limiter, Permit
from llmgather.limits.tokens import request_cost

# What a request the server did not take costs in tokens: a 429, or a send withdrawn or stopped.

Release = Callable[[Usage | None, Ending], Awaitable[None]]
"""Gives a permit handed over (`PermitHold.hand_over`) back, settled with what it used."""


class InFlight:
    """One request from its admission to its Result, across its attempts."""

    __slots__ = ("attempts", "cache_key", "charged", "cost", "index", "reached", "request")

    def __init__(self, request: Request, index: int) -> None:
        self.request = request
        self.index = index
        self.cost = reserved(request)  # once, however many times it is sent
        self.attempts = 0  # sends made, as the Result reports them
        self.charged = 0  # failures that count against max_attempts (an outage's do not)
        self.reached = 0  # failed sends that went out (all but a connection never made)
        self.cache_key: str | None = None  # its response cache key, if the cache may answer it


def reserved(request: Request) -> Cost:
    """What `request` reserves: its own cost if it names one (a user's callable does), else
    one request, its prompt's tokens and its output budget."""
    cost = request.cost
    return request_cost(request.messages, request.max_tokens) if cost is None else cost


async def _nothing() -> None:
    pass


class PermitHold:
    """The permit one send holds: acquired on entry, given back on exit, settled with what the
    send used. Until `sending()`, the request has not gone out: a check that withdraws it (its
    `before_send` raising), or anything else that ends the block, gives the permit back unspent.
    A map's stop that came while it waited leaves it holding nothing (`permit` is None)."""

    __slots__ = ("_cost", "_limiter", "_waits", "ending", "permit", "usage")

    def __init__(self, limiter: Limiter, cost: Cost, waits: StoppableWaits | None = None) -> None:
        self._limiter = limiter
        self._cost = cost
        self._waits = waits
        self.permit: Permit | None = None
        self.usage: Usage | None = NOTHING_USED
        self.ending: Ending = "failed"

    async def __aenter__(self) -> PermitHold:
        if self._waits is None:
            self.permit = await self._limiter.acquire(self._cost)
        else:
            self.permit = await self._waits.acquire(self._limiter, self._cost)
        return self

    def __aexit__(self, *exc_info: object) -> Awaitable[None]:
        # The release itself is what `async with` awaits: no coroutine frame of our own.
        if self.permit is None:
            return _nothing()
        return self._limiter.release(self.permit, self.usage, outcome=self.ending)

    def hand_over(self) -> Release:
        """The permit, kept past this block by whoever still reads the answer (a user's SDK
        stream, read after its call returned): they give it back once it is read."""
        permit, self.permit = self.permit, None
        assert permit is not None
        limiter = self._limiter

        def release(usage: Usage | None, ending: Ending) -> Awaitable[None]:
            return limiter.release(permit, usage, outcome=ending)

        return release

    def sending(self) -> None:
        """The request goes out: unless settled, what it used is unknown (the reservation stands)."""
        self.usage = None

    def settle(self, usage: Usage | None, ending: Ending) -> None:
        self.usage = usage
        self.ending = ending

    def settle_failure(self, error: APIError, max_retry_wait: float) -> None:
        """Settled after a failed send: a 429's server took nothing; otherwise what it used is
        unknown (the reservation stands)."""
        if isinstance(error, RateLimitError):
            # A wait past the ceiling is a quota for the day, not a pace the limiter should learn.
            waits_long = error.retry_after is not None and error.retry_after > max_retry_wait
            self.settle(NOTHING_USED, "failed" if waits_long else "limited")
        else:
            self.settle(None, "truncated" if isinstance(error, TruncatedStreamError) else "failed")


@final
@dataclass(frozen=True, slots=True)
class RetryIn:
    """Send the request again after `delay` seconds."""

    delay: float


@final
@dataclass(frozen=True, slots=True)
class GiveUp:
    """Report `error`: the request is not sent again."""

    error: APIError


@final
class Unsent:
    """A stop came while the request waited for the limiter: it was not sent, and has no Result."""

    __slots__ = ()


UNSENT: Final = Unsent()

# A Result (finished) is its own outcome: the common case allocates nothing more.
Attempted = Result | RetryIn | Unsent
Verdict = RetryIn | GiveUp


def ok_result(item: InFlight, outcome: Outcome, started: float) -> Result:
    completion = outcome.completion
    request = item.request
    return Result(
        id=request.id or str(item.index),
        status="ok",
        text=completion.text,
        usage=completion.usage,
        attempts=item.attempts,
        latency_ms=(time.perf_counter() - started) * 1000,
        ttft_ms=outcome.ttft_ms,
        metadata=request.metadata,
        finish_reason=completion.finish_reason,
        provider_finish_reason=completion.provider_finish_reason,
        tool_calls=completion.tool_calls,
        index=item.index,
        value=outcome.value,
    )


def cached_result(item: InFlight, completion: Completion, started: float) -> Result:
    """The item answered from the response cache (see `from_cache`)."""
    request = item.request
    return from_cache(
        completion,
        id=request.id or str(item.index),
        metadata=request.metadata,
        index=item.index,
        latency_ms=(time.perf_counter() - started) * 1000,
    )


def from_cache(completion: Completion, **labels: Any) -> Result:
    """An answer from the response cache: nothing sent, nothing spent, the original answer's
    usage kept; `labels` are the Result's other fields (its id, metadata…)."""
    return Result(
        status="ok",
        text=completion.text,
        usage=completion.usage,
        attempts=0,
        finish_reason=completion.finish_reason,
        provider_finish_reason=completion.provider_finish_reason,
        tool_calls=completion.tool_calls,
        cost=Decimal(0),
        cost_basis=CACHED_BASIS,
        cached=True,
        **labels,
    )


class CallerFailure(Exception):
    """A user's callable's own exception (neither an SDK's nor llmgather's), carried apart to
    the engine: it is reported as the callable raised it, never retried."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


def failed_result(
    item: InFlight, error: Exception, redactor: Redactor, *, as_raised: bool = False
) -> Result:
    """The item's failure; its exception `as_raised` (a user's callable's own: the traceback
    and chain are theirs), or detached from every frame of llmgather's and the SDKs'."""
    return Result(
        id=item.request.id or str(item.index),
        status="error",
        attempts=item.attempts,
        error=error_info(error, redactor),
        metadata=item.request.metadata,
        index=item.index,
        exception=error if as_raised else _detached(error),
    )


def accepts_key(error: APIError) -> bool:
    """Whether a failed answer still shows the key accepted: a client error other than a
    refusal (401, 403) or a 429 (which says nothing certain about the key)."""
    status = error.status_code or 0
    refused = isinstance(error, AuthenticationError) or status in (401, 403, 429)
    return 400 <= status < 500 and not refused


def _detached(error: Exception) -> Exception:
    """The error without its traceback and chained exceptions: their frames hold the request
    (its auth header too), and a gather of many failures would keep every one of them alive."""
    error.__context__ = error.__cause__ = None
    return error.with_traceback(None)


def error_info(error: BaseException, redactor: Redactor) -> ErrorInfo:
    """A failure as data, every secret hidden: a server's echo in an adapter's or an SDK's
    message, or what a user's own callable's exception quotes (an HTTP library's error names
    the URL, and Gemini's REST URL may carry `?key=`)."""
    status = error.status_code if isinstance(error, APIError) else None
    # An error that is no failure of the request's own names its line's type (a spent cap's).
    kind = getattr(error, "line_type", None) or type(error).__name__
    return ErrorInfo(kind, redactor.error(error), status)
