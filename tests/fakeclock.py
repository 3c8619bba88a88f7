"""A virtual clock for limiter, retry and engine tests: time moves only when the test says."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def settle(rounds: int = 50) -> None:
    """Let every ready task run until nothing changes (a few event-loop turns)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class FakeClock:
    """`io` tells the real I/O (a Redis call) as (calls under way, calls finished so far): the
    clock waits until none is under way and a whole `settle()` passed without one finishing,
    before it decides that every task waits for time."""

    def __init__(self, start: float = 1000.0) -> None:
        self.io: Callable[[], tuple[int, int]] = lambda: (0, 0)
        self.start = start
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    @property
    def elapsed(self) -> float:
        return self._now - self.start

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        if self._now + seconds == self._now:
            # Real time would move on; here the sleeper would wake to the same instant forever.
            raise AssertionError(f"a sleep of {seconds!r}s is too short to move the clock")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, self._seq, future))
        self._seq += 1
        await future

    async def settle(self) -> None:
        """`settle()` until no real I/O is under way and none finished meanwhile (what a
        finished call wakes has run)."""
        while True:
            before = self.io()
            await settle()
            after = self.io()
            if after == before and not after[0]:
                return
            if after[0]:
                await asyncio.sleep(0.0002)

    async def advance(self, seconds: float) -> None:
        target = self._now + seconds
        await self.settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            if self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)
                continue
            self._wake_next()
            await self.settle()
        self._now = target
        await self.settle()

    async def run(self, awaitable: Awaitable[T], *, limit: float = 1e6) -> T:
        """Drive `awaitable` to completion, jumping time to each next sleeper when idle."""
        task = asyncio.ensure_future(awaitable)
        while True:
            await self.settle()
            if task.done():
                return task.result()
            self._forget_cancelled()
            if not self._sleepers:
                raise AssertionError("deadlock: the task waits for something other than the clock")
            if self._sleepers[0][0] - self.start > limit:
                task.cancel()
                raise AssertionError(f"virtual time passed {limit}s")
            self._wake_next()

    def _forget_cancelled(self) -> None:
        """Drop sleeps cancelled before their time (a waiter woken early): time does not jump
        to a deadline nobody waits for."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)

    def _wake_next(self) -> None:
        deadline, _, future = heapq.heappop(self._sleepers)
        self._now = max(self._now, deadline)
        if not future.done():
            future.set_result(None)
