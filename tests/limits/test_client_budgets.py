"""The client side of the requests-per-day and Anthropic input/output token budgets, against a
simulator that enforces the same budgets and answers 429 to anything beyond them."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from llmgather import Client, ConfigurationError, Limits, Result
from llmgather.sim import RunningSimulator, SimConfig, start_simulator
from tests.simfixtures import sim_stats

RPD = 3
ITPM = 6000  # 100 input tokens a second, at most 100 at once
OTPM = 12000  # 200 output tokens a second: each answer reserves 60 of them
PROMPTS = [f"Tell me about topic number {i} " * 3 for i in range(8)]  # ~26 input tokens each


def gemini_client(sim: RunningSimulator, **kwargs: Any) -> Client:
    return Client("gemini:gemini-2.0-flash", base_url=sim.base_url, api_key="sim", **kwargs)


def anthropic_client(sim: RunningSimulator, **kwargs: Any) -> Client:
    return Client(
        "anthropic:claude-3-5-haiku-latest",
        base_url=sim.base_url,
        api_key="sim",
        defaults={"max_tokens": 60},
        **kwargs,
    )


# -- requests per day -----------------------------------------------------------------------------


async def test_a_client_told_rpd_sends_that_many_and_holds_the_next() -> None:
    # The simulator's day is shortened only so that its budget could refill in a test; the
    # client's day is a real one, so its fourth request waits (for a day), unsent.
    config = SimConfig(seed=1, rpd=RPD, day_seconds=3600)
    async with await start_simulator(config) as sim, gemini_client(sim, rpd=RPD) as client:
        results: list[Result] = []
        async with contextlib.aclosing(client.map([f"p{i}" for i in range(RPD + 2)])) as stream:
            async for result in stream:
                results.append(result)
                if len(results) == RPD:
                    waiting_on = client.limiter.statistics().waiting_on
                    break
        counts = await sim_stats(sim)
    assert all(r.ok for r in results)
    assert waiting_on == "rpd"
    assert counts["received"] == RPD
    assert counts["by_status"] == {"200": RPD}


async def test_limits_as_one_object_bind_as_the_keywords_do_and_not_beside_them() -> None:
    config = SimConfig(seed=1, rpd=RPD, day_seconds=3600)
    limits = Limits(concurrency=4, rpd=RPD)
    async with await start_simulator(config) as sim, gemini_client(sim, limits=limits) as client:
        stats = client.limiter.statistics()
        assert stats.limits == {"rpd": RPD} and stats.max_concurrency == 4
        with pytest.raises(ConfigurationError, match=r"limits=Limits\(...\) or concurrency=, rpd="):
            gemini_client(sim, limits=limits, concurrency=4, rpd=RPD)


async def test_a_stop_ends_a_map_whose_next_send_waits_for_the_days_budget() -> None:
    config = SimConfig(seed=1, rpd=RPD, day_seconds=3600)
    async with await start_simulator(config) as sim, gemini_client(sim, rpd=RPD) as client:
        stop = asyncio.Event()
        results: list[Result] = []
        # A bound only so that the failure is an assertion rather than the suite's timeout.
        async with asyncio.timeout(2):
            async for result in client.map([f"p{i}" for i in range(RPD + 2)], stop=stop):
                results.append(result)
                if len(results) == RPD:
                    stop.set()
        counts = await sim_stats(sim)
    assert len(results) == RPD and all(r.ok for r in results)
    assert counts["received"] == RPD


# -- Anthropic's input and output tokens per minute ----------------------------------------------


async def test_a_client_told_itpm_and_otpm_gets_no_429_from_a_server_enforcing_them() -> None:
    config = SimConfig(seed=1, itpm=ITPM, otpm=OTPM, latency_ms=50)
    async with (
        await start_simulator(config) as sim,
        anthropic_client(sim, itpm=ITPM, otpm=OTPM) as client,
    ):
        results = await client.gather(PROMPTS)
        limiter = client.limiter.statistics()
        counts = await sim_stats(sim)
    assert all(r.ok for r in results)
    assert counts["by_status"] == {"200": len(PROMPTS)}  # not one 429
    assert dict(limiter.limits) == {"itpm": ITPM, "otpm": OTPM}
    assert dict(limiter.learned) == {}  # the user's limits stand, whatever the server says


async def test_a_client_told_nothing_learns_itpm_and_otpm_from_anthropics_headers() -> None:
    config = SimConfig(seed=1, itpm=ITPM, otpm=OTPM, latency_ms=50)
    async with await start_simulator(config) as sim, anthropic_client(sim) as client:
        results = await client.gather(PROMPTS)
        limiter = client.limiter.statistics()
        counts = await sim_stats(sim)
    assert all(r.ok for r in results)  # the 429s of the first burst were retried
    # The same work sent blind meets the server's limits (which the test above stays within).
    assert counts["by_status"].get("429", 0) > 0
    assert dict(limiter.learned) == {"itpm": ITPM, "otpm": OTPM}
    assert dict(limiter.limits) == {"itpm": ITPM, "otpm": OTPM}
