"""What is particular to `LocalLimiter` and its parts (the contract is in
test_limiter_contract.py): exact waits with no polling, the day's sliding window, the budgets."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from llmgather import Cost, Limits, LocalLimiter, Usage
from llmgather.limits.budgets import DAY, KINDS
from llmgather.limits.window import SlidingWindow
from tests.fakeclock import FakeClock, settle


async def run_all(limiter: LocalLimiter, clock: FakeClock, costs: list[Cost]) -> list[float]:
    times: list[float] = []

    async def one(cost: Cost) -> None:
        permit = await limiter.acquire(cost)
        times.append(round(clock.elapsed, 6))
        await limiter.release(permit, None)

    async def all_of_them() -> None:
        async with asyncio.TaskGroup() as group:
            for cost in costs:
                group.create_task(one(cost))

    await clock.run(all_of_them())
    return times


async def test_only_the_head_waiter_sleeps_and_only_as_long_as_needed() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(Limits(rpm=60, burst_seconds=1), clock=clock)
    await run_all(limiter, clock, [Cost()] * 4)
    assert clock.sleeps == [1.0, 1.0, 1.0]  # one exact sleep per wait: no polling


async def test_a_waiter_for_a_slot_sleeps_not_at_all() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(Limits(concurrency=1), clock=clock)
    first = await limiter.acquire()
    second = asyncio.ensure_future(limiter.acquire())
    await settle()
    assert limiter.statistics().waiting_on == "concurrency"
    await limiter.release(first, None)
    await settle()
    assert second.done() and clock.sleeps == []


async def test_a_settlement_wakes_the_head_waiter_early() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(Limits(tpm=6000, burst_seconds=1), clock=clock)  # 100 tokens/s
    permit = await limiter.acquire(Cost(input_tokens=100))
    waiter = asyncio.ensure_future(limiter.acquire(Cost(input_tokens=50)))
    await clock.advance(0.1)
    assert not waiter.done() and limiter.statistics().waiting_on == "tpm"
    await limiter.release(permit, Usage(40, 0))
    await settle()
    assert waiter.done() and clock.elapsed == pytest.approx(0.1)
    assert clock.sleeps == [0.5]  # the one timer, cancelled by the settlement


async def test_an_unsettled_release_does_not_wake_the_head_waiter() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(Limits(rpm=60, burst_seconds=1), clock=clock)
    permit = await limiter.acquire()
    waiter = asyncio.ensure_future(limiter.acquire())
    await settle()
    await limiter.release(permit, Usage(1, 1))  # requests do not settle: nothing to wake for
    await clock.advance(1.0)
    assert waiter.done() and clock.sleeps == [1.0]


async def test_a_clock_far_from_zero_does_not_trap_a_waiter_in_round_off() -> None:
    # At t = 1000.3 a refill can leave a bucket 1e-13 short; a sleep of 1e-13 s does not move
    # the clock, and a limiter that sleeps it finds itself short again, forever.
    clock = FakeClock(start=1000.0)
    limiter = LocalLimiter(Limits(rpm=600, burst_seconds=0.5), clock=clock)

    async def one() -> None:
        permit = await limiter.acquire(Cost())
        await clock.sleep(0.05)
        await limiter.release(permit, None)

    async def all_of_them() -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(40):
                group.create_task(one())

    await clock.run(all_of_them())
    assert clock.elapsed == pytest.approx(3.55)  # 5 at once, then 10 a second, + 0.05


async def test_an_announced_limit_wakes_a_waiter_it_lets_through() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(Limits(), clock=clock)
    await limiter.observe({"rpm": 60})
    await limiter.release(await limiter.acquire(), None)
    waiter = asyncio.ensure_future(limiter.acquire())
    await clock.advance(0.5)
    await limiter.observe({"rpm": 6000})  # burst 50: the waiter goes at once
    await settle()
    assert waiter.done() and clock.elapsed == 0.5


def test_the_cool_down_must_be_positive_and_within_its_cap() -> None:
    with pytest.raises(ValueError, match="cool_down"):
        LocalLimiter(Limits(), cool_down=0)
    with pytest.raises(ValueError, match="cool_down"):
        LocalLimiter(Limits(), cool_down=10, max_cool_down=5)


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="rpm"):
        Limits(rpm=0)
    with pytest.raises(ValueError, match="rpd"):
        Limits(rpd=-1)
    with pytest.raises(ValueError, match="concurrency"):
        Limits(concurrency=0)


def test_every_kind_of_budget_is_a_field_of_limits() -> None:
    fields = {field.name for field in dataclasses.fields(Limits)}
    assert [kind.name for kind in KINDS] == ["rpm", "rpd", "tpm", "itpm", "otpm", "max_cost"]
    assert {kind.name for kind in KINDS} <= fields


def test_a_budget_counts_its_part_of_the_cost_and_settles_to_the_usage() -> None:
    cost = Cost(
        requests=1, input_tokens=30, output_tokens=200, nano_usd=900,
        priced=lambda usage: 3 * usage.output_tokens,
    )  # fmt: skip
    usage = Usage(28, 12)
    by_name = {kind.name: kind for kind in KINDS}
    assert {n: k.reserve(cost) for n, k in by_name.items()} == {
        "rpm": 1,
        "rpd": 1,
        "tpm": 230,
        "itpm": 30,
        "otpm": 200,
        "max_cost": 900,
    }
    assert {n: k.settle(cost, usage) for n, k in by_name.items()} == {
        "rpm": 1,
        "rpd": 1,
        "tpm": 40,
        "itpm": 28,
        "otpm": 12,
        "max_cost": 36,
    }
    assert [k.paced for k in KINDS] == [True, False, True, True, True, False]


# -- the sliding window ------------------------------------------------------------------------


def test_a_window_lets_its_capacity_out_at_once_and_frees_it_a_window_later() -> None:
    window = SlidingWindow(capacity=3, window=DAY)
    for _ in range(3):
        assert window.wait_time(0.0, 1) == 0.0
        window.take(0.0, 1)
    assert window.wait_time(0.0, 1) == DAY
    assert window.wait_time(DAY - 1, 1) == 1.0
    assert window.wait_time(DAY, 3) == 0.0


def test_a_window_frees_a_unit_late_by_at_most_one_slot_never_early() -> None:
    window = SlidingWindow(capacity=2, window=DAY)  # slots of 60 s
    window.take(0.0, 1)
    window.take(59.0, 1)  # the same slot: both leave a day after the later one
    assert window.wait_time(DAY, 1) == 59.0
    window2 = SlidingWindow(capacity=2, window=DAY)
    window2.take(0.0, 1)
    window2.take(60.0, 1)  # the next slot: the first leaves on time
    assert window2.wait_time(DAY, 1) == 0.0


def test_a_windows_memory_is_bounded_by_its_slots() -> None:
    window = SlidingWindow(capacity=1_000_000, window=DAY)
    for second in range(0, 2 * int(DAY), 7):
        window.take(float(second), 1)
    assert len(window._slots) <= 1441


def test_a_window_gives_back_to_the_slot_it_took_from() -> None:
    window = SlidingWindow(capacity=100, window=DAY)
    window.take(0.0, 80)
    window.take(3600.0, 20)
    window.give_back(3600.0, 50, taken_at=0.0)
    assert window.used(3600.0) == 50
    assert window.wait_time(3600.0, 50) == 0.0
    window.give_back(DAY + 1, 10, taken_at=0.0)  # that slot has left: nothing to give back
    assert window.used(DAY + 1) == 20


def test_a_take_larger_than_the_window_goes_when_it_is_empty() -> None:
    window = SlidingWindow(capacity=10, window=60, slots=60)
    assert window.wait_time(0.0, 30) == 0.0
    window.take(0.0, 30)
    assert window.wait_time(1.0, 1) == 59.0
