"""A graceful stop ends the waits for the limiter, takes nothing from it, and cancels nothing else."""

from __future__ import annotations

import asyncio

import pytest

from llmgather import Cost, Limits, LocalLimiter
from llmgather._stop import StoppableWaits
from tests.fakeclock import FakeClock, settle


def one_request_a_second(clock: FakeClock) -> LocalLimiter:
    return LocalLimiter(Limits(rpm=60, burst_seconds=1), clock=clock)


async def test_a_stop_ends_a_wait_for_the_limiter_and_the_wait_takes_nothing() -> None:
    clock = FakeClock()
    limiter = one_request_a_second(clock)
    waits = StoppableWaits(asyncio.Event())
    first = await waits.acquire(limiter, Cost())
    assert first is not None
    waiting = asyncio.ensure_future(waits.acquire(limiter, Cost()))
    await settle()
    assert not waiting.done() and limiter.statistics().waiting_on == "rpm"

    waits.stop.set()
    waits.halt()
    assert await asyncio.wait_for(waiting, 1) is None
    assert limiter.statistics().in_flight == 1  # only the first: the stopped wait took nothing
    assert limiter.statistics().waiting_on is None

    await limiter.release(first, None)
    await clock.advance(1.0)
    later = await asyncio.wait_for(limiter.acquire(Cost()), 1)  # the second's budget is unspent
    assert clock.sleeps == [1.0]  # only the one the stopped wait began: the later one waits not
    await limiter.release(later, None)


async def test_a_grant_that_comes_after_the_stop_is_given_back() -> None:
    limiter = one_request_a_second(FakeClock())
    stop = asyncio.Event()
    stop.set()
    assert await StoppableWaits(stop).acquire(limiter, Cost()) is None
    assert limiter.statistics().in_flight == 0


async def test_a_cancellation_from_elsewhere_is_not_absorbed() -> None:
    clock = FakeClock()
    limiter = one_request_a_second(clock)
    waits = StoppableWaits(asyncio.Event())
    assert await waits.acquire(limiter, Cost()) is not None
    waiting = asyncio.ensure_future(waits.acquire(limiter, Cost()))
    await settle()
    waiting.cancel()  # the caller's own cancellation, not a stop
    with pytest.raises(asyncio.CancelledError):
        await waiting
