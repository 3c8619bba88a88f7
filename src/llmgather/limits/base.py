"""The limiter protocol: what the engine asks of any limiter, local or shared through Redis.

    acquire(cost) -> Permit          wait until a concurrency slot and every budget allow a send
    release(permit, usage, outcome)  free the slot, settle the estimate with the real usage
    penalise(retry_after)            a 429 or an outage: hold every send on the key for a while
    observe(announced)               limits a provider announced, by budget name
    statistics() -> LimiterStats     a snapshot, for progress lines and summaries

Every method but `statistics` is async, because a shared limiter does I/O in each; a limiter
waits, it never fails a request. Many callers (clients, the service's routes, processes on other
machines) may share one limiter: the engine is its only caller inside one process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from llmgather._types import Usage

Ending = Literal["ok", "failed", "truncated", "limited"]
"""How the request a permit was granted for ended: answered in full ("ok"), cut off in the
middle of its stream ("truncated"), refused with a 429 ("limited"), or anything else, including
never sent ("failed")."""


@dataclass(frozen=True, slots=True)
class Cost:
    """What one request is expected to spend: requests, and the tokens in and out.

    The engine estimates `input_tokens` from the prompt and `output_tokens` from `max_tokens`
    (see `limits.tokens`); `release` settles both with the real usage.

    Under a cost cap (`Limits.max_cost`) `nano_usd` is the worst case in nano-dollars (those
    tokens priced at the tier the input falls in) and `priced` what a real usage costs, in the
    same unit, for `release` to settle it with.
    """

    requests: int = 1
    input_tokens: int = 0
    output_tokens: int = 0
    nano_usd: int = 0
    priced: Callable[[Usage], int] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if min(self.requests, self.input_tokens, self.output_tokens, self.nano_usd) < 0:
            raise ValueError(f"a cost cannot be negative: {self}")

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Permit:
    """A granted send, handed back to `release`. The caller reads only `cost`.

    `granted_at` (the limiter's clock) and `wave` (the generation of the concurrency cap it was
    granted under) are what the limiter needs to settle it without keeping state per permit;
    `lease` names the slot it holds in a limiter shared between processes.
    """

    cost: Cost
    granted_at: float = 0.0
    wave: int = 0
    lease: str = ""


@dataclass(frozen=True, slots=True)
class LimiterStats:
    """A snapshot of a limiter.

    `concurrency` is the cap in force (lowered while streams keep being cut off, or still
    growing in a slow start), at most `max_concurrency`, the configured one. `limits` are the
    budgets in force, by name and limit per window; `learned` those of them a provider
    announced or the 429s taught (the user set none of that kind, or a higher one: then
    `lowered` holds the user's), and `found` those the
    429s taught, where nothing was announced (see `limits.discovery`).
    `pause_remaining` is how long every send is still held by a 429 or an outage; `penalties`
    counts the 429s and outages reported. `waiting_on` names what the next send waits for
    ("pause", "concurrency" or a budget name), None when nothing waits; `queued` how many
    callers wait in `acquire` (in this process).
    """

    in_flight: int
    concurrency: int
    max_concurrency: int
    limits: Mapping[str, float]
    learned: Mapping[str, float]
    pause_remaining: float
    penalties: int
    waiting_on: str | None = None
    found: Mapping[str, float] = field(default_factory=dict)
    queued: int = 0  # callers waiting in `acquire` (of every engine that shares the limiter)
    # The user's own limits that a lower announced one replaced (those are in `learned`), by
    # name: a limit the user gives is a ceiling, never a floor.
    lowered: Mapping[str, float] = field(default_factory=dict)


@runtime_checkable
class Limiter(Protocol):
    """Concurrency and rate budgets shared by every caller that holds the limiter."""

    async def acquire(self, cost: Cost) -> Permit:
        """Wait until a concurrency slot is free and every budget can take `cost`; FIFO.

        Cancelling the wait takes nothing: a graceful stop ends the waits this way."""
        ...

    async def release(self, permit: Permit, usage: Usage | None, *, outcome: Ending = "ok") -> None:
        """Free the permit's slot and settle its estimate with the real `usage`.

        `usage=None` means the real usage is unknown: the reservation stands (the server may
        have counted it). `outcome` feeds the cool-down (a success ends it) and the
        concurrency cap (cut-off streams lower it, clean answers raise it back).
        """
        ...

    async def penalise(self, retry_after: float | None) -> None:
        """A 429 or an outage, for the whole key: hold every send.

        For `retry_after` seconds when the server said; otherwise for a cool-down that starts
        at a base delay and doubles with each wave of such signals, until a success.
        """
        ...

    async def observe(self, announced: Mapping[str, float]) -> None:
        """Limits a provider announced, by budget name ("rpm", "tpm"...): they replace an
        announced limit of the same name, and one the user set only where they are lower
        (the user's limit is a ceiling: a key allowed less than it would answer 429s)."""
        ...

    def statistics(self) -> LimiterStats: ...
