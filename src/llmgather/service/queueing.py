"""The gateway's queue: requests wait here for the shared limits instead of failing, up to a
bound.

A request is admitted only if its projected wait (the requests queued ahead of it at the pace
the limits allow, plus any pause a 429 imposed) fits in the queue timeout; otherwise it is
refused at once with an honest Retry-After: the time until the queue will have drained enough
to admit it. An admitted request that is still unsent when the timeout passes is withdrawn
(never sent) and refused the same way. So a client sees a 429 only from this bound, never
from the upstream's rate limit.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from llmgather.limits import Cost, Limiter
from llmgather.limits.base import LimiterStats

# The per-minute budgets and the part of a request's cost each one counts.
_PER_MINUTE: dict[str, Callable[[Cost], int]] = {
    "rpm": lambda cost: cost.requests,
    "tpm": lambda cost: cost.tokens,
    "itpm": lambda cost: cost.input_tokens,
    "otpm": lambda cost: cost.output_tokens,
}


class QueueFull(Exception):
    """The request would wait longer than the queue timeout: answer 429 with `retry_after`."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"the gateway's queue is full: retry in {retry_after:.0f} s")
        self.retry_after = retry_after


class ClientGone(Exception):
    """The client disconnected before its request was sent: nothing went upstream."""


class GatewayQueue:
    def __init__(self, limiter: Limiter, timeout_s: float) -> None:
        self._limiter = limiter
        self.timeout_s = timeout_s
        self.waiting = 0  # admitted, not yet sent
        self.refused = 0

    def projected_wait(self, cost: Cost) -> float:
        """Seconds a new request of `cost` is expected to wait before it is sent."""
        stats = self._limiter.statistics()
        rate = _pace(stats, cost)
        queued = self.waiting / rate if rate is not None else 0.0
        return stats.pause_remaining + queued

    @contextmanager
    def admitted(self, cost: Cost) -> Iterator[None]:
        """Count the request as waiting, or raise QueueFull if it would wait too long."""
        projected = self.projected_wait(cost)
        if projected > self.timeout_s:
            self.refused += 1
            raise QueueFull(_retry_after(projected - self.timeout_s))
        self.waiting += 1
        try:
            yield
        finally:
            self.waiting -= 1

    async def until_sent(
        self, task: asyncio.Task[Any], sent: asyncio.Event, gone: asyncio.Future[Any], cost: Cost
    ) -> None:
        """Wait while the request is queued. Returns once it has been sent (or has ended);
        withdraws it (cancels `task`) and raises ClientGone when `gone` (the client's
        disconnection) comes first, or QueueFull when the queue timeout passes first."""
        sent_wait = asyncio.ensure_future(sent.wait())
        try:
            done, _ = await asyncio.wait(
                (sent_wait, gone, task), timeout=self.timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            sent_wait.cancel()
        if sent.is_set() or task in done:
            return
        task.cancel()
        if gone in done:
            raise ClientGone
        self.refused += 1
        raise QueueFull(_retry_after(max(1.0, self.projected_wait(cost) - self.timeout_s)))


def _pace(stats: LimiterStats, cost: Cost) -> float | None:
    """Requests of `cost` per second that the tightest per-minute limit allows, if any."""
    rates = []
    for name, share in _PER_MINUTE.items():
        limit = stats.limits.get(name)
        spent = share(cost)
        if limit and spent > 0:
            rates.append(limit / 60.0 / spent)
    return min(rates) if rates else None


def _retry_after(seconds: float) -> float:
    return float(max(1, math.ceil(seconds)))
