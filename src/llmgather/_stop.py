"""A graceful stop that also ends the waits for the limiter and the waits before a retry.

A worker waiting in `Limiter.acquire` for a budget (the day's requests, say) may wait for hours;
once the caller asks to stop, that send is not going to happen, so the wait is cancelled. Only
a wait is ever cancelled, never a send: the requests on the wire finish.

The cancellation is aimed at the waiting task, not done by racing a second task per request:
the common case (the limiter grants at once) costs a set insertion, not a task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

from llmgather._types import Usage
from llmgather.limits.base import Cost, Limiter, Permit

NOTHING_USED: Final = Usage(0, 0)  # a permit given back unused settles its estimate at nothing


class StoppableWaits:
    """The waits of one `map`: `acquire` gives a Permit, or None once `stop` is set; `sleep`
    returns early once it is set."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self._waiting: set[asyncio.Task[object]] = set()
        self._stopped: set[asyncio.Task[object]] = set()

    async def acquire(self, limiter: Limiter, cost: Cost) -> Permit | None:
        task = asyncio.current_task()
        assert task is not None
        self._waiting.add(task)
        try:
            permit = await limiter.acquire(cost)
        except asyncio.CancelledError:
            if task not in self._stopped:
                raise  # someone else's cancellation: not ours to absorb
            self._stopped.discard(task)
            task.uncancel()
            return None
        finally:
            self._waiting.discard(task)
        if task in self._stopped:  # the limiter granted it despite the cancellation
            self._stopped.discard(task)
            task.uncancel()
            await limiter.release(permit, NOTHING_USED, outcome="failed")
            return None
        if self.stop.is_set():
            await limiter.release(permit, NOTHING_USED, outcome="failed")
            return None
        return permit

    async def sleep(self, sleep: Callable[[float], Awaitable[None]], delay: float) -> None:
        """`sleep(delay)` (a retry's wait), ended early once `stop` is set."""
        if self.stop.is_set():
            return
        task = asyncio.current_task()
        assert task is not None
        self._waiting.add(task)
        try:
            await sleep(delay)
        except asyncio.CancelledError:
            if task not in self._stopped:
                raise
        finally:
            self._waiting.discard(task)
        if task in self._stopped:
            self._stopped.discard(task)
            task.uncancel()

    def halt(self) -> None:
        """End every wait in progress; call once `stop` is set."""
        for task in self._waiting - self._stopped:
            self._stopped.add(task)
            task.cancel()
