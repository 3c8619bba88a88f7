"""A spent quota is a quota error at once, never waited out like a rate limit: OpenAI's 429 on a
per-day limit ("requests per day (RPD)"), each provider's spend-limit answer (Anthropic's a 429
`rate_limit_error` told apart only by `error.details.error_code`), against the simulator over
loopback through the client, and through the official anthropic SDK as `client.call` maps it."""

from __future__ import annotations

from typing import Any

import pytest
from anthropic import AsyncAnthropic

from llmgather import Client, QuotaExhaustedError
from llmgather._sdk_errors import error_from_sdk
from llmgather.providers.anthropic import AnthropicProvider
from llmgather.sim import SimConfig, start_simulator
from tests.simfixtures import running, sim_stats

MODELS = {
    "openai": "openai:gpt-4o-mini",
    "anthropic": "anthropic:claude-3-5-haiku-latest",
    "gemini": "gemini:gemini-2.0-flash",
}


def client_for(dialect: str, base_url: str, **kwargs: Any) -> Client:
    base = base_url + "/v1" if dialect == "openai" else base_url
    return Client(MODELS[dialect], base_url=base, api_key="k", **kwargs)


async def test_openais_per_day_429_is_a_quota_error_not_a_wait() -> None:
    # Two requests a "day" of 2 s: the third is refused with "try again in 1s", a wait well
    # within the retry ceiling, that a rate limit's retry would take (and spend the quota on).
    # No limit headers: a day that short would read as a minute's limit in them.
    config = SimConfig(rpd=2, day_seconds=2, latency_ms=0, limit_headers=False)
    async with (
        await start_simulator(config) as sim,
        client_for("openai", sim.base_url, concurrency=1) as client,
    ):
        results = await client.gather(["a", "b", "c"])
        counts = await sim_stats(sim)
    assert [r.ok for r in results] == [True, True, False]
    refused = results[2]
    assert refused.error is not None and refused.error.type == "QuotaExhaustedError"
    assert "requests per day (RPD)" in refused.error.message
    assert "per-day limit: not retried" in refused.error.message
    assert refused.attempts == 1
    assert counts["by_status"] == {"200": 2, "429": 1}


@pytest.mark.parametrize("dialect", ["openai", "anthropic", "gemini"])
async def test_a_spend_limit_is_a_quota_error_sent_once(dialect: str) -> None:
    async with (
        running("spend=1") as sim,
        client_for(dialect, sim.base_url, concurrency=1) as client,
    ):
        result = (await client.gather(["a"]))[0]
        counts = await sim_stats(sim)
    assert result.error is not None and result.error.type == "QuotaExhaustedError"
    assert result.attempts == 1 and counts["received"] == 1


async def test_anthropics_spend_limit_through_the_sdk_maps_as_a_quota_error() -> None:
    async with (
        running("spend=1") as sim,
        AsyncAnthropic(base_url=sim.base_url, api_key="k", max_retries=0) as sdk,
    ):
        try:
            await sdk.messages.create(
                model="claude-sim", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
            )
        except Exception as exc:
            raised = exc
        else:
            raise AssertionError("the spend limit let the call through")
    assert getattr(raised, "status_code", None) == 429  # the SDK's RateLimitError family
    mapped = error_from_sdk(raised)
    assert isinstance(mapped, QuotaExhaustedError) and not mapped.retryable


def test_a_workspaces_spend_limit_is_a_quota_error() -> None:
    # The 400 a workspace's own spend limit answers, beside the organization's.
    body = (
        b'{"type":"error","error":{"type":"invalid_request_error","message":"You have reached '
        b"your specified workspace API usage limits. You will regain access on 2026-01-01 at "
        b'00:00 UTC."}}'
    )
    error = AnthropicProvider(api_key="k").parse_error(400, {}, body)
    assert isinstance(error, QuotaExhaustedError)
