"""Two clients sharing one limiter never exceed the shared limits together.

The simulator is the spy, over loopback: it counts the requests it works on at once
(`max_in_flight` in `/_sim/stats`) and enforces the same requests per minute as the shared
limiter, answering 429 to anything beyond it. Each client has a pool of workers larger than
the shared cap, so only the shared limiter can hold them to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai import AsyncOpenAI

from llmgather import Client, ConfigurationError, Limits, LocalLimiter, Result
from llmgather.sim import RunningSimulator, SimConfig, start_simulator
from tests.simfixtures import sim_stats

CONCURRENCY = 3
RPM = 600  # 10 a second, 10 at once (a burst of one second)
PER_CLIENT = 12


def client_for(sim: RunningSimulator, **kwargs: Any) -> Client:
    # Eight workers each: more than the shared cap of three.
    return Client(
        "openai:gpt-4o-mini", base_url=sim.base_url + "/v1", api_key="k", concurrency=8, **kwargs
    )


async def results_of(results: AsyncIterator[Result]) -> list[Result]:
    return [result async for result in results]


async def own_requests(client: Client, name: str) -> list[Result]:
    return await client.gather([f"{name} prompt {i}" for i in range(PER_CLIENT)])


async def sdk_calls(client: Client, sim: RunningSimulator, name: str) -> list[Result]:
    async with AsyncOpenAI(base_url=sim.base_url + "/v1", api_key="k", max_retries=0) as oai:
        items = [
            {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": f"{name} prompt {i}"}],
                "max_tokens": 50,
            }
            for i in range(PER_CLIENT)
        ]
        return await results_of(client.map_calls(oai.chat.completions.create, items))


@pytest.mark.parametrize("second", ["own requests", "sdk calls"])
async def test_two_clients_sharing_a_limiter_stay_within_its_concurrency_and_rpm(
    second: str,
) -> None:
    config = SimConfig(seed=1, rpm=RPM, latency_ms=100, latency_jitter=0.2)
    async with await start_simulator(config) as sim:
        shared = LocalLimiter(Limits(concurrency=CONCURRENCY, rpm=RPM))
        async with client_for(sim, limiter=shared) as a, client_for(sim, limiter=shared) as b:
            assert a.limiter is b.limiter is shared
            second_run = (
                own_requests(b, "b") if second == "own requests" else sdk_calls(b, sim, "b")
            )
            first, other = await asyncio.gather(own_requests(a, "a"), second_run)
        counts = await sim_stats(sim)
    assert all(r.ok for r in first + other)
    assert counts["received"] == 2 * PER_CLIENT
    assert counts["by_status"] == {"200": 2 * PER_CLIENT}  # not one 429
    assert counts["max_in_flight"] <= CONCURRENCY


async def test_two_clients_each_told_the_whole_limit_exceed_it_together() -> None:
    # The naive setup, for contrast: the same limits given to each client on its own.
    config = SimConfig(seed=1, rpm=RPM, latency_ms=100, latency_jitter=0.2)
    async with await start_simulator(config) as sim:
        own = Limits(concurrency=CONCURRENCY, rpm=RPM)
        async with (
            client_for(sim, limiter=LocalLimiter(own)) as a,
            client_for(sim, limiter=LocalLimiter(own)) as b,
        ):
            first, other = await asyncio.gather(own_requests(a, "a"), own_requests(b, "b"))
        counts = await sim_stats(sim)
    assert all(r.ok for r in first + other)  # retried after the server's Retry-After
    assert counts["max_in_flight"] > CONCURRENCY
    assert counts["by_status"].get("429", 0) > 0


@pytest.mark.parametrize("limit", ["rpm", "rpd", "tpm", "itpm", "otpm"])
def test_limits_for_a_client_given_a_shared_limiter_are_refused(limit: str) -> None:
    shared = LocalLimiter(Limits(rpm=RPM))
    with pytest.raises(ConfigurationError, match="not both"):
        Client("openai:gpt-4o-mini", api_key="k", limiter=shared, **{limit: 100})
