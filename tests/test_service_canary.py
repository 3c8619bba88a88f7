"""The service's upstream key appears in no response, log line, metric or stored row: a canary
key, refused by the upstream and accepted by it, through every route that can show anything."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import orjson
import pytest

from llmgather.service import ServiceSettings
from tests.servicefixtures import serving
from tests.simfixtures import running
from tests.test_service_jobs import finished, prompts

CANARY = "sk-canary-7f3a9c2e51d84b06"


async def _everything_shown(http: aiohttp.ClientSession, url: str) -> list[bytes]:
    """What the service says on every route after some traffic, jobs included."""
    shown: list[bytes] = []

    async def keep(response: aiohttp.ClientResponse) -> None:
        shown.append(str(response.headers).encode())
        shown.append(await response.read())

    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(url + "/v1/chat/completions", json=chat) as response:
        await keep(response)
    async with http.post(url + "/v1/chat/completions", json={**chat, "stream": True}) as response:
        await keep(response)
    async with http.post(url + "/generate", json={"prompt": "hi"}) as response:
        await keep(response)
    async with http.post(url + "/generate", json={"prompt": "hi", "background": True}) as response:
        generation = (await response.json())["id"]
    async with http.post(
        url + "/v1/jobs", data=prompts(3), headers={"content-type": "application/jsonl"}
    ) as response:
        job = (await response.json())["id"]
    await finished(http, url, job)
    for _ in range(400):  # the background /generate ends too (bounded wait)
        async with http.get(f"{url}/generate/{generation}") as response:
            if response.status != 202:
                await keep(response)
                break
        await asyncio.sleep(0.025)
    for path in (
        "/v1/jobs",
        f"/v1/jobs/{job}",
        f"/v1/jobs/{job}/results",
        "/v1/models",
        "/metrics",
        "/readyz",
        "/healthz",
        "/",
        "/openapi.json",
    ):
        async with http.get(url + path) as response:
            await keep(response)
    async with http.get(url + "/dashboard/events") as events:
        shown.append(await events.content.readuntil(b"\n\n"))  # one snapshot
    return shown


@pytest.mark.parametrize("accepted", [False, True], ids=["refused", "accepted"])
async def test_the_upstream_key_appears_nowhere(
    accepted: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    required = CANARY if accepted else "another-key"
    async with running(seed=1, require_key=required) as sim:
        settings = ServiceSettings(
            model="openai:gpt-4o-mini",
            base_url=sim.base_url + "/v1",
            api_key=CANARY,
            jobs_dir=tmp_path / "jobs",
        )
        async with serving(settings) as url, aiohttp.ClientSession() as http:
            shown = await _everything_shown(http, url)
    assert sim.handler.stats.received > 0
    assert not [page for page in shown if CANARY.encode() in page]
    assert CANARY not in caplog.text
    stored = [p for p in (tmp_path / "jobs").rglob("*") if p.is_file()]
    assert stored  # the jobs' inputs, results and SQLite stores
    assert not [p for p in stored if CANARY.encode() in p.read_bytes()]
    # The answers did come through when the key was accepted.
    results = b"".join(p.read_bytes() for p in stored if p.name == "results.jsonl")
    assert (b'"status":"ok"' in results) is accepted
    assert orjson.loads(results.splitlines()[0])["id"]
