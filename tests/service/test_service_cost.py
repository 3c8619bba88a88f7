"""What the service's answers cost: `llmgather serve --prices FILE` started as users start it,
every /generate answer, every /v1/jobs results line and every gateway answer priced at the
file's prices, and /metrics counting the cost by model: the sum of all of them."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from openai import AsyncOpenAI
from prometheus_client.parser import text_string_to_metric_families

from tests.clihelpers import run_cli
from tests.service.jobclient import JSONL, finished, prompts, results_of
from tests.servicefixtures import served_by_cli

# USD per million tokens: dear, so a few short answers cost whole cents.
INPUT, OUTPUT = Decimal(1000), Decimal(2000)


def price(usage: dict[str, int]) -> Decimal:
    return (usage["input_tokens"] * INPUT + usage["output_tokens"] * OUTPUT) / 1_000_000


def shown(cost: Any) -> Decimal:
    return Decimal(repr(cost))  # the number as the answer shows it


async def test_serve_prices_every_answer_and_counts_the_cost_by_model(tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_bytes(orjson.dumps({"gpt-4o-mini": {"input": 1000, "output": 2000}}))
    async with (
        served_by_cli(tmp_path, "--model", "sim:gpt-4o-mini", "--prices", str(prices)) as served,
        aiohttp.ClientSession() as http,
    ):
        base = served.url
        costs: list[Decimal] = []
        body = orjson.dumps({"prompt": "Why do some birds migrate?", "max_tokens": 16})
        async with http.post(f"{base}/generate", data=body) as response:
            assert response.status == 200
            answer = await response.json()
        assert answer["cost_basis"] == "standard"
        assert shown(answer["cost"]) == price(answer["usage"]) > 0
        costs.append(shown(answer["cost"]))

        async with http.post(f"{base}/v1/jobs?max_tokens=16", data=prompts(4), headers=JSONL) as r:
            assert r.status == 202
            job = await r.json()
        await finished(http, base, job["id"])
        lines = await results_of(http, base, job["id"])
        assert len(lines) == 4
        for line in lines:
            assert line["cost_basis"] == "standard"
            assert shown(line["cost"]) == price(line["usage"]) > 0
            costs.append(shown(line["cost"]))

        client = AsyncOpenAI(base_url=base + "/v1", api_key="client-key", max_retries=0)
        chat = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}], max_tokens=8
        )
        await client.close()
        assert chat.usage is not None
        costs.append(
            price({"input_tokens": chat.usage.prompt_tokens,
                   "output_tokens": chat.usage.completion_tokens})
        )  # fmt: skip

        async with http.get(f"{base}/metrics") as response:
            text = await response.text()
    samples = [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "llmgather_upstream_cost_usd_total"
    ]
    assert [sample.labels for sample in samples] == [{"model": "gpt-4o-mini"}], text
    assert abs(Decimal(repr(samples[0].value)) - sum(costs)) < Decimal("1e-9"), (costs, text)
    assert "--prices" not in served.stderr.decode()  # priced: no warning of a missing price


def test_serve_and_worker_refuse_a_malformed_prices_file(tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text('{"gpt-4o-mini": {"input": 1, "ouput": 2}}')
    for command in (["serve", "--port", "0"], ["worker", "--queue", "redis://127.0.0.1:9/0"]):
        done = run_cli(*command, "--prices", str(prices))
        assert done.returncode == 2, done.stderr
        assert "--prices" in done.stderr and "unknown fields ['ouput']" in done.stderr
