"""What processes sharing a Redis limiter share beyond the budgets, on the fake clock: two
`RedisLimiter`s on one key stand for two processes (each has its own queue, cap and search; only
Redis joins them). The budgets themselves are the contract suite's (`test_limiter_contract.py`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from llmgather import Cost, Limits
from llmgather.limits.redis import RedisLimiter
from tests.fakeclock import FakeClock


@pytest.fixture
async def pair(redis_url: str) -> AsyncIterator[tuple[FakeClock, RedisLimiter, RedisLimiter]]:
    clock = FakeClock()
    key = uuid.uuid4().hex
    a, b = (RedisLimiter(redis_url, Limits(concurrency=4), key=key, clock=clock) for _ in "ab")
    clock.io = lambda: (a._io + b._io, a._io_done + b._io_done)
    yield clock, a, b
    await a.aclose()
    await b.aclose()


async def test_a_429_in_one_process_pauses_the_other(
    pair: tuple[FakeClock, RedisLimiter, RedisLimiter],
) -> None:
    clock, a, b = pair
    await a.penalise(2.0)
    await clock.run(b.acquire(Cost()))
    assert clock.elapsed == 2.0
    assert b.statistics().penalties == 1


async def test_limits_one_process_learns_pace_the_other(
    pair: tuple[FakeClock, RedisLimiter, RedisLimiter],
) -> None:
    clock, a, b = pair
    await a.observe({"rpm": 60, "rpm.remaining": 59})  # one a second, one spent already
    for expected in (1.0, 2.0):
        await b.release(await clock.run(b.acquire(Cost())), None)
        assert clock.elapsed == expected
    assert b.statistics().learned == {"rpm": 60}


async def test_the_pace_one_process_429s_taught_paces_the_other(
    pair: tuple[FakeClock, RedisLimiter, RedisLimiter],
) -> None:
    clock, a, b = pair
    permits = [await a.acquire(Cost()) for _ in range(4)]
    await clock.advance(1.0)
    await a.release(permits[0], None, outcome="limited")  # 4 sent in 1 s: a share of it
    found = a.statistics().found
    assert set(found) == {"rpm"} and found["rpm"] < 240
    await clock.run(b.acquire(Cost()))
    assert b.statistics().learned == {"rpm": pytest.approx(found["rpm"])}
    # The 429 emptied the shared budget: b waits for a request's worth.
    assert clock.elapsed == pytest.approx(1.0 + 60.0 / found["rpm"])


async def test_the_concurrency_cap_counts_both_processes(
    pair: tuple[FakeClock, RedisLimiter, RedisLimiter],
) -> None:
    clock, a, b = pair
    held = [await a.acquire(Cost()) for _ in range(3)] + [await b.acquire(Cost())]
    waiter = asyncio.ensure_future(b.acquire(Cost()))
    await clock.advance(1.0)
    assert not waiter.done() and b.statistics().in_flight == 4  # both processes' slots
    await a.release(held[0], None)  # another process frees a slot: b sees it at its next poll
    await clock.advance(0.05)
    assert waiter.done()
