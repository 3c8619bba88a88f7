"""Gemini's 429 bodies name the violated quota and its value (QuotaFailure: `quotaId`,
`quotaValue`): a per-minute one is read as the limit announced, as OpenAI's headers are, so a
client told nothing paces at it instead of searching for it by AIMD (a per-day one stays a
quota error: test_error_mapping). Against the simulator over loopback, by the adapter, the
client and the official google-genai SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from llmgather import Client, RateLimitError
from llmgather._exchange import error_from_answer
from llmgather._sdk_errors import error_from_sdk
from llmgather.providers.gemini import GeminiProvider
from llmgather.sim import SimConfig, start_simulator
from tests.simfixtures import GEMINI, body_for, post, running, sim_stats
from tests.test_sdk_errors import raised, sdk_call


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as own:
        yield own


async def refused_answer(
    session: aiohttp.ClientSession, **limits: float
) -> tuple[int, dict[str, str], bytes]:
    """The simulator's 429 once one request has spent a two-request budget's burst."""
    body = body_for(GEMINI, generationConfig={"maxOutputTokens": 50})
    async with running(latency_jitter=0, burst_seconds=60, **limits) as sim:
        first = await post(session, sim, GEMINI, body)
        status, headers, raw = await post(session, sim, GEMINI, body)
    assert first[0] == 200 and status == 429, raw
    return status, dict(headers), raw


@pytest.mark.parametrize(
    ("setting", "limit", "budget"),
    [("rpm", 1, "rpm"), ("itpm", 15, "itpm"), ("otpm", 60, "otpm"), ("tpm", 70, "tpm")],
)
async def test_a_per_minute_quotas_value_is_the_limit_announced(
    session: aiohttp.ClientSession, setting: str, limit: float, budget: str
) -> None:
    status, headers, raw = await refused_answer(session, **{setting: limit})
    error = error_from_answer(GeminiProvider(api_key="k"), status, headers, raw)
    assert type(error) is RateLimitError
    # Spent, as the 429 says: the limiter starts that budget empty, with no burst into it.
    assert error.announced == {budget: limit, f"{budget}.remaining": 0.0}


async def test_told_nothing_the_client_paces_at_the_quota_a_429_names() -> None:
    prompts = [f"p{i}" for i in range(60)]
    config = SimConfig(seed=1, rpm=1200, latency_ms=20)
    async with (
        await start_simulator(config) as sim,
        Client(
            "gemini:gemini-2.0-flash",
            base_url=sim.base_url,
            api_key="sim",
            concurrency=100,
            defaults={"max_tokens": 20},
        ) as client,
    ):
        results = await client.gather(prompts)
        stats = client.statistics()
        counts = await sim_stats(sim)
    assert all(r.ok for r in results)
    # Learned as announced (the search found nothing: it had nothing to find).
    assert dict(stats.learned) == {"rpm": 1200} and dict(stats.found) == {}
    # The slow start's overshoot only: once the first 429 names the quota, it paces at it.
    assert 0 < counts["by_status"].get("429", 0) <= 12


async def test_the_sdks_429_announces_the_same_limit(session: aiohttp.ClientSession) -> None:
    async with running(rpm=1) as sim, sdk_call("gemini", sim.base_url, session) as call:
        await call()  # the one request the minute allows
        exc = await raised(call)
    mapped = error_from_sdk(exc)
    assert isinstance(mapped, RateLimitError)
    assert mapped.announced == {"rpm": 1.0, "rpm.remaining": 0.0}
