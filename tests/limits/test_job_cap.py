"""`JobCap`: a job's own cost cap beside a shared limiter's rates (`run --limiter … --max-cost`).
The shared side here is a `LocalLimiter` standing in for Redis's: what is under test is the
order of the two steps and that a wait ended on the second gives the first back."""

from __future__ import annotations

import asyncio

import pytest

from llmgather import BudgetExhaustedError, Limits, LocalLimiter
from llmgather._types import Usage
from llmgather.limits import Cost
from llmgather.limits.job_cap import JobCap

CENT = 10_000_000  # nano-dollars


def cost(nano_usd: int) -> Cost:
    """A worst case of `nano_usd`; a real usage costs a thousandth of a cent a token."""
    return Cost(
        requests=1, input_tokens=10, output_tokens=10, nano_usd=nano_usd,
        priced=lambda usage: usage.total_tokens * 10_000,
    )  # fmt: skip


async def test_a_wait_ended_on_the_shared_limiter_gives_the_cap_back() -> None:
    capped = JobCap(LocalLimiter(Limits(concurrency=1)), Limits(max_cost=0.02))
    first = await capped.acquire(cost(CENT))
    waiting = asyncio.create_task(capped.acquire(cost(CENT)))  # the shared slot is taken
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # The cancelled wait's cent came back: the first settles at half, and two more fit.
    await capped.release(first, None, outcome="failed")  # its cost unknown: charged whole
    second = await capped.acquire(cost(CENT // 2))
    await capped.release(second, Usage(0, 0), outcome="ok")
    assert capped.statistics().limits["max_cost"] == 0.02


async def test_the_cap_refuses_before_the_shared_limiter_is_asked() -> None:
    shared = LocalLimiter(Limits(concurrency=4))
    capped = JobCap(shared, Limits(max_cost=0.01))
    capped.spent_before(CENT)  # an earlier run of the job spent it all
    with pytest.raises(BudgetExhaustedError):
        await capped.acquire(cost(1))
    assert shared.statistics().in_flight == 0
