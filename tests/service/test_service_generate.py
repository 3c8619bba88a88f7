"""`/generate`, plain and in the background, on the service started for real on 127.0.0.1;
and background work (a 202'd `/generate`, a job) finished after the service restarts."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from llmgather._config import Limits
from llmgather.jobs.store import SQLiteJobStore, store_path_for
from llmgather.service import ServiceSettings
from llmgather.sim.server import RunningSimulator
from tests.clihelpers import run_cli
from tests.service.jobclient import (
    JSONL,
    finished,
    job_of,
    prompts,
    results_of,
    settings_for,
    until,
)
from tests.servicefixtures import post_head_only, serving
from tests.simfixtures import running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def generate(http: aiohttp.ClientSession, base: str, body: Any) -> tuple[int, Any]:
    async with http.post(f"{base}/generate", data=orjson.dumps(body)) as response:
        return response.status, await response.json()


async def test_generate_answers_text_usage_attempts_and_latency(
    sim: RunningSimulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with serving(settings_for(sim, tmp_path)) as base:
        status, answer = await generate(
            http, base, {"prompt": "Why do some birds migrate?", "max_tokens": 16}
        )
    assert status == 200
    assert set(answer) == {"text", "usage", "cost", "cost_basis", "attempts", "latency_ms"}
    assert answer["text"] and answer["attempts"] == 1 and answer["latency_ms"] >= 0
    assert 0 < answer["usage"]["output_tokens"] <= 16
    assert answer["usage"]["total_tokens"] == (
        answer["usage"]["input_tokens"] + answer["usage"]["output_tokens"]
    )


async def test_generate_runs_on_the_embedded_simulator_without_a_key(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with serving(ServiceSettings(model=None, jobs_dir=tmp_path)) as base:
        status, answer = await generate(http, base, {"prompt": "Hello", "max_tokens": 8})
    assert status == 200 and answer["text"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"max_tokens": 8}, 422, 'field "prompt" must be a non-empty string'),
        ({"prompt": ""}, 422, 'field "prompt"'),
        ({"prompt": "Hi", "max_tokens": "ten"}, 422, 'field "max_tokens" must be a positive'),
        ({"prompt": "Hi", "max_tokens": True}, 422, 'field "max_tokens"'),
        ({"prompt": "Hi", "temperature": "hot"}, 422, 'field "temperature"'),
        ({"prompt": "Hi", "background": "yes"}, 422, 'field "background" must be true or false'),
        ({"prompt": "Hi", "max_token": 8}, 422, "unknown field(s) max_token"),
        (["Hi"], 400, "the body must be a JSON object"),
    ],
)
async def test_bad_input_is_refused_naming_the_field(
    sim: RunningSimulator,
    tmp_path: Path,
    http: aiohttp.ClientSession,
    body: Any,
    status: int,
    words: str,
) -> None:
    async with serving(settings_for(sim, tmp_path)) as base:
        got, answer = await generate(http, base, body)
    assert got == status
    assert words in answer["error"]["message"]
    assert sim.handler.stats.snapshot()["received"] == 0


async def test_an_upstream_failure_is_a_json_error_with_its_status(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with running(faults="quota=1") as sim:
        settings = dataclasses.replace(settings_for(sim, tmp_path), api_key="sk-test-secret-42")
        async with serving(settings) as base:
            async with http.post(f"{base}/generate", json={"prompt": "Hi"}) as response:
                status, raw = response.status, await response.read()
    assert status == 503  # the upstream's capacity, not the client's fault
    assert "out of capacity" in orjson.loads(raw)["error"]["message"]
    assert b"secret-42" not in raw


async def test_a_background_generate_is_read_once_done(
    sim: RunningSimulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with serving(settings_for(sim, tmp_path)) as base:
        status, accepted = await generate(
            http, base, {"prompt": "Why?", "max_tokens": 8, "background": True}
        )
        assert status == 202 and accepted["status"] in ("queued", "running")
        id = accepted["id"]
        answer = await _answer(http, base, id)
        assert answer["status"] == "done" and answer["text"] and answer["attempts"] == 1
        assert answer["usage"]["output_tokens"] <= 8
        async with http.get(f"{base}/generate/gen_nope") as response:
            assert response.status == 404
        async with http.get(f"{base}/v1/jobs") as response:
            assert (await response.json())["data"] == []  # not a job of the jobs API
    assert (tmp_path / "generate" / id / "results.jsonl").exists()


async def test_background_work_is_finished_after_a_restart(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with running(latency_ms=20, latency_jitter=0) as sim:
        # One request every 10 s: the first answer comes, then everything else waits.
        first = settings_for(sim, tmp_path, limits=Limits(rpm=6))
        async with serving(first) as base:
            async with http.post(f"{base}/v1/jobs", data=prompts(6), headers=JSONL) as r:
                job_id = (await r.json())["id"]

            async def one_done() -> bool:
                return (await job_of(http, base, job_id))["done"] == 1

            await until(one_done, "the job's first answer")
            status, accepted = await generate(http, base, {"prompt": "Why?", "background": True})
            assert status == 202
            gen_id = accepted["id"]
            async with http.get(f"{base}/generate/{gen_id}") as response:
                assert response.status == 202
        # Stopped mid-job: what waited for the limiter was never sent, and stays on disk.
        assert sim.handler.stats.snapshot()["received"] == 1
        with SQLiteJobStore.open(store_path_for(str(tmp_path / job_id / "results.jsonl"))) as s:
            assert (s.stats().done, s.stats().pending, s.stats().state) == (1, 5, "interrupted")

        second = dataclasses.replace(first, limits=Limits())
        async with serving(second) as base:
            answer = await _answer(http, base, gen_id)
            assert answer["status"] == "done" and answer["text"]
            job = await finished(http, base, job_id)
            assert (job["total"], job["done"], job["failed"]) == (6, 6, 0)
            lines = await results_of(http, base, job_id)
        assert [line["id"] for line in lines] == [f"q{i}" for i in range(6)]
        assert all(line["status"] == "ok" for line in lines)
        assert sim.handler.stats.snapshot()["received"] == 7  # one request per input, no more


async def _answer(http: aiohttp.ClientSession, base: str, id: str) -> dict[str, Any]:
    async def done() -> bool:
        async with http.get(f"{base}/generate/{id}") as response:
            return response.status == 200

    await until(done, f"the background /generate {id} is done")
    async with http.get(f"{base}/generate/{id}") as response:
        return await response.json()


async def test_a_body_over_32_mb_is_refused_413_before_it_is_read(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    async with serving(settings_for(sim, tmp_path)) as base:
        head = {"Content-Type": "application/json", "Content-Length": str(33 * 1024 * 1024)}
        status, raw = await post_head_only(base, "/generate", head)
    assert status == 413
    assert "larger than 32 MB" in orjson.loads(raw)["error"]["message"]
    assert sim.handler.stats.received == 0


async def test_temperature_follows_the_rule_of_run(
    sim: RunningSimulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with serving(settings_for(sim, tmp_path)) as base:
        status, refused = await generate(http, base, {"prompt": "Why?", "temperature": 2.5})
        assert status == 422
        assert "from 0 to 2" in refused["error"]["message"]
        status, _ = await generate(http, base, {"prompt": "Why?", "temperature": 2})
        assert status == 200
    run = run_cli("run", "-", "-o", str(tmp_path / "out.jsonl"), "--temperature", "2.5")
    assert run.returncode == 2 and "0<=x<=2" in run.stderr


async def _background(http: aiohttp.ClientSession, base: str) -> str:
    status, accepted = await generate(http, base, {"prompt": "Why?", "background": True})
    assert status == 202
    await _answer(http, base, accepted["id"])
    return str(accepted["id"])


async def _gone(http: aiohttp.ClientSession, base: str, id: str) -> None:
    async def removed() -> bool:
        async with http.get(f"{base}/generate/{id}") as response:
            return response.status == 404

    await until(removed, f"the background /generate {id} is removed")


async def _removed_from_disk(folder: Path) -> None:
    # The id is forgotten first (a 404 at once), then its folder removed on a thread.
    async def removed() -> bool:
        return not await asyncio.to_thread(folder.exists)

    await until(removed, f"{folder} is removed")


async def test_finished_background_generates_beyond_the_retention_count_are_removed(
    sim: RunningSimulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with serving(settings_for(sim, tmp_path, retention_max=2)) as base:
        ids = [await _background(http, base) for _ in range(3)]
        await _gone(http, base, ids[0])
        async with http.get(f"{base}/generate/{ids[0]}") as response:
            assert "--retention" in (await response.json())["error"]["message"]
        for kept in ids[1:]:
            async with http.get(f"{base}/generate/{kept}") as response:
                assert response.status == 200
    assert sorted(p.name for p in (tmp_path / "generate").iterdir()) == sorted(ids[1:])


async def test_finished_background_generates_are_removed_once_past_the_retention_time(
    sim: RunningSimulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with serving(settings_for(sim, tmp_path, retention_s=1.0)) as base:
        first = await _background(http, base)
        await _gone(http, base, first)
        await _removed_from_disk(tmp_path / "generate" / first)
        second = await _background(http, base)  # the timer, idle in between, wakes again
        await _gone(http, base, second)
        await _removed_from_disk(tmp_path / "generate" / second)
    assert list((tmp_path / "generate").iterdir()) == []


async def test_a_restart_removes_what_is_past_the_retention(
    sim: RunningSimulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with serving(settings_for(sim, tmp_path)) as base:
        ids = [await _background(http, base) for _ in range(3)]
    async with serving(settings_for(sim, tmp_path, retention_max=1)) as base:
        # Removed as the service starts, before it serves.
        assert [p.name for p in (tmp_path / "generate").iterdir()] == [ids[-1]]
        async with http.get(f"{base}/generate/{ids[0]}") as response:
            assert response.status == 404
        async with http.get(f"{base}/generate/{ids[-1]}") as response:
            assert response.status == 200
