"""Told no limits, against the simulator over loopback: the limits learned from each dialect's
headers (or, where none are announced, from its 429s), a limit lowered while a job runs, and a
user's limit that no announcement raises."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from llmgather import Client, Result
from llmgather.sim import RunningSimulator, SimConfig, start_simulator

PROMPTS = [f"p{i}" for i in range(60)]


def client_for(dialect: str, sim: RunningSimulator, **kwargs: Any) -> Client:
    model = {
        "openai": "openai:gpt-4o-mini",
        "anthropic": "anthropic:claude-3-5-haiku-latest",
        "gemini": "gemini:gemini-2.0-flash",
    }[dialect]
    base_url = sim.base_url + "/v1" if dialect == "openai" else sim.base_url
    return Client(model, base_url=base_url, api_key="sim", defaults={"max_tokens": 20}, **kwargs)


async def sim_call(sim: RunningSimulator, method: str, path: str, body: Any = None) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, sim.base_url + path, json=body) as response,
    ):
        assert response.status == 200
        return await response.json()


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
async def test_told_nothing_learns_the_announced_limits_without_a_429(dialect: str) -> None:
    # 1,200 a minute lets 20 go at once: the slow start's first wave of 8 fits, and the
    # answers announce the limit before more go.
    async with (
        await start_simulator(SimConfig(seed=1, rpm=1200, latency_ms=20)) as sim,
        client_for(dialect, sim, concurrency=100) as client,
    ):
        results = await client.gather(PROMPTS)
        stats = client.statistics()
        counts = await sim_call(sim, "GET", "/_sim/stats")
    assert all(r.ok for r in results)
    assert counts["by_status"] == {"200": len(PROMPTS)}
    assert dict(stats.learned) == {"rpm": 1200} and dict(stats.found) == {}


@pytest.mark.quiet
# Gemini's 429 bodies name the quota's value, read as an announced limit: see
# test_gemini_quota_values.py.
@pytest.mark.parametrize(("dialect", "headers"), [("openai", False), ("anthropic", False)])
async def test_where_nothing_is_announced_the_429s_teach_a_rate(
    dialect: str, headers: bool
) -> None:
    config = SimConfig(seed=1, rpm=1200, latency_ms=20, limit_headers=headers)
    async with (
        await start_simulator(config) as sim,
        client_for(dialect, sim, concurrency=100) as client,
    ):
        results = await client.gather(PROMPTS)
        stats = client.statistics()
        counts = await sim_call(sim, "GET", "/_sim/stats")
    assert all(r.ok for r in results)
    assert "rpm" in stats.found and stats.learned == stats.found
    # The slow start overshoots once, and the first rate, measured over the few tens of ms the
    # job has run at 20 ms latency, overshoots once more after the first pause; then the found
    # rate holds: a few 429s, not a storm (sent blind at concurrency 100, the first wave alone
    # would take 39). Here 19 to 21 of 60 (15 to 17 on aiohttp's client, whose slower round
    # trips resend fewer times in the second the first rate holds; the rates found are the
    # same: 7,200 then 3,600 RPM).
    assert 0 < counts["by_status"].get("429", 0) <= len(PROMPTS) * 2 // 5


@pytest.mark.quiet
async def test_a_limit_lowered_while_the_job_runs_is_followed() -> None:
    config = SimConfig(seed=1, rpm=6000, latency_ms=20)  # 100 a second
    async with (
        await start_simulator(config) as sim,
        client_for("openai", sim, concurrency=100) as client,
    ):
        results: list[Result] = []
        async for result in client.map([f"p{i}" for i in range(200)]):
            results.append(result)
            if len(results) == 50:  # the provider halves the key's limit mid-run
                await sim_call(sim, "POST", "/_sim/limits", {"rpm": 3000})
        stats = client.statistics()
        counts = await sim_call(sim, "GET", "/_sim/stats")
    assert all(r.ok for r in results)
    assert dict(stats.learned) == {"rpm": 3000}
    # What was already granted at the old rate may meet the new limit; the rest is paced.
    assert counts["by_status"].get("429", 0) <= 10


async def test_a_users_limit_is_never_raised_by_an_announced_one() -> None:
    # The server allows 12,000 a minute and says so; the user said 1,200 (20 a second, 10 at
    # once with llmgather's half-second burst), so 30 requests cannot take under a second.
    async with (
        await start_simulator(SimConfig(seed=1, rpm=12_000)) as sim,
        client_for("openai", sim, rpm=1200) as client,
    ):
        started = time.monotonic()
        results = await client.gather(PROMPTS[:30])
        elapsed = time.monotonic() - started
        stats = client.statistics()
    assert all(r.ok for r in results)
    assert dict(stats.limits) == {"rpm": 1200} and dict(stats.learned) == {}
    assert elapsed >= 1.0  # a lower bound that only pacing can keep: never a speed claim
