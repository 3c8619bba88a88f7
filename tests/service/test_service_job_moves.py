"""`/v1/jobs` follows the rules of resume by line: a job the service was stopped in the middle
of resumes at the next start even when its upstream moved (another base URL of the same
provider), sending only what was left; another model is another job, and it says so."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.service.jobclient import finished, job_of, prompts, results_of, until
from tests.servicefixtures import served_by_cli
from tests.simfixtures import running

JSONL = {"Content-Type": "application/jsonl"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def upstream(base_url: str, *extra: str) -> list[str]:
    return ["--base-url", base_url + "/v1", "--api-key", "k", "--model", "gpt-4o-mini", *extra]


async def stopped_midway(
    tmp_path: Path, http: aiohttp.ClientSession, base_url: str, *, done: int
) -> str:
    """A job of 30 sent through `serve` to `base_url` at two requests a second, and the
    service stopped once `done` answers came: far from the job's end. The job's id."""
    async with served_by_cli(tmp_path, *upstream(base_url, "--rpm", "120")) as served:
        async with http.post(f"{served.url}/v1/jobs", data=prompts(30), headers=JSONL) as r:
            id: str = (await r.json())["id"]

        async def started() -> bool:
            return (await job_of(http, served.url, id))["done"] >= done

        await until(started, "the first answers arrive")
    return id


async def test_a_job_resumes_against_its_upstream_at_another_address(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with running(latency_ms=20) as first, running(latency_ms=0) as second:
        id = await stopped_midway(tmp_path, http, first.base_url, done=2)
        sent_first = first.handler.stats.snapshot()["received"]
        assert 2 <= sent_first < 30
        async with served_by_cli(tmp_path, *upstream(second.base_url)) as served:
            done = await finished(http, served.url, id)
            lines = await results_of(http, served.url, id)
        assert done["status"] == "done", done
        assert second.handler.stats.snapshot()["received"] == 30 - sent_first
        assert [line["id"] for line in lines] == [f"q{i}" for i in range(30)]
        assert all(line["status"] == "ok" for line in lines)


async def test_a_job_stopped_midway_is_not_resumed_against_another_model(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with running(latency_ms=20) as sim:
        id = await stopped_midway(tmp_path, http, sim.base_url, done=1)
        other = [arg if arg != "gpt-4o-mini" else "gpt-4o" for arg in upstream(sim.base_url)]
        async with served_by_cli(tmp_path, *other) as served:

            async def ended() -> bool:
                return (await job_of(http, served.url, id))["status"] == "failed"

            await until(ended, "the job is refused")
            record = await job_of(http, served.url, id)
        assert 'parameter \'model\' was "gpt-4o-mini" now "gpt-4o"' in record["error"]
