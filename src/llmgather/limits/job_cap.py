"""A job's own cost cap beside rate limits shared through Redis.

`run --limiter redis://… --max-cost X` shares the key's rate limits with every process on it,
but the cap is the job's: what this job spends over its runs, counted in its store (the spend
ledger), not what everything on the key has spent. So the cap is kept in this process, by a
`LocalLimiter` that holds the cap alone, and the rates by the shared limiter:

    acquire  the cap's reservation first (it waits while reservations may give money back,
             and refuses once none can), then the shared limiter's permit; a wait for the
             second that ends (a stop) gives the first back unspent
    release  both, settled with the same usage

The two steps are not one atomic step, and need not be: the cap is this process's alone.
(`worker --max-cost` and `serve --max-cost` keep theirs in Redis: there the cap is what the
workers, or the service's replicas, spend together.)
"""

from __future__ import annotations

from collections.abc import Mapping

from llmgather._config import Limits
from llmgather._stop import NOTHING_USED
from llmgather._types import Usage
from llmgather.limits.base import Cost, Ending, Limiter, LimiterStats, Permit
from llmgather.limits.budgets import CAP
from llmgather.limits.local import LocalLimiter

__all__ = ["JobCap"]

# The cap's own limiter holds no slot of its own: the shared limiter's concurrency is the one.
_UNBOUNDED = 1_000_000


class JobCap:
    """`shared` (a limiter given `limits` less the cost cap) with `limits.max_cost` kept here;
    `limits` are the whole of them, as a link reads a limiter's."""

    def __init__(self, shared: Limiter, limits: Limits) -> None:
        assert limits.max_cost is not None
        self.limits = limits
        self._shared = shared
        self.cap = LocalLimiter(
            Limits(max_cost=limits.max_cost, concurrency=_UNBOUNDED), discover=False
        )
        self._cap_permits: dict[int, Permit] = {}  # by id of the shared permit

    def spent_before(self, nano_usd: int) -> None:
        """What the job spent in its earlier runs (see `LocalLimiter.spent_before`)."""
        self.cap.spent_before(nano_usd)

    async def acquire(self, cost: Cost) -> Permit:
        reserved = await self.cap.acquire(cost)
        try:
            permit = await self._shared.acquire(cost)
        except BaseException:
            await self.cap.release(reserved, NOTHING_USED, outcome="failed")
            raise
        self._cap_permits[id(permit)] = reserved
        return permit

    async def release(self, permit: Permit, usage: Usage | None, *, outcome: Ending = "ok") -> None:
        reserved = self._cap_permits.pop(id(permit))
        try:
            await self._shared.release(permit, usage, outcome=outcome)
        finally:
            await self.cap.release(reserved, usage, outcome=outcome)

    async def penalise(self, retry_after: float | None) -> None:
        await self._shared.penalise(retry_after)

    async def observe(self, announced: Mapping[str, float]) -> None:
        await self._shared.observe(announced)

    def statistics(self) -> LimiterStats:
        shared = self._shared.statistics()
        cap = self.cap.statistics()
        limits = {**shared.limits, CAP: cap.limits[CAP]}
        waiting_on = shared.waiting_on or cap.waiting_on
        return LimiterStats(
            in_flight=shared.in_flight,
            concurrency=shared.concurrency,
            max_concurrency=shared.max_concurrency,
            limits=limits,
            learned=shared.learned,
            pause_remaining=shared.pause_remaining,
            penalties=shared.penalties,
            waiting_on=waiting_on,
            found=shared.found,
            queued=shared.queued + cap.queued,
            lowered=shared.lowered,
        )
