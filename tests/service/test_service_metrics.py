"""`GET /metrics`: the service started for real, traffic from the OpenAI SDK over loopback,
the scrape read back with prometheus_client's own parser and checked against the SDK's answers
and the simulator's count of what it received."""

from __future__ import annotations

from typing import Any

import aiohttp
from openai import AsyncOpenAI
from prometheus_client.parser import text_string_to_metric_families

from llmgather._config import Limits
from llmgather._retry import RetryPolicy
from llmgather.service import ServiceSettings
from llmgather.sim import SimConfig
from tests.servicefixtures import serving
from tests.simfixtures import running

CANARY = "sk-canary-metrics-3f9d0c2a7b"
CHAT = "/v1/chat/completions"
MESSAGES: Any = [{"role": "user", "content": "Count the metrics."}]


class Scrape:
    """One `/metrics` response, parsed: a sample's value by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(self, name: str, **labels: str) -> float:
        found = [s.value for s in self._samples(name) if s.labels == labels]
        assert len(found) == 1, f"{name}{labels}: {found} in\n{self.text}"
        return found[0]

    def labelled(self, name: str) -> list[dict[str, str]]:
        return [s.labels for s in self._samples(name)]

    def _samples(self, name: str) -> list[Any]:
        return [s for f in self.families.values() for s in f.samples if s.name == name]


def sdk(base_url: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=base_url + "/v1", api_key="client-key", max_retries=0)


async def scrape(base_url: str, **headers: str) -> Scrape:
    async with (
        aiohttp.ClientSession() as http,
        http.get(base_url + "/metrics", headers=headers) as response,
    ):
        assert response.status == 200, await response.text()
        assert response.headers["content-type"].startswith("text/plain; version=")
        return Scrape(await response.text())


async def test_metrics_count_the_gateway_traffic_and_never_show_the_key() -> None:
    async with (
        running(seed=1) as sim,
        serving(
            ServiceSettings(
                model="openai:gpt-4o-mini",
                base_url=sim.base_url + "/v1",
                api_key=CANARY,
                limits=Limits(rpm=6000),
            )
        ) as base_url,
    ):
        async with sdk(base_url) as client:
            input_tokens = output_tokens = 0
            for _ in range(3):
                answer = await client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES
                )
                assert answer.usage is not None
                input_tokens += answer.usage.prompt_tokens
                output_tokens += answer.usage.completion_tokens
            stream = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
            async for chunk in stream:
                if chunk.usage is not None:
                    input_tokens += chunk.usage.prompt_tokens
                    output_tokens += chunk.usage.completion_tokens
        async with aiohttp.ClientSession() as http:
            async with http.post(base_url + CHAT, data=b"not json") as response:
                assert response.status == 400
            async with http.get(base_url + "/no/such/route/x1") as response:
                assert response.status == 404

        metrics = await scrape(base_url)

    requests = "llmgather_http_requests_total"
    assert metrics.value(requests, route=CHAT, method="POST", status="200") == 4
    assert metrics.value(requests, route=CHAT, method="POST", status="400") == 1
    # A path no route matched is counted under one label, never under its raw path.
    assert metrics.value(requests, route="(unmatched)", method="GET", status="404") == 1
    assert "/no/such/route/x1" not in metrics.text
    duration = "llmgather_http_request_duration_seconds_count"
    assert metrics.value(duration, route=CHAT) == 5
    assert metrics.value("llmgather_http_response_start_seconds_count", route=CHAT) == 5
    # What went upstream, as the SDK saw it answered and the simulator saw it received.
    assert metrics.value("llmgather_upstream_sent_total") == 4
    assert metrics.value("llmgather_upstream_done_total") == 4
    assert metrics.value("llmgather_upstream_failed_total") == 0
    assert sim.handler.stats.received == 4
    assert metrics.value("llmgather_upstream_tokens_total", kind="input") == input_tokens
    assert metrics.value("llmgather_upstream_tokens_total", kind="output") == output_tokens
    # At rest.
    assert metrics.value("llmgather_upstream_in_flight") == 0
    assert metrics.value("llmgather_queue_waiting") == 0
    assert metrics.value("llmgather_queue_refused_total") == 0
    # The limit set, and what is left of its burst (rpm 6000 lets half a second out at once).
    assert metrics.value("llmgather_limiter_limit", budget="rpm", origin="set") == 6000
    assert 0 <= metrics.value("llmgather_limiter_budget_remaining", budget="rpm") <= 50
    assert CANARY not in metrics.text


async def test_metrics_count_upstream_429s_and_retries() -> None:
    async with (
        running(faults="429=0.5", fault_retry_after_s=0.05, seed=3) as sim,
        serving(
            ServiceSettings(
                model="openai:gpt-4o-mini",
                base_url=sim.base_url + "/v1",
                api_key=CANARY,
                retry=RetryPolicy(max_attempts=10),
            )
        ) as base_url,
    ):
        async with sdk(base_url) as client:
            for _ in range(6):
                await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        metrics = await scrape(base_url)
        limited = sim.handler.stats.by_status.get(429, 0)
        received = sim.handler.stats.received

    assert limited > 0  # the seeded faults refused some
    assert metrics.value("llmgather_upstream_http_429_total") == limited
    assert metrics.value("llmgather_upstream_retries_total") == limited
    # A 429 holds the key only while most of the latest answers are 429s; the others hold only
    # their own retry (`limits.refusals`).
    assert metrics.value("llmgather_limiter_penalties_total") <= limited
    assert metrics.value("llmgather_upstream_sent_total") + limited == received
    assert metrics.value("llmgather_upstream_done_total") == 6
    assert CANARY not in metrics.text


async def test_metrics_before_any_traffic_and_without_limits() -> None:
    async with serving(ServiceSettings(simulator=SimConfig(latency_ms=0))) as base_url:
        metrics = await scrape(base_url)
    assert metrics.value("llmgather_upstream_sent_total") == 0
    assert metrics.value("llmgather_upstream_in_flight") == 0
    assert metrics.labelled("llmgather_limiter_budget_remaining") == []  # no budget set
    assert metrics.value("llmgather_limiter_max_concurrency") == Limits().concurrency


async def test_metrics_need_the_bearer_token_when_one_is_set() -> None:
    settings = ServiceSettings(simulator=SimConfig(latency_ms=0), token="t0ken-m")
    async with serving(settings) as base_url:
        async with aiohttp.ClientSession() as http:
            async with http.get(base_url + "/metrics") as response:
                assert response.status == 401
            # The query-string token is the dashboard's alone.
            async with http.get(base_url + "/metrics?token=t0ken-m") as response:
                assert response.status == 401
        metrics = await scrape(base_url, Authorization="Bearer t0ken-m")
    assert "t0ken-m" not in metrics.text
