"""One `Engine.map`: a feeder admits requests within a window, workers attempt them, and a
failed attempt's retry waits in a task of its own, holding no worker and no slot.

    inputs ─▶ feed ─▶ work queue ─▶ N workers ─▶ attempt ─▶ results
                ▲                      │ RetryIn
                │ window               └─▶ wait_then_requeue (its own task in the group)
                └── released when the consumer takes a Result (or a stop drops an item)

`stop` ends the feeding and every wait (for the limiter, before a retry); what is on the wire
finishes. Every task belongs to the pipeline's TaskGroup.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable

from llmgather._attempt import Attempted, InFlight, RetryIn, Unsent
from llmgather._stop import StoppableWaits
from llmgather._types import Request, Result

Admit = Callable[[Request, int], InFlight]
Attempt = Callable[[InFlight, StoppableWaits], Awaitable[Attempted]]
Sleep = Callable[[float], Awaitable[None]]


class Pipeline:
    """Runs the requests of one map into `results`, a Result at a time, then None."""

    def __init__(
        self,
        requests: Iterable[Request] | AsyncIterable[Request],
        results: asyncio.Queue[Result | None],
        *,
        workers: int,
        window: int,
        stop: asyncio.Event,
        admit: Admit,
        attempt: Attempt,
        wait_retry: Sleep,
    ) -> None:
        """`admit` makes a request the engine's (counted as submitted), `attempt` sends it once,
        `wait_retry` waits before a retry."""
        self._requests = requests
        self._results = results
        self._workers = workers
        self.admitted = asyncio.Semaphore(window)  # the consumer releases one per Result
        self._stop = stop
        self._admit = admit
        self._attempt = attempt
        self._wait_retry = wait_retry
        self._waits = StoppableWaits(stop)
        self._work: asyncio.Queue[InFlight | None] = asyncio.Queue()
        self._fed = 0
        self._finished = 0
        self._feeding = True
        self._all_done = asyncio.Event()
        self._input_error: Exception | None = None

    async def run(self) -> None:
        """Until every admitted request has its Result (or was dropped by a stop); re-raises a
        failure of the input iterable once what was sent has finished."""
        try:
            async with asyncio.TaskGroup() as group:
                halting = group.create_task(self._halt_on_stop(group.create_task(self._feed())))
                for _ in range(self._workers):
                    group.create_task(self._work_on(group))
                await self._all_done.wait()
                halting.cancel()
                for _ in range(self._workers):
                    self._work.put_nowait(None)
            if self._input_error is not None:
                raise self._input_error
        except BaseExceptionGroup as group_error:
            # One failure (the input iterable raising, say) is re-raised as itself.
            if len(group_error.exceptions) == 1:
                raise group_error.exceptions[0] from None
            raise
        finally:
            self._results.put_nowait(None)

    async def _feed(self) -> None:
        admitted, stop = self.admitted, self._stop
        try:
            async for request in _aiter(self._requests):
                await admitted.acquire()
                if stop.is_set():
                    admitted.release()
                    break
                self._work.put_nowait(self._admit(request, self._fed))
                self._fed += 1
        except Exception as error:  # finish what was sent, then re-raise
            self._input_error = error
        finally:  # also when the stop cancelled it in the middle of waiting for the input
            self._feeding = False
            if self._finished == self._fed:
                self._all_done.set()

    async def _halt_on_stop(self, feeder: asyncio.Task[None]) -> None:
        """Once `stop` is set: read no more input, even if it is waiting for its next item,
        and send nothing more, even what waits for the limiter or for its retry."""
        await self._stop.wait()
        feeder.cancel()
        self._waits.halt()

    async def _work_on(self, group: asyncio.TaskGroup) -> None:
        work, stop, waits = self._work, self._stop, self._waits
        while (item := await work.get()) is not None:
            if stop.is_set():
                self._resolve(None)
                continue
            outcome = await self._attempt(item, waits)
            if isinstance(outcome, Result):
                self._resolve(outcome)
            elif isinstance(outcome, RetryIn):
                group.create_task(self._wait_then_requeue(item, outcome.delay))
            else:
                assert isinstance(outcome, Unsent)
                self._resolve(None)

    async def _wait_then_requeue(self, item: InFlight, delay: float) -> None:
        await self._waits.sleep(self._wait_retry, delay)
        self._work.put_nowait(item)  # after a stop, a worker drops it unsent

    def _resolve(self, result: Result | None) -> None:
        """Count one item out: with its Result, or with none if a stop kept it unsent."""
        self._finished += 1
        if result is None:
            self.admitted.release()  # the consumer releases a slot per Result it takes
        else:
            self._results.put_nowait(result)
        if not self._feeding and self._finished == self._fed:
            self._all_done.set()


async def _aiter(items: Iterable[Request] | AsyncIterable[Request]) -> AsyncIterator[Request]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
