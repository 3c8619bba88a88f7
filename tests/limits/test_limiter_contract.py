"""The `Limiter` protocol's contract, written once and run against every implementation.

Each test builds its limiter through the `make_limiter` fixture (limits, a fake clock, and the
cool-down options), so a new implementation (the Redis one) joins by adding a parameter. Times
are exact: the fake clock moves only when every task waits for it.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from llmgather import (
    BudgetExhaustedError,
    Cost,
    Limiter,
    LimiterStats,
    Limits,
    LocalLimiter,
    Request,
    Usage,
)
from llmgather._engine import Engine
from llmgather._types import Completion, Outcome
from llmgather.limits.redis import RedisLimiter
from tests.fakeclock import FakeClock
from tests.limits.workers import drive, noise

MakeLimiter = Callable[..., Limiter]


@pytest.fixture(params=["local", "redis"])
async def make_limiter(
    request: pytest.FixtureRequest, redis_url: str
) -> AsyncIterator[MakeLimiter]:
    """A factory: `make_limiter(limits, clock, cool_down=..., max_cool_down=...)`.

    The Redis limiter runs its scripts in a real redis-server, on the fake clock's time (each
    test on keys of its own)."""
    made: list[RedisLimiter] = []

    def local(limits: Limits, clock: FakeClock, **options: Any) -> Limiter:
        return LocalLimiter(limits, clock=clock, **options)

    def shared(limits: Limits, clock: FakeClock, **options: Any) -> Limiter:
        limiter = RedisLimiter(redis_url, limits, key=uuid.uuid4().hex, clock=clock, **options)
        clock.io = lambda: (limiter._io, limiter._io_done)
        made.append(limiter)
        return limiter

    yield {"local": local, "redis": shared}[request.param]
    for limiter in made:
        await limiter.aclose()


def requests_only(n: int) -> list[Cost]:
    return [Cost()] * n


async def acquire_times(
    limiter: Limiter, clock: FakeClock, costs: list[Cost], usage: Usage | None = None
) -> list[float]:
    """When each of `costs`, asked for at once and in order, was granted (each released at
    once with `usage`)."""
    times: list[float] = []

    async def one(cost: Cost) -> None:
        permit = await limiter.acquire(cost)
        times.append(round(clock.elapsed, 6))
        await limiter.release(permit, usage)

    async def all_of_them() -> None:
        async with asyncio.TaskGroup() as group:
            for cost in costs:
                group.create_task(one(cost))

    await clock.run(all_of_them())
    return times


def test_both_limiters_implement_the_protocol() -> None:
    assert isinstance(LocalLimiter(Limits()), Limiter)
    assert isinstance(RedisLimiter("redis://127.0.0.1:1/0", Limits()), Limiter)


# -- the concurrency cap ---------------------------------------------------------------------


async def test_the_concurrency_cap_holds_the_next_send_until_a_release(
    make_limiter: MakeLimiter,
) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(concurrency=2), clock)
    first = await limiter.acquire(Cost())
    await limiter.acquire(Cost())
    third = asyncio.ensure_future(limiter.acquire(Cost()))
    await clock.settle()
    assert not third.done() and limiter.statistics().in_flight == 2
    await limiter.release(first, None)
    await clock.settle()
    assert third.done() and limiter.statistics().in_flight == 2


async def test_waiters_are_served_first_come_first_served(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(concurrency=1, rpm=60, burst_seconds=1), clock)
    order: list[int] = []

    async def one(n: int) -> None:
        await asyncio.sleep(0)
        permit = await limiter.acquire(Cost())
        order.append(n)
        await clock.sleep(0.25)
        await limiter.release(permit, None)

    async def all_of_them() -> None:
        async with asyncio.TaskGroup() as group:
            for n in range(5):
                group.create_task(one(n))

    await clock.run(all_of_them())
    assert order == [0, 1, 2, 3, 4]


async def test_a_cancelled_waiter_takes_nothing(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(concurrency=1, rpm=60, burst_seconds=1), clock)
    await limiter.release(await limiter.acquire(Cost()), None)
    waiter = asyncio.ensure_future(limiter.acquire(Cost()))
    await clock.settle()
    waiter.cancel()
    await clock.settle()
    assert limiter.statistics().in_flight == 0
    late = asyncio.ensure_future(limiter.acquire(Cost()))
    await clock.advance(1.0)
    assert late.done()


# -- budgets -----------------------------------------------------------------------------------


async def test_requests_per_minute_paces_sends_exactly(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(rpm=60, burst_seconds=1), clock)
    assert await acquire_times(limiter, clock, requests_only(5)) == [0.0, 1.0, 2.0, 3.0, 4.0]


async def test_a_minute_budget_allows_its_burst_at_once(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(rpm=600, burst_seconds=0.5), clock)  # 10/s, 5 at once
    assert await acquire_times(limiter, clock, requests_only(7)) == [0.0] * 5 + [0.1, 0.2]


async def test_requests_per_day_go_at_once_then_wait_for_the_window(
    make_limiter: MakeLimiter,
) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(rpd=3), clock)
    times = await acquire_times(limiter, clock, requests_only(7))
    # Not paced one per 8 hours: the day's three at once, the next three a day later.
    assert times == [0.0] * 3 + [86_400.0] * 3 + [172_800.0]


async def test_requests_per_day_count_every_send_of_the_day(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(rpd=2), clock)
    await limiter.release(await limiter.acquire(Cost()), None)
    await clock.advance(3600.0)
    await limiter.release(await limiter.acquire(Cost()), None)
    third = asyncio.ensure_future(limiter.acquire(Cost()))
    await clock.advance(86_400.0 - 3600.0 - 1.0)  # a second short of the first send's day
    assert not third.done()
    await clock.advance(1.0)
    assert third.done() and clock.elapsed == 86_400.0


async def test_requests_per_day_and_per_minute_both_hold(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(rpm=60, rpd=4, burst_seconds=1), clock)
    times = await acquire_times(limiter, clock, requests_only(5))
    assert times[:4] == [0.0, 1.0, 2.0, 3.0]
    assert 86_400.0 <= times[4] <= 86_460.0  # a day after the first sends (per-minute grain)


async def test_tokens_per_minute_count_input_and_output(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(tpm=6000, burst_seconds=1), clock)  # 100 tokens/s
    costs = [
        Cost(input_tokens=60, output_tokens=40),
        Cost(input_tokens=100),
        Cost(output_tokens=50),
    ]
    costs.append(Cost(input_tokens=50, output_tokens=50))
    assert await acquire_times(limiter, clock, costs) == [0.0, 1.0, 1.5, 2.5]


async def test_input_tokens_per_minute_count_only_input(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(itpm=6000, burst_seconds=1), clock)  # 100 input tokens/s
    costs = [Cost(input_tokens=100, output_tokens=5000)] * 3
    assert await acquire_times(limiter, clock, costs) == [0.0, 1.0, 2.0]


async def test_output_tokens_per_minute_count_only_output(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(otpm=600, burst_seconds=1), clock)  # 10 output tokens/s
    costs = [Cost(input_tokens=5000, output_tokens=10)] * 3 + [Cost(output_tokens=5)]
    assert await acquire_times(limiter, clock, costs) == [0.0, 1.0, 2.0, 2.5]


async def test_input_and_output_budgets_hold_together(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limits = Limits(itpm=6000, otpm=600, burst_seconds=1)  # 100 in/s, 10 out/s
    limiter = make_limiter(limits, clock)
    costs = [Cost(input_tokens=50, output_tokens=10)] * 3 + [Cost(input_tokens=100)]
    # the output budget binds the first three; the input budget binds the last
    assert await acquire_times(limiter, clock, costs) == [0.0, 1.0, 2.0, 2.5]


async def test_a_cost_larger_than_the_burst_goes_when_the_budget_is_full(
    make_limiter: MakeLimiter,
) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(tpm=600, burst_seconds=1), clock)  # 10 tokens/s, burst 10
    costs = [Cost(input_tokens=30)] * 2
    # the first drives the budget 20 into debt; it needs 3 s to be full again
    assert await acquire_times(limiter, clock, costs) == [0.0, 3.0]


# -- settlement --------------------------------------------------------------------------------


async def test_release_gives_back_what_the_estimate_over_reserved(
    make_limiter: MakeLimiter,
) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(tpm=6000, burst_seconds=1), clock)  # 100 tokens/s, 100 max
    permit = await limiter.acquire(Cost(input_tokens=20, output_tokens=80))
    waiter = asyncio.ensure_future(limiter.acquire(Cost(input_tokens=60)))
    await clock.settle()
    assert not waiter.done()  # it needs 0.6 s of refill...
    await limiter.release(permit, Usage(20, 20))
    await clock.settle()
    assert waiter.done() and clock.elapsed == 0.0  # ...or the 60 tokens the answer did not use


async def test_release_charges_what_the_estimate_missed(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(tpm=6000, burst_seconds=1), clock)
    await limiter.release(await limiter.acquire(Cost(input_tokens=10)), Usage(10, 190))
    # 200 used of a 100-token burst: 100 in debt, 2 s before 100 tokens fit again
    assert await acquire_times(limiter, clock, [Cost(input_tokens=100)]) == [2.0]


async def test_release_without_usage_keeps_the_reservation(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(tpm=6000, burst_seconds=1), clock)
    await limiter.release(await limiter.acquire(Cost(input_tokens=100)), None)
    assert await acquire_times(limiter, clock, [Cost(input_tokens=100)]) == [1.0]


async def test_input_and_output_settle_apart(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limits = Limits(itpm=6000, otpm=6000, burst_seconds=1)  # 100/s each
    limiter = make_limiter(limits, clock)
    permit = await limiter.acquire(Cost(input_tokens=100, output_tokens=100))
    await limiter.release(permit, Usage(100, 0))  # the output came back, not the input
    times = await acquire_times(limiter, clock, [Cost(output_tokens=100), Cost(input_tokens=100)])
    assert times == [0.0, 1.0]


async def test_a_request_counts_even_when_it_used_no_tokens(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(rpm=60, burst_seconds=1), clock)
    await limiter.release(await limiter.acquire(Cost()), Usage(0, 0))
    assert await acquire_times(limiter, clock, [Cost()]) == [1.0]


# -- penalties ---------------------------------------------------------------------------------


async def test_penalise_with_retry_after_holds_every_send(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(rpm=6000), clock)
    await limiter.penalise(3.0)
    assert limiter.statistics().pause_remaining == 3.0
    assert await acquire_times(limiter, clock, requests_only(2)) == [3.0, 3.0]


async def test_a_penalty_during_a_wait_extends_it(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(rpm=60, burst_seconds=1), clock)
    await limiter.release(await limiter.acquire(Cost()), None)
    waiter = asyncio.ensure_future(limiter.acquire(Cost()))
    await clock.advance(0.5)
    await limiter.penalise(2.0)  # until t = 2.5
    await clock.advance(1.0)
    assert not waiter.done()
    await clock.advance(1.0)
    assert waiter.done() and clock.elapsed == pytest.approx(2.5)


async def test_penalise_without_retry_after_doubles_per_wave_until_a_success(
    make_limiter: MakeLimiter,
) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(), clock, cool_down=0.5, max_cool_down=4.0)
    await limiter.penalise(None)
    await limiter.penalise(None)  # the same wave: counted once
    await limiter.release(await clock.run(limiter.acquire(Cost())), None, outcome="failed")
    assert clock.elapsed == 0.5
    for expected in (1.0, 2.0, 4.0, 4.0):  # each wave after the last hold ended doubles it
        start = clock.elapsed
        await limiter.penalise(None)
        permit = await clock.run(limiter.acquire(Cost()))
        assert clock.elapsed - start == pytest.approx(expected)
        await limiter.release(permit, None, outcome="failed")  # a failure resets nothing
    await limiter.release(await limiter.acquire(Cost()), Usage(1, 1), outcome="ok")
    start = clock.elapsed
    await limiter.penalise(None)
    await clock.run(limiter.acquire(Cost()))
    assert clock.elapsed - start == pytest.approx(0.5)
    assert limiter.statistics().penalties == 7


# -- announced limits ------------------------------------------------------------------------


async def test_announced_limits_pace_a_limiter_told_nothing(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(burst_seconds=1), clock)
    await limiter.observe({"rpm": 60})
    assert await acquire_times(limiter, clock, requests_only(3)) == [0.0, 1.0, 2.0]
    stats = limiter.statistics()
    assert stats.limits == {"rpm": 60} and stats.learned == {"rpm": 60}


async def test_a_new_announcement_replaces_the_last_one(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(burst_seconds=1), clock)
    await limiter.observe({"rpm": 60})
    await limiter.observe({"rpm": 120})  # two a second, two at once
    assert await acquire_times(limiter, clock, requests_only(3)) == [0.0, 0.0, 0.5]
    assert limiter.statistics().learned == {"rpm": 120}


async def test_a_new_announcement_keeps_what_was_spent(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(burst_seconds=1), clock)
    await limiter.observe({"tpm": 6000})  # 100/s
    await limiter.release(await limiter.acquire(Cost(input_tokens=100)), None)
    await limiter.observe({"tpm": 12_000})  # 200/s, 200 at once: the 100 spent stay spent
    assert await acquire_times(limiter, clock, [Cost(input_tokens=200)]) == [0.5]


async def test_the_users_limits_win_over_announced_ones(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(rpm=120, burst_seconds=1), clock)  # 2 a second
    await limiter.observe({"rpm": 6000, "tpm": 600, "no-such-budget": 5})
    times = await acquire_times(limiter, clock, [Cost(input_tokens=10)] * 4)
    # rpm stays the user's 2/s; the announced 600 tpm (10/s, burst 10) applies as none was set
    assert times == [0.0, 1.0, 2.0, 3.0]
    stats = limiter.statistics()
    assert stats.limits == {"rpm": 120, "tpm": 600} and stats.learned == {"tpm": 600}


async def test_an_announced_limit_below_the_users_paces_instead(
    make_limiter: MakeLimiter, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(rpm=6000, burst_seconds=1), clock)  # 100 a second
    for _ in range(3):  # said on every answer, told once
        await limiter.observe({"rpm": 60, "rpm.remaining": 60})
    # The user's limit is a ceiling: the key allows one a second, so one a second it is.
    assert await acquire_times(limiter, clock, requests_only(3)) == [0.0, 1.0, 2.0]
    stats = limiter.statistics()
    assert stats.limits == {"rpm": 60} and stats.learned == {"rpm": 60}
    assert stats.lowered == {"rpm": 6000}
    told = [r.getMessage() for r in caplog.records if "below your" in r.getMessage()]
    assert told == [
        "llmgather: the server announces 60 requests/min, below your rpm=6,000: "
        "pacing at 60 requests/min"
    ]
    # Announced above the user's limit again: the user's limit is back in force.
    await limiter.observe({"rpm": 12_000})
    stats = limiter.statistics()
    assert stats.limits == {"rpm": 6000} and stats.learned == {} and stats.lowered == {}


async def test_429s_at_the_same_share_at_any_pace_are_no_limit(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(concurrency=8), clock)
    run = await drive(limiter, clock, noise(0.05), seconds=6.0, workers=8)
    # The first 429s set a pace; 429s at the same share at lower paces lift it again.
    assert limiter.statistics().limits == {} and limiter.statistics().found == {}
    sends, _ = run.between(3.0, 6.0)
    assert sends >= 0.9 * (8 / 0.05) * 3


# -- the adaptive concurrency cap ----------------------------------------------------------


async def test_streams_cut_again_and_again_lower_the_cap_and_clean_answers_raise_it(
    make_limiter: MakeLimiter,
) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(concurrency=8), clock)
    permits = [await limiter.acquire(Cost()) for _ in range(8)]
    for permit in permits[:4]:  # one wave of cuts: halved once, not four times
        await limiter.release(permit, None, outcome="truncated")
    assert limiter.statistics().concurrency == 4
    for permit in permits[4:]:  # late answers of the old wave change nothing
        await limiter.release(permit, None, outcome="truncated")
    assert limiter.statistics().concurrency == 4

    async def answered(n: int, outcome: Any = "ok") -> None:
        for _ in range(n):
            await limiter.release(await limiter.acquire(Cost()), Usage(1, 1), outcome=outcome)

    await answered(2, "truncated")
    assert limiter.statistics().concurrency == 2
    await answered(2, "truncated")
    assert limiter.statistics().concurrency == 1
    await answered(8)  # a round of clean answers: one more
    assert limiter.statistics().concurrency == 2
    await answered(8 * 6)
    assert limiter.statistics().concurrency == 8  # never above the configured cap
    await answered(16)
    assert limiter.statistics().concurrency == 8


async def test_a_lowered_cap_holds_sends_until_enough_are_released(
    make_limiter: MakeLimiter,
) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(concurrency=4), clock)
    permits = [await limiter.acquire(Cost()) for _ in range(4)]
    await limiter.release(permits[0], None, outcome="truncated")
    await limiter.release(permits[1], None, outcome="truncated")  # cap 2, two still in flight
    waiter = asyncio.ensure_future(limiter.acquire(Cost()))
    await clock.settle()
    assert not waiter.done()
    await limiter.release(permits[2], None)
    await clock.settle()
    assert waiter.done()


async def test_a_cut_now_and_then_keeps_the_cap(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(concurrency=8), clock)
    for n in range(200):
        outcome: Any = "truncated" if n % 10 == 0 else "ok"
        await limiter.release(await limiter.acquire(Cost()), Usage(1, 1), outcome=outcome)
    assert limiter.statistics().concurrency == 8


# -- statistics --------------------------------------------------------------------------------


async def test_statistics_is_a_snapshot_of_the_state(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(concurrency=3, rpm=60, rpd=1000), clock)
    await limiter.acquire(Cost())
    await limiter.observe({"tpm": 90_000})
    await limiter.penalise(5.0)
    await clock.advance(1.0)
    stats = limiter.statistics()
    assert stats == LimiterStats(
        in_flight=1,
        concurrency=3,
        max_concurrency=3,
        limits={"rpm": 60, "rpd": 1000, "tpm": 90_000},
        learned={"tpm": 90_000},
        pause_remaining=4.0,
        penalties=1,
        waiting_on=None,
    )
    waiter = asyncio.ensure_future(limiter.acquire(Cost()))
    await clock.settle()
    assert limiter.statistics().waiting_on == "pause"
    await clock.advance(4.0)
    assert waiter.done() and limiter.statistics().waiting_on is None


# -- sharing -----------------------------------------------------------------------------------


class SharedSpy:
    """A send shared by several engines: records the real concurrency and every send time."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.active = 0
        self.max_active = 0
        self.sent_at: list[float] = []

    async def __call__(self, request: Request) -> Outcome:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.sent_at.append(self.clock.elapsed)
        try:
            await self.clock.sleep(0.05 + 0.1 * (len(self.sent_at) % 3))
            return Outcome(Completion(text="ok", usage=Usage(10, 20)))
        finally:
            self.active -= 1


def prompts(n: int, prefix: str) -> Iterator[Request]:
    for i in range(n):
        yield Request.from_prompt("x" * 40, id=f"{prefix}{i}", max_tokens=20)


async def test_two_engines_sharing_a_limiter_never_exceed_its_limits_together(
    make_limiter: MakeLimiter,
) -> None:
    clock = FakeClock()
    limits = Limits(concurrency=4, rpm=600, tpm=24_000, burst_seconds=0.5)
    limiter = make_limiter(limits, clock)
    spy = SharedSpy(clock)
    engines = [
        Engine(spy, limiter=limiter, workers=4, clock=clock, rng=random.Random(n)) for n in range(2)
    ]

    async def run(engine: Engine, prefix: str) -> int:
        return sum([r.ok async for r in engine.map(prompts(60, prefix))])

    async def both() -> list[int]:
        return list(await asyncio.gather(run(engines[0], "a"), run(engines[1], "b")))

    assert await clock.run(both()) == [60, 60]
    assert spy.max_active == 4  # eight workers, one cap
    # 600 rpm with a 0.5 s burst: at most 5 at once plus 10 a second, in any span
    times = spy.sent_at
    for start in times:
        in_span = sum(1 for t in times if start <= t < start + 1.0)
        assert in_span <= 5 + 10
    # 120 requests at 10 a second after the first 5: one budget for both, not one each
    assert times[-1] >= 11.5 - 1e-9


# -- the cost cap (`--max-cost`): a total, not a rate ------------------------------------------
# Amounts in nano-dollars: Limits(max_cost=1e-6) is 1,000 of them. A cost's `priced` is what
# its answer's usage costs (here: one nano-dollar per output token).


def money(reserve: int) -> Cost:
    return Cost(nano_usd=reserve, priced=lambda usage: usage.output_tokens)


async def test_a_cost_cap_settles_each_reservation_to_the_real_cost(
    make_limiter: MakeLimiter,
) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(max_cost=1e-6), clock)
    first = await limiter.acquire(money(600))
    second = asyncio.ensure_future(limiter.acquire(money(600)))
    await clock.settle()
    assert not second.done()  # 1,200 would pass the cap; the first may give money back
    await limiter.release(first, Usage(10, 200))  # spent 200 of its 600
    await clock.settle()
    assert second.done()  # 200 + 600 fit in 1,000
    await limiter.release(second.result(), Usage(10, 300))
    await limiter.release(await limiter.acquire(money(500)), Usage(10, 500))  # 1,000 exactly


async def test_a_cost_cap_refuses_once_nothing_could_free_room_and_for_good(
    make_limiter: MakeLimiter,
) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(max_cost=1e-6), clock)
    first = await limiter.acquire(money(600))
    second = asyncio.ensure_future(limiter.acquire(money(600)))
    await clock.settle()
    assert not second.done()
    await limiter.release(first, Usage(10, 590))  # spent nearly all it reserved
    await clock.settle()
    with pytest.raises(BudgetExhaustedError) as refused:
        second.result()
    assert (refused.value.spent, refused.value.cap) == (Decimal("5.9e-7"), Decimal("0.000001"))
    assert "--max-cost" in str(refused.value)
    with pytest.raises(BudgetExhaustedError):  # 410 is left, but the cap stays refused
        await limiter.acquire(money(100))


async def test_an_unknown_usage_keeps_its_reservation_and_a_429_gives_it_back(
    make_limiter: MakeLimiter,
) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(max_cost=1e-6), clock)
    limited = await limiter.acquire(money(600))
    await limiter.release(limited, Usage(0, 0), outcome="limited")  # the server took nothing
    unknown = await limiter.acquire(money(600))
    await limiter.release(unknown, None, outcome="failed")  # it may have been billed: kept
    with pytest.raises(BudgetExhaustedError):
        await limiter.acquire(money(600))


async def test_a_cost_cap_fails_at_once_without_waiting_on_the_rate(
    make_limiter: MakeLimiter,
) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(max_cost=1e-6, rpm=1, burst_seconds=1), clock)
    await limiter.release(await limiter.acquire(money(900)), None)
    with pytest.raises(BudgetExhaustedError):  # the rpm would hold it a minute first
        await clock.run(limiter.acquire(money(900)))
    assert clock.elapsed == 0


async def test_a_cost_cap_alone_leaves_the_limits_to_be_found(make_limiter: MakeLimiter) -> None:
    clock = FakeClock()
    limiter = make_limiter(Limits(max_cost=1.0, concurrency=64), clock)
    assert limiter.statistics().concurrency < 64  # a slow start, as with no limit at all


async def test_a_dead_process_reservation_is_charged_once_its_lease_expires(
    redis_url: str,
) -> None:
    clock = FakeClock()
    key = uuid.uuid4().hex
    dead = RedisLimiter(redis_url, Limits(max_cost=1e-6), key=key, clock=clock, lease_seconds=1)
    alive = RedisLimiter(redis_url, Limits(max_cost=1e-6), key=key, clock=clock, lease_seconds=1)
    clock.io = lambda: (dead._io + alive._io, dead._io_done + alive._io_done)
    try:
        await dead.acquire(money(600))
        dead._held.clear()  # its process is gone: nothing renews the lease nor settles it
        waiting = asyncio.ensure_future(alive.acquire(money(600)))
        await clock.settle()
        assert not waiting.done()  # the reservation may still give money back
        await clock.advance(2.0)  # the lease expired: its answer never came, it is charged
        await clock.settle()
        with pytest.raises(BudgetExhaustedError) as refused:
            waiting.result()
        assert refused.value.spent == Decimal("6e-7")
    finally:
        await dead.aclose()
        await alive.aclose()
