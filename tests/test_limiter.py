"""The limiter on a fake clock: exact times, FIFO order, no polling."""

from __future__ import annotations

import asyncio

import pytest

from llmgather import Limiter, Limits
from tests.fakeclock import FakeClock, settle


async def acquire_times(limiter: Limiter, clock: FakeClock, tokens: list[int]) -> list[float]:
    times: list[float] = []

    async def one(amount: int) -> None:
        permit = await limiter.acquire(amount)
        times.append(round(clock.elapsed, 6))
        limiter.release(permit, used_tokens=None)

    async def all_of_them() -> None:
        async with asyncio.TaskGroup() as group:
            for amount in tokens:
                group.create_task(one(amount))

    await clock.run(all_of_them())
    return times


async def test_requests_per_minute_paces_sends_exactly() -> None:
    clock = FakeClock()
    limiter = Limiter(Limits(rpm=60, burst_seconds=1), clock=clock)
    times = await acquire_times(limiter, clock, [1] * 5)
    assert times == [0.0, 1.0, 2.0, 3.0, 4.0]


async def test_burst_allows_a_second_of_budget_at_once() -> None:
    clock = FakeClock()
    limiter = Limiter(Limits(rpm=600, burst_seconds=0.5), clock=clock)  # 10/s, 5 at once
    times = await acquire_times(limiter, clock, [1] * 7)
    assert times == [0.0] * 5 + [0.1, 0.2]


async def test_only_the_head_waiter_sleeps_and_only_as_long_as_needed() -> None:
    clock = FakeClock()
    limiter = Limiter(Limits(rpm=60, burst_seconds=1), clock=clock)
    await acquire_times(limiter, clock, [1] * 4)
    assert clock.sleeps == [1.0, 1.0, 1.0]  # one exact sleep per wait: no polling


async def test_tokens_per_minute_counts_the_estimate() -> None:
    clock = FakeClock()
    limiter = Limiter(Limits(tpm=6000, burst_seconds=1), clock=clock)  # 100 tokens/s
    times = await acquire_times(limiter, clock, [100, 100, 50, 100])
    assert times == [0.0, 1.0, 1.5, 2.5]


async def test_a_request_larger_than_the_burst_goes_when_the_bucket_is_full() -> None:
    clock = FakeClock()
    limiter = Limiter(Limits(tpm=600, burst_seconds=1), clock=clock)  # 10 tokens/s, burst 10
    times = await acquire_times(limiter, clock, [30, 30])
    # the first drives the bucket 20 into debt; it needs 30s to be full again
    assert times == [0.0, 3.0]


async def test_release_settles_the_estimate_with_real_usage() -> None:
    clock = FakeClock()
    limiter = Limiter(Limits(tpm=6000, burst_seconds=1), clock=clock)
    permit = await limiter.acquire(100)
    limiter.release(permit, used_tokens=40)  # 60 tokens come back at once
    waiter = asyncio.ensure_future(limiter.acquire(60))
    await settle()
    assert waiter.done()
    limiter.release(waiter.result(), used_tokens=60)


async def test_concurrency_cap_holds_the_next_send_until_a_release() -> None:
    clock = FakeClock()
    limiter = Limiter(Limits(concurrency=2), clock=clock)
    first = await limiter.acquire(1)
    await limiter.acquire(1)
    third = asyncio.ensure_future(limiter.acquire(1))
    await settle()
    assert not third.done() and limiter.in_flight == 2
    limiter.release(first, used_tokens=None)
    await settle()
    assert third.done() and limiter.in_flight == 2


async def test_pause_holds_every_new_send_for_the_retry_after_period() -> None:
    clock = FakeClock()
    limiter = Limiter(Limits(rpm=6000), clock=clock)
    limiter.pause(3.0)
    times = await acquire_times(limiter, clock, [1, 1])
    assert times == [3.0, 3.0]


async def test_a_pause_during_a_wait_extends_it() -> None:
    clock = FakeClock()
    limiter = Limiter(Limits(rpm=60, burst_seconds=1), clock=clock)
    limiter.release(await limiter.acquire(1), used_tokens=None)
    waiter = asyncio.ensure_future(limiter.acquire(1))
    await clock.advance(0.5)
    limiter.pause(2.0)  # until t = 2.5
    await clock.advance(1.0)
    assert not waiter.done()
    await clock.advance(1.0)
    assert waiter.done() and clock.elapsed == pytest.approx(2.5)


async def test_waiters_are_served_first_come_first_served() -> None:
    clock = FakeClock()
    limiter = Limiter(Limits(rpm=60, burst_seconds=1), clock=clock)
    order: list[int] = []

    async def one(n: int) -> None:
        await asyncio.sleep(0)
        limiter.release(await limiter.acquire(1), used_tokens=None)
        order.append(n)

    async def all_of_them() -> None:
        async with asyncio.TaskGroup() as group:
            for n in range(5):
                group.create_task(one(n))

    await clock.run(all_of_them())
    assert order == [0, 1, 2, 3, 4]


async def test_cancelled_waiter_gives_its_slot_back() -> None:
    clock = FakeClock()
    limiter = Limiter(Limits(concurrency=1, rpm=60, burst_seconds=1), clock=clock)
    limiter.release(await limiter.acquire(1), used_tokens=None)
    waiter = asyncio.ensure_future(limiter.acquire(1))
    await settle()
    waiter.cancel()
    await settle()
    assert limiter.in_flight == 0
    late = asyncio.ensure_future(limiter.acquire(1))
    await clock.advance(1.0)
    assert late.done()


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="rpm"):
        Limits(rpm=0)
    with pytest.raises(ValueError, match="concurrency"):
        Limits(concurrency=0)


async def test_announced_limits_pace_a_client_told_nothing() -> None:
    clock = FakeClock()
    limiter = Limiter(Limits(burst_seconds=1), clock=clock)
    limiter.adopt(rpm=60, tpm=None)
    times = await acquire_times(limiter, clock, [1] * 3)
    assert times == [0.0, 1.0, 2.0]


async def test_limits_the_user_set_win_over_announced_ones() -> None:
    clock = FakeClock()
    limiter = Limiter(Limits(rpm=120, burst_seconds=1), clock=clock)  # 2 a second
    limiter.adopt(rpm=6000, tpm=600)
    times = await acquire_times(limiter, clock, [10] * 4)
    # rpm stays the user's 2/s; the announced 600 tpm (10/s, burst 10) applies as none was set
    assert times == [0.0, 1.0, 2.0, 3.0]


async def test_a_429_without_a_hint_cools_everyone_down_doubling_per_wave() -> None:
    clock = FakeClock()
    limiter = Limiter(Limits(), clock=clock)
    limiter.back_off(0.5, 4.0)
    limiter.back_off(0.5, 4.0)  # the same wave: counted once
    assert await acquire_times(limiter, clock, [1]) == [0.5]
    for expected in (1.0, 2.0, 4.0, 4.0):  # each wave after the last pause ended doubles it
        start = clock.elapsed
        limiter.back_off(0.5, 4.0)
        (sent,) = await acquire_times(limiter, clock, [1])
        assert sent - start == pytest.approx(expected)
    limiter.succeeded()
    start = clock.elapsed
    limiter.back_off(0.5, 4.0)
    (sent,) = await acquire_times(limiter, clock, [1])
    assert sent - start == pytest.approx(0.5)
