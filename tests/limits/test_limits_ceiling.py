"""A limit the user gives is a ceiling, not a floor: a server that announces less paces the
run, and the user is told once. OpenAI's requests headers carry a key's per-day limit where it
has one: it is read as a day's, not a minute's."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from openai import AsyncOpenAI

import llmgather
from llmgather.providers.openai import OpenAIProvider
from llmgather.sim import EmbeddedSimulator, SimConfig, start_simulator
from tests.clihelpers import read_jsonl, run_cli, write_prompts


def test_openai_requests_headers_with_a_days_reset_announce_a_day_limit() -> None:
    provider = OpenAIProvider(api_key="k")
    # A free key's 200 a day: one request refills in 432 s.
    free = {
        "x-ratelimit-limit-requests": "200",
        "x-ratelimit-remaining-requests": "199",
        "x-ratelimit-reset-requests": "7m12s",
    }
    assert provider.announced_limits(free) == {"rpd": 200, "rpd.remaining": 199}
    # 10,000 a day with one used refills in 8.64 s: shorter than a minute, yet a day's pace.
    tier = {
        "x-ratelimit-limit-requests": "10000",
        "x-ratelimit-remaining-requests": "9999",
        "x-ratelimit-reset-requests": "8.64s",
        "x-ratelimit-limit-tokens": "200000",
    }
    assert provider.announced_limits(tier) == {"rpd": 10000, "rpd.remaining": 9999, "tpm": 200000}
    # A minute's: 3 of 500 used refill in 360 ms.
    minute = {
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "497",
        "x-ratelimit-reset-requests": "360ms",
    }
    assert provider.announced_limits(minute) == {"rpm": 500, "rpm.remaining": 497}
    # Nothing used yet, or a reset that does not parse: read as a minute's, as before.
    unused = {**minute, "x-ratelimit-remaining-requests": "500", "x-ratelimit-reset-requests": "0s"}
    assert provider.announced_limits(unused) == {"rpm": 500, "rpm.remaining": 500}
    odd = {**minute, "x-ratelimit-reset-requests": "soon"}
    assert provider.announced_limits(odd) == {"rpm": 500, "rpm.remaining": 497}


def test_rpm_above_the_announced_limit_is_paced_at_the_announced_one(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 100)
    out = tmp_path / "results.jsonl"
    with EmbeddedSimulator(SimConfig(seed=4, rpm=600, latency_ms=20)) as sim:
        done = run_cli(
            "run",
            str(prompts),
            "-o",
            str(out),
            "--model",
            "openai:gpt-4o-mini",
            "--base-url",
            sim.base_url + "/v1",
            "--rpm",
            "3000",
            "--json",
            OPENAI_API_KEY="sk-sim",
        )
        stats = sim.stats
    assert done.returncode == 0, done.stderr
    assert all(line["status"] == "ok" for line in read_jsonl(out))
    summary = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert summary["ok"] == 100 and summary["failed"] == 0
    assert summary["learned_rpm"] == 600 and summary["learned_from"] == "headers"
    assert summary["overruled_limits"] == {"rpm": 3000}
    told = [line for line in done.stderr.splitlines() if "below your" in line]
    assert told == ["the server announces 600 req/min, below your --rpm 3000: paced at 600"]
    # Only the first wave, sent at the user's pace before any answer announced the key's, may
    # meet 429s (a second's worth of 3,000 a minute, less the server's burst of 10).
    assert stats["by_status"].get("429", 0) <= 40


async def test_map_calls_told_above_the_announced_limit_loses_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The README's `map_calls` example, against a key that allows 600 a minute: the SDK hides
    # its answers' headers, so the first 429's announce the key's limit.
    async with (
        await start_simulator(SimConfig(seed=1, rpm=600, latency_ms=20)) as sim,
        AsyncOpenAI(max_retries=0, base_url=sim.base_url + "/v1", api_key="sk-sim") as openai,
        llmgather.Client(
            "openai:gpt-4o-mini", base_url=sim.base_url + "/v1", rpm=3000, tpm=1_000_000
        ) as client,
    ):
        items = [
            {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": f"Summarise article {i}."}],
                "max_tokens": 100,
            }
            for i in range(40)
        ]
        results = [r async for r in client.map_calls(openai.chat.completions.create, items)]
        stats = client.statistics()
    assert all(r.ok for r in results)
    assert dict(stats.learned) == {"rpm": 600} and dict(stats.lowered) == {"rpm": 3000}
    told = [r.getMessage() for r in caplog.records if "below your" in r.getMessage()]
    assert len(told) == 1
