"""The service's jobs as an HTTP client meets them, for the tests: a job's settings, a JSONL
body of prompts, and a job read, waited for and its results fetched."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from llmgather.service import ServiceSettings
from llmgather.sim.server import RunningSimulator

JSONL = {"Content-Type": "application/jsonl"}
WAIT_S = 20.0  # a bound on waiting for a job, never an assertion on time


def settings_for(sim: RunningSimulator, jobs_dir: Path, **extra: Any) -> ServiceSettings:
    return ServiceSettings(
        model="openai:gpt-4o-mini",
        base_url=sim.base_url + "/v1",
        api_key="k",
        jobs_dir=jobs_dir,
        **extra,
    )


def prompts(n: int, *, prefix: str = "q") -> bytes:
    return b"".join(
        orjson.dumps({"id": f"{prefix}{i}", "prompt": f"Question {i}?"}) + b"\n" for i in range(n)
    )


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait for `check()` to hold, up to WAIT_S: an HTTP client can only ask again."""
    async with asyncio.timeout(WAIT_S):
        for _ in itertools.count():
            if await check():
                return
            await asyncio.sleep(0.02)
    raise AssertionError(what)


async def job_of(http: aiohttp.ClientSession, base: str, id: str) -> dict[str, Any]:
    async with http.get(f"{base}/v1/jobs/{id}") as response:
        assert response.status == 200
        return await response.json()


async def finished(http: aiohttp.ClientSession, base: str, id: str) -> dict[str, Any]:
    async def done() -> bool:
        return (await job_of(http, base, id))["status"] == "done"

    await until(done, f"job {id} is done")
    return await job_of(http, base, id)


async def results_of(http: aiohttp.ClientSession, base: str, id: str) -> list[dict[str, Any]]:
    async with http.get(f"{base}/v1/jobs/{id}/results") as response:
        assert response.status == 200
        body = await response.read()
    return [orjson.loads(line) for line in body.splitlines()]
