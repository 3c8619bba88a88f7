"""Streams cut off again and again lower the concurrency cap, end to end (issue 9).

The simulator plays llama-cpp-python's server (`preempt=1`): each request it answers cuts every
stream it is still sending. Retried at concurrency 4, the retries would cut each other off
forever; the limiter halves its cap on the cuts, and every item ends ok.
"""

from __future__ import annotations

from llmgather import Client, Limits, LocalLimiter
from llmgather.sim import FaultPlan, SimConfig, start_simulator
from tests.simfixtures import sim_stats
from tests.spylimiter import SpyLimiter

CONCURRENCY = 4


async def test_streams_cut_by_each_new_request_lower_the_cap_and_every_item_ends_ok() -> None:
    # Latency, so that each stream spans the arrival of the next request.
    config = SimConfig(seed=1, latency_ms=100, faults=FaultPlan.parse("preempt=1"))
    spy = SpyLimiter(LocalLimiter(Limits(concurrency=CONCURRENCY)))
    async with (
        await start_simulator(config) as sim,
        Client(
            "openai:gpt-4o-mini",
            base_url=sim.base_url + "/v1",
            api_key="sim",
            stream=True,
            concurrency=CONCURRENCY,
            limiter=spy,
        ) as client,
    ):
        results = await client.gather([f"prompt {i}" for i in range(20)])
        counts = await sim_stats(sim)
    assert all(r.ok for r in results)
    assert counts["faults"].get("preempted", 0) > 0  # streams were cut…
    assert any(release.outcome == "truncated" for release in spy.releases)
    assert sum(r.attempts for r in results) == counts["received"] > len(results)  # …and retried
    # …and the cap came down from 4 while they were.
    assert min(release.concurrency for release in spy.releases) < CONCURRENCY
    assert spy.statistics().max_concurrency == CONCURRENCY
