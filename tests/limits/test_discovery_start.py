"""The start of a job told no limit, on a fake clock: against a server that announces none, the
slow start's window grows by time once an answer came back clean, so a round trip of a second
does not hold the job to a wave per second; against a limit, that growth stops at its first
429 with the rate it found near the limit, not the rate the start was sent at."""

from __future__ import annotations

import asyncio
import math
from collections import Counter

import pytest

from llmgather import Cost, Limits, LocalLimiter, Permit, Usage
from llmgather.limits import discovery
from llmgather.limits.base import Ending
from tests.fakeclock import FakeClock
from tests.limits.workers import drive, limit


async def grant_times(latencies: list[float]) -> list[float]:
    """One request per latency, all at once, told nothing, against a server with no limit:
    when each was granted (seconds from the start), in grant order."""
    clock = FakeClock()
    limiter = LocalLimiter(Limits(concurrency=len(latencies)), clock=clock)
    granted: list[float] = []

    async def one(latency: float) -> None:
        permit = await limiter.acquire(Cost())
        granted.append(clock.elapsed)
        await clock.sleep(latency)
        await limiter.release(permit, Usage(1, 1))

    async def every_one() -> None:
        async with asyncio.TaskGroup() as group:
            for latency in latencies:
                group.create_task(one(latency))

    await clock.run(every_one())
    return granted


async def test_no_limit_announced_the_window_grows_by_time_after_a_clean_answer() -> None:
    # 100 requests at 0.5 to 1.4 s: answers alone would open the window a round trip at a time
    # (8, 16, 32, 64: the last granted past 2 s).
    latencies = [0.5 + (i % 10) / 10 for i in range(100)]
    granted = await grant_times(latencies)
    first_answer = 0.5
    assert granted[:8] == [0.0] * 8  # nothing says more may go before an answer comes back
    assert all(at >= first_answer for at in granted[8:])
    # From 8 at the first answer, doubling every DOUBLING_S: all 100 in log2(100 / 8) of them.
    doublings = math.log2(100 / 8)
    assert max(granted) <= first_answer + doublings * discovery.DOUBLING_S + 1e-6
    # One or two at a time (a clean answer frees a slot and widens the window), never a
    # jump: a limit behind it meets a few requests past its budget before its 429 stops it.
    assert max(Counter(granted[8:]).values()) <= 2


class FirstFound:
    """A limiter as it is, noting the rate it found at its first 429."""

    def __init__(self, limiter: LocalLimiter) -> None:
        self.limiter = limiter
        self.found: dict[str, float] | None = None

    async def acquire(self, cost: Cost) -> Permit:
        return await self.limiter.acquire(cost)

    async def release(self, permit: Permit, usage: Usage, *, outcome: Ending = "ok") -> None:
        await self.limiter.release(permit, usage, outcome=outcome)
        if outcome == "limited" and self.found is None:
            self.found = dict(self.limiter.statistics().found)


@pytest.mark.parametrize("latency", [0.02, 0.2, 1.0])
async def test_a_600_rpm_limit_met_after_a_short_start_is_found_near_600(latency: float) -> None:
    # The server lets out a second's worth, 10, at once, and refuses the 11th: at 20 ms a
    # round trip that is within the first few tens of ms. Read as the rate the start was sent
    # at (the span floored at 0.1 s, halved) it was 1,950 a minute at 20 ms, 3,300 at 0.2 s.
    clock = FakeClock()
    limiter = LocalLimiter(Limits(concurrency=100), clock=clock)
    watched = FirstFound(limiter)
    run = await drive(watched, clock, limit(600), seconds=1.5, workers=100, latency=latency)  # type: ignore[arg-type]
    assert watched.found is not None and set(watched.found) == {"rpm"}
    assert 0.9 * 600 <= watched.found["rpm"] <= 1.05 * 600
    _, refused = run.between(0.0, 1.5)
    assert refused == 1  # paced from empty, below what the server refills


async def test_answers_the_server_settled_before_it_told_its_count_free_nothing() -> None:
    # The first wave reserved 164 tokens each; a 429 then says the key's 6,000 a minute are
    # spent, a count that already holds what the answers sent before it gave back. Those
    # answers, arriving after it, must not give it back a second time.
    clock = FakeClock()
    limiter = LocalLimiter(Limits(concurrency=100, burst_seconds=1), clock=clock)
    permits = [await limiter.acquire(Cost(input_tokens=100, output_tokens=64)) for _ in range(8)]
    await clock.advance(0.5)
    await limiter.observe({"tpm": 6000, "tpm.remaining": 0})
    for permit in permits:
        await limiter.release(permit, Usage(100, 10))
    assert limiter.remaining() == {"tpm": 0.0}
    # A request granted once the count was told settles as any other.
    await clock.advance(1.0)
    permit = await limiter.acquire(Cost(input_tokens=36, output_tokens=64))
    await limiter.release(permit, Usage(36, 4))
    assert limiter.remaining() == {"tpm": 60.0}


async def test_a_429_to_the_very_first_request_sets_no_pace() -> None:
    """Nothing got through before it: no evidence of a rate (a key another process spent, a
    stray 429). It pauses the key for its retry hint; it does not pace the job at 1 a minute,
    which held the retry of a single request for a minute."""
    clock = FakeClock()
    limiter = LocalLimiter(Limits(concurrency=4), clock=clock)

    async def first_then_retry() -> float:
        permit = await limiter.acquire(Cost())
        await clock.sleep(0.05)
        await limiter.release(permit, Usage(0, 0), outcome="limited")
        assert limiter.statistics().found == {}
        start = clock.elapsed
        permit = await limiter.acquire(Cost())
        waited = clock.elapsed - start
        await limiter.release(permit, Usage(1, 1))
        return waited

    waited = await clock.run(first_then_retry())
    assert waited < 5.0, waited
