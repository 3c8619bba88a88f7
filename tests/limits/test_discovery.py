"""Finding the limits when told none, on a fake clock: the slow start's first wave and growth,
the AIMD rate found from 429s (decrease factors, increase step, bounds), and the limits a
server announces (with what remains of them) taking over."""

from __future__ import annotations

import asyncio
import math

import pytest

from llmgather import Cost, Limits, LocalLimiter, Permit, Usage
from llmgather.limits import discovery
from llmgather.limits.bucket import TokenBucket
from llmgather.limits.discovery import LimitSearch
from tests.fakeclock import FakeClock, settle

# -- the search on its own: exact arithmetic ---------------------------------------------


def test_slow_start_sends_a_first_wave_and_grows_one_per_clean_answer() -> None:
    search = LimitSearch(100, now=0.0)
    assert search.window == discovery.INITIAL_WINDOW == 8
    for _ in range(8):  # one round trip of clean answers doubles the window
        assert search.answered()
    assert search.window == 16
    small = LimitSearch(3, now=0.0)
    assert small.window == 3 and not small.answered()  # never above the concurrency cap


def test_the_first_429_paces_at_what_the_server_took_from_a_full_budget() -> None:
    search = LimitSearch(100, now=0.0)
    for i in range(20):
        search.granted(0.1 * i)  # 10 a second, from 0.0 to 1.9
    # Refused at 1.5: the 10 grants in the second before it (0.5 … 1.4) over that second
    # plus the second's worth a budget lets out at once, or the 5 since 1.0 over 1.5 s: 5/s.
    first = search.limited(now=2.0, granted_at=1.5)
    assert first == pytest.approx(discovery.FIRST_MARGIN * 300.0)
    assert search.found == first and search.window is None  # the rate paces now


def test_the_first_rate_from_a_very_short_start_is_near_the_limit() -> None:
    # A key of 600 a minute lets a second's worth, 10, out at once. A start of 16 grants in
    # 30 ms: the 11th is refused. The rate those 30 ms were sent at is 32,000 a minute;
    # the server took 10 then, and takes 10 a second.
    server = TokenBucket.per_minute(600, burst_seconds=1.0, now=0.0)
    search = LimitSearch(100, now=0.0)
    refused_at = None
    for i in range(16):
        at = 0.002 * i
        search.granted(at)
        if server.try_take(at, 1) > 0 and refused_at is None:
            refused_at = at
    assert refused_at is not None
    rate = search.limited(now=refused_at + 0.003, granted_at=refused_at)
    assert rate is not None and 0.9 * 600 <= rate <= 1.05 * 600


def test_later_429s_halve_until_a_clean_stretch_then_decrease_gently_once_per_wave() -> None:
    search = LimitSearch(100, now=0.0)
    for i in range(4):
        search.granted(0.25 * i)
    first = search.limited(now=1.0, granted_at=0.75)  # 3 before it in 0.75 s: 3 / 1.75 s
    assert first == pytest.approx(discovery.FIRST_MARGIN * 60.0 * 3 / 1.75)
    assert search.limited(now=1.2, granted_at=0.9) is None  # sent before the decrease
    # Still too fast before any clean stretch (the server let out more at once than a
    # second's worth): most of its answers 429s, halved.
    assert search.limited(now=1.5, granted_at=1.1) == pytest.approx(first / 2)
    assert search.limited(now=1.6, granted_at=1.2) is None  # the same wave again
    assert search.clean(now=1.5 + discovery.INCREASE_EVERY) is None  # clean, but never bound
    later = search.limited(now=4.0, granted_at=3.9)
    assert later == pytest.approx(first / 2 * discovery.DECREASE)


def test_a_clean_stretch_raises_the_rate_only_where_it_binds() -> None:
    search = LimitSearch(100, now=0.0)
    search.granted(0.0)
    search.granted(0.0)
    first = search.limited(now=0.0, granted_at=0.0)  # 1 of the 2 taken: 60 a minute
    assert first == pytest.approx(discovery.FIRST_MARGIN * 60.0)
    search.held()
    assert search.clean(now=discovery.INCREASE_EVERY - 0.01) is None  # too soon
    raised = search.clean(now=discovery.INCREASE_EVERY)
    assert raised == pytest.approx(first * 1.02)  # 2% more
    assert search.clean(now=10.0) is None  # the rate never held a send back since: no evidence


def test_the_found_rate_stays_within_its_bounds() -> None:
    search = LimitSearch(100, now=0.0)
    search.granted(0.0)
    search.granted(0.0)
    now = 1.0
    first = search.limited(now=now, granted_at=0.0)
    assert first == pytest.approx(discovery.FIRST_MARGIN * 60.0)
    for _ in range(100):  # 429s, wave after wave
        now += 1.0
        search.limited(now=now, granted_at=now)
    assert search.found == discovery.MIN_RPM
    for _ in range(2000):  # clean stretches where it binds, for a long time
        now += discovery.INCREASE_EVERY
        search.held()
        search.clean(now=now)
    assert search.found == pytest.approx(discovery.MAX_GROWTH * first)


def test_the_window_grows_by_time_once_an_answer_came_back_clean() -> None:
    search = LimitSearch(100, now=0.0)
    doubling = discovery.DOUBLING_S
    assert search.window_at(5.0) == 8  # no answer yet: nothing says more may go
    assert search.until_wider(5.0, in_flight=8) is None
    assert search.answered(now=5.0)  # the first clean answer: 9, and from 8 on by time
    assert search.window_at(5.0) == 9
    assert search.window_at(5.0 + doubling) == 16
    assert search.window_at(5.0 + 2.5 * doubling) == math.floor(8 * 2**2.5)
    assert search.window_at(5.0 + 4 * doubling) == 100  # never past the cap
    # One more every so often, not in jumps: the next goes when 8 · 2^(t / doubling) passes 17.
    wait = search.until_wider(5.0 + doubling, in_flight=16)
    assert wait is not None
    assert wait == pytest.approx(doubling * math.log2(17 / 16), abs=1e-5)
    assert search.window_at(5.0 + doubling + wait) == 17
    assert search.until_wider(9.0, in_flight=100) is None
    search.announced()  # an answer announced a limit: the budgets pace from now on
    assert search.window_at(9.0) is None and search.until_wider(9.0, in_flight=5) is None


# -- through the limiter --------------------------------------------------------------------


async def acquire_now(limiter: LocalLimiter, count: int) -> list[Permit]:
    """Start `count` acquires; those granted without waiting (the rest are cancelled)."""
    tasks = [asyncio.ensure_future(limiter.acquire(Cost())) for _ in range(count)]
    await settle()
    granted = [task.result() for task in tasks if task.done()]
    for task in tasks:
        task.cancel()
    await settle()
    return granted


async def test_told_nothing_the_first_wave_is_small_and_grows_with_answers() -> None:
    limiter = LocalLimiter(Limits(concurrency=100), clock=FakeClock())
    first = await acquire_now(limiter, 100)
    assert len(first) == 8
    assert limiter.statistics().concurrency == 8 and limiter.statistics().max_concurrency == 100
    for permit in first:
        await limiter.release(permit, Usage(1, 1))
    assert len(await acquire_now(limiter, 100)) == 16


async def test_told_a_limit_there_is_no_slow_start() -> None:
    limiter = LocalLimiter(Limits(concurrency=100, tpm=1e9), clock=FakeClock())
    assert len(await acquire_now(limiter, 100)) == 100
    untold = LocalLimiter(Limits(concurrency=100), discover=False)
    assert len(await acquire_now(untold, 150)) == 100


async def test_an_announced_limit_ends_the_slow_start_and_what_remains_is_spent() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(Limits(concurrency=100, burst_seconds=1), clock=clock)
    first = await acquire_now(limiter, 100)
    # 600 a minute: 10 at once. The server counts 4 of them used (its remaining: 596).
    await limiter.observe({"rpm": 600, "rpm.remaining": 596})
    assert limiter.statistics().concurrency == 100
    assert len(await acquire_now(limiter, 100)) == 6  # the bucket's 10, less the 4 used
    assert limiter.statistics().learned == {"rpm": 600}
    for permit in first:
        await limiter.release(permit, Usage(1, 1))


async def test_what_remains_never_frees_more_than_the_limiter_counts_used() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(Limits(concurrency=100, burst_seconds=1), clock=clock)
    await limiter.observe({"rpm": 600, "rpm.remaining": 0})  # a whole minute used
    assert await acquire_now(limiter, 5) == []  # empty, not a minute in debt:
    await clock.advance(0.1)
    assert len(await acquire_now(limiter, 5)) == 1  # one request's refill lets one go


async def test_a_429_with_nothing_announced_paces_at_a_found_rate() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(Limits(concurrency=100, burst_seconds=1), clock=clock)
    permits = await acquire_now(limiter, 100)  # 8 at once, at time 0
    await clock.advance(0.5)
    await limiter.release(permits[0], Usage(0, 0), outcome="limited")
    # The server took the other 7 granted with it, at once: 7 a second (less a margin), not
    # the 960 a minute those 8 were sent at over the half second.
    rpm = discovery.FIRST_MARGIN * 420.0
    stats = limiter.statistics()
    assert stats.learned == {"rpm": pytest.approx(rpm)} and stats.concurrency == 100
    await limiter.release(permits[1], Usage(0, 0), outcome="limited")  # the same wave
    assert limiter.statistics().learned == {"rpm": pytest.approx(rpm)}
    # The server's budget is empty after its 429, so is the new rate's: no burst.
    assert await acquire_now(limiter, 5) == []
    await clock.advance(60 / rpm + 1e-6)
    assert len(await acquire_now(limiter, 5)) == 1
    # An announcement replaces what the 429s taught.
    await limiter.observe({"tpm": 60_000})
    assert limiter.statistics().learned == {"tpm": 60_000}


async def test_the_users_limit_is_never_searched_nor_overridden() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(Limits(rpm=60, burst_seconds=1), clock=clock)
    permit = await limiter.acquire(Cost())
    await limiter.release(permit, Usage(0, 0), outcome="limited")
    await limiter.observe({"rpm": 6000, "rpm.remaining": 6000})
    assert limiter.statistics().limits == {"rpm": 60} and limiter.statistics().learned == {}
