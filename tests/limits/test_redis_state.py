"""What the Redis limiter leaves in Redis, against a real redis-server: a pace 429s taught that
a later run is not held to for ever, a penalty counted once when its reply is lost and the
call runs again, and a grant given back before `aclose` lets the connection go."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from llmgather import Cost, Limits
from llmgather.limits.redis import FOUND_PACE_HOLDS_S, RedisLimiter
from llmgather.limits.redis_scripts import PENALISE
from tests.fakeclock import FakeClock
from tests.limits.redisproxy import RedisRelay


@pytest.fixture
async def direct(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.from_url(redis_url)
    yield client
    await client.aclose()


async def learn_a_pace(clock: FakeClock, limiter: RedisLimiter) -> float:
    """4 sent in 1 s, then a 429: the search paces at a share of that; the pace found."""
    permits = [await limiter.acquire(Cost()) for _ in range(4)]
    await clock.advance(1.0)
    await limiter.release(permits[0], None, outcome="limited")
    for permit in permits[1:]:
        await limiter.release(permit, None)
    found = limiter.statistics().found
    assert set(found) == {"rpm"} and found["rpm"] < 240  # slower than it sent
    return found["rpm"]


async def test_a_pace_429s_taught_does_not_hold_a_later_run_for_ever(redis_url: str) -> None:
    clock = FakeClock()
    key = uuid.uuid4().hex
    first = RedisLimiter(redis_url, Limits(concurrency=4), key=key, clock=clock)
    clock.io = lambda: (first._io, first._io_done)
    pace = await learn_a_pace(clock, first)
    await first.aclose()

    later = RedisLimiter(redis_url, Limits(concurrency=4), key=key, clock=clock)
    clock.io = lambda: (later._io, later._io_done)
    try:
        await later.release(await clock.run(later.acquire(Cost())), None)
        # Soon after, the pace still holds: the key's budget is the same one.
        assert later.statistics().learned == {"rpm": pytest.approx(pace)}
        await clock.advance(FOUND_PACE_HOLDS_S)
        started = clock.elapsed
        for _ in range(8):  # at that pace, these would wait
            await later.release(await clock.run(later.acquire(Cost())), None)
        assert clock.elapsed == started
        stats = later.statistics()
        assert stats.learned == {} and stats.found == {} and stats.limits == {}
    finally:
        await later.aclose()


async def test_the_process_that_found_a_pace_keeps_it_while_it_runs(redis_url: str) -> None:
    clock = FakeClock()
    key = uuid.uuid4().hex
    finder, other = (
        RedisLimiter(redis_url, Limits(concurrency=4), key=key, clock=clock) for _ in "ab"
    )
    clock.io = lambda: (finder._io + other._io, finder._io_done + other._io_done)
    try:
        pace = await learn_a_pace(clock, finder)
        for _ in range(int(3 * FOUND_PACE_HOLDS_S / 10)):  # an answer every 10 s
            await clock.advance(10.0)
            await finder.release(await clock.run(finder.acquire(Cost())), None)
        await clock.run(other.acquire(Cost()))
        assert other.statistics().learned == {"rpm": pytest.approx(pace)}
    finally:
        await finder.aclose()
        await other.aclose()


async def test_a_penalty_whose_reply_was_lost_is_counted_once(redis_url: str) -> None:
    async with RedisRelay(redis_url) as relay:
        limiter = RedisLimiter(relay.url, Limits(concurrency=4), key=uuid.uuid4().hex)
        try:
            await limiter.check()
            relay.lose_reply_to(hashlib.sha1(PENALISE.encode()).hexdigest().encode())
            await limiter.penalise(None)  # runs, its reply is lost, the call runs again
            assert relay.lost == 1
            assert limiter.statistics().penalties == 1
        finally:
            await limiter.aclose()


async def test_aclose_gives_back_a_grant_that_raced_a_cancelled_wait(
    redis_url: str, direct: redis.asyncio.Redis
) -> None:
    key = uuid.uuid4().hex
    leases = f"llmgather:{{{key}}}:leases"
    async with RedisRelay(redis_url) as relay:
        limiter = RedisLimiter(relay.url, Limits(concurrency=4), key=key)
        await limiter.release(await limiter.acquire(Cost()), None)  # the scripts loaded
        relay.hold()
        waiting = asyncio.ensure_future(limiter.acquire(Cost()))
        for _ in range(500):  # granted in Redis, the reply held back
            if await direct.zcard(leases):
                break
            await asyncio.sleep(0.01)
        assert await direct.zcard(leases) == 1
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        closing = asyncio.ensure_future(limiter.aclose())
        for _ in range(5):
            await asyncio.sleep(0)
        relay.let_go()
        await closing
    assert await direct.zcard(leases) == 0  # the slot is free now, not when the lease expires
