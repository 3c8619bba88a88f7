"""The gateway's queue: requests wait here for the shared limits instead of failing, up to a
bound.

A request is admitted only if its projected wait (the requests queued ahead of it at the pace
the limits allow, plus any pause a 429 imposed) fits in the queue timeout; otherwise it is
refused at once with an honest Retry-After: the time until the queue will have drained enough
to admit it. An admitted request that is still unsent when the timeout passes is withdrawn
(never sent) and refused the same way. So a client sees a 429 only from this bound, never
from the upstream's rate limit.

The wait itself is the engine's (the limiter's queue): the request's handler awaits its call
directly, under an `asyncio.timeout` that its `Departure` lifts as it is sent. No task or
watcher per request: the gateway's overhead is per-request CPU.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from starlette.requests import Request

from llmgather.limits import Cost, Limiter
from llmgather.limits.base import LimiterStats
from llmgather.limits.budgets import KINDS, MINUTE

# The per-minute budgets and the part of a request's cost each one counts.
_PER_MINUTE: dict[str, Callable[[Cost], int]] = {
    kind.name: kind.reserve for kind in KINDS if kind.paced and kind.window == MINUTE
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
        """Seconds a new request of `cost` is expected to wait before it is sent: behind every
        caller queued in the shared limiter (the jobs' included), at the pace the tightest
        per-minute limit allows, after any pause a 429 imposed."""
        stats = self._limiter.statistics()
        rate = _pace(stats, cost)
        ahead = max(self.waiting, stats.queued)
        queued = ahead / rate if rate is not None else 0.0
        return stats.pause_remaining + queued

    @contextmanager
    def admitted(self, cost: Cost) -> Iterator[Ticket]:
        """Count the request as waiting until its ticket says it left, or raise QueueFull if
        it would wait too long."""
        projected = self.projected_wait(cost)
        if projected > self.timeout_s:
            self.refused += 1
            raise QueueFull(_retry_after(projected - self.timeout_s))
        self.waiting += 1
        ticket = Ticket(self)
        try:
            yield ticket
        finally:
            ticket.leave()

    def refused_late(self, cost: Cost) -> QueueFull:
        """The refusal of a request still unsent when the queue timeout passed (withdrawn)."""
        self.refused += 1
        return QueueFull(_retry_after(max(1.0, self.projected_wait(cost) - self.timeout_s)))


class Ticket:
    """A request's place in the queue, given up once: when it is sent, or when it ends."""

    __slots__ = ("_queue",)

    def __init__(self, queue: GatewayQueue) -> None:
        self._queue: GatewayQueue | None = queue

    def leave(self) -> None:
        if self._queue is not None:
            self._queue.waiting -= 1
            self._queue = None


class Departure:
    """The moment a queued request leaves for the upstream (its permit granted, its send
    about to start): the queue's deadline no longer applies, and a client that left while it
    waited is found out here, so its request is never sent.

    `deadline` is the `asyncio.timeout` of the queue wait, around the whole call; `ticket`
    its place in the queue's count, given up as it leaves. A request
    that waited less than `_UNNOTICED_S` is not checked: a client that leaves that early is
    no different from one leaving just after the send, and the check costs a trip through
    the server's receive channel.
    """

    _UNNOTICED_S = 0.005

    def __init__(self, request: Request, ticket: Ticket, deadline: asyncio.Timeout) -> None:
        self._request = request
        self._ticket = ticket
        self._deadline = deadline
        self._loop = asyncio.get_running_loop()
        self._since = self._loop.time()

    async def leave(self) -> None:
        """Called as the request is sent; raises ClientGone if its client has left."""
        self._ticket.leave()
        self._deadline.reschedule(None)
        waited = self._loop.time() - self._since
        if waited > self._UNNOTICED_S and await self._request.is_disconnected():
            raise ClientGone


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
