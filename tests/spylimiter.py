"""A `Limiter` that records what the engine tells it, over a real `LocalLimiter`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from llmgather._types import Usage
from llmgather.limits import Cost, Ending, LimiterStats, LocalLimiter, Permit


@dataclass(frozen=True, slots=True)
class Release:
    estimate: Cost  # what the permit reserved
    usage: Usage | None  # what the engine settled it with
    outcome: Ending
    concurrency: int  # the inner limiter's cap once the release was taken into account


class SpyLimiter:
    """Forwards every call to `inner` and keeps a record of it, in order."""

    def __init__(self, inner: LocalLimiter) -> None:
        self.inner = inner
        self.acquired: list[Cost] = []
        self.releases: list[Release] = []
        self.penalties: list[float | None] = []
        self.announced: list[Mapping[str, float]] = []

    async def acquire(self, cost: Cost) -> Permit:
        self.acquired.append(cost)
        return await self.inner.acquire(cost)

    async def release(self, permit: Permit, usage: Usage | None, *, outcome: Ending = "ok") -> None:
        await self.inner.release(permit, usage, outcome=outcome)
        cap = self.inner.statistics().concurrency
        self.releases.append(Release(permit.cost, usage, outcome, cap))

    async def penalise(self, retry_after: float | None) -> None:
        self.penalties.append(retry_after)
        await self.inner.penalise(retry_after)

    async def observe(self, announced: Mapping[str, float]) -> None:
        self.announced.append(dict(announced))
        await self.inner.observe(announced)

    def statistics(self) -> LimiterStats:
        return self.inner.statistics()
