"""Jobs over HTTP, end to end: the service started for real on 127.0.0.1 in front of a
simulator; jobs posted as JSONL or uploaded, watched, read, cancelled, and the same store
and files as `llmgather run` left on disk."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
import pytest

from llmgather._config import Limits
from llmgather.jobs.store import SQLiteJobStore, store_path_for
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
from tests.servicefixtures import post_head_only, served_by_cli, serving
from tests.simfixtures import running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_a_jsonl_job_runs_to_the_end_as_llmgather_run_would(
    sim: RunningSimulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    batch_line = {
        "custom_id": "b1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]},
    }
    body = prompts(3) + b"{not json\n" + orjson.dumps(batch_line) + b"\n"
    async with serving(settings_for(sim, tmp_path)) as base:
        async with http.post(f"{base}/v1/jobs?max_tokens=16", data=body, headers=JSONL) as r:
            assert r.status == 202
            created = await r.json()
            assert r.headers["location"] == f"/v1/jobs/{created['id']}"
        assert set(created) == {
            "id", "status", "total", "done", "failed", "created_at", "finished_at", "error"
        }  # fmt: skip
        assert created["status"] in ("queued", "running") and created["total"] == 5
        job = await finished(http, base, created["id"])
        assert (job["total"], job["done"], job["failed"]) == (5, 4, 1)
        assert job["finished_at"] >= job["created_at"]

        async with http.get(f"{base}/v1/jobs") as response:
            listing = await response.json()
        assert listing["object"] == "list" and listing["data"] == [job]

        lines = await results_of(http, base, job["id"])
        assert [line["id"] for line in lines] == ["q0", "q1", "q2", "4", "b1"]
        assert [line["status"] for line in lines] == ["ok", "ok", "ok", "error", "ok"]
        assert lines[4]["custom_id"] == "b1"
        assert "malformed JSON" in lines[3]["error"]["message"]
        assert all(line["text"] for line in lines if line["status"] == "ok")

    # The same files as `llmgather run`: its `status` reads the job.
    output = tmp_path / job["id"] / "results.jsonl"
    assert (tmp_path / job["id"] / "input.jsonl").read_bytes() == body
    assert [orjson.loads(line)["id"] for line in output.read_bytes().splitlines()] == [
        "q0", "q1", "q2", "4", "b1"
    ]  # fmt: skip
    status = run_cli("status", str(output), "--json", timeout=60)
    assert status.returncode == 0, status.stderr
    assert orjson.loads(status.stdout)["state"] == "complete"


async def test_a_multipart_upload_with_form_parameters(
    sim: RunningSimulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    form = aiohttp.FormData()
    form.add_field("file", prompts(2), filename="prompts.jsonl", content_type="application/jsonl")
    form.add_field("max_tokens", "8")
    form.add_field("system", "Answer briefly.")
    async with serving(settings_for(sim, tmp_path)) as base:
        async with http.post(f"{base}/v1/jobs", data=form) as response:
            assert response.status == 202, await response.text()
            created = await response.json()
        job = await finished(http, base, created["id"])
        assert (job["total"], job["done"], job["failed"]) == (2, 2, 0)
        assert [line["id"] for line in await results_of(http, base, job["id"])] == ["q0", "q1"]
    store = SQLiteJobStore.open(store_path_for(str(tmp_path / job["id"] / "results.jsonl")))
    with store:
        params = store._meta()["params"]
    assert (params["max_tokens"], params["system"]) == (8, "Answer briefly.")


@pytest.mark.parametrize(
    ("body", "headers", "status", "words"),
    [
        (b"", JSONL, 400, "the body is empty"),
        (b"hello\nworld\n", JSONL, 400, "no line of the body is a request"),
        (b"[1, 2]", {"Content-Type": "application/json"}, 400, "one JSON object per line"),
        (prompts(1) + prompts(1), JSONL, 400, "both have the id 'q0'"),
        (b"<jobs/>", {"Content-Type": "application/xml"}, 415, "application/jsonl"),
    ],
)
async def test_a_body_that_cannot_be_a_job_is_refused_saying_what_is_expected(
    sim: RunningSimulator,
    tmp_path: Path,
    http: aiohttp.ClientSession,
    body: bytes,
    headers: dict[str, str],
    status: int,
    words: str,
) -> None:
    async with serving(settings_for(sim, tmp_path)) as base:
        async with http.post(f"{base}/v1/jobs", data=body, headers=headers) as response:
            assert response.status == status
            error = (await response.json())["error"]
        assert words in error["message"]
        async with http.get(f"{base}/v1/jobs") as response:
            assert (await response.json())["data"] == []
    assert names_in(tmp_path) == []  # nothing half-made is left


def names_in(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


async def test_bad_parameters_and_unknown_ids_are_named(
    sim: RunningSimulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with serving(settings_for(sim, tmp_path)) as base:
        for query, name in (
            ("max_tokens=ten", "max_tokens"),
            ("temperature=-1", "temperature"),
            ("temperature=inf", "temperature"),
            ("temperature=2.5", "from 0 to 2"),  # the rule of `run` and of every input line
        ):
            async with http.post(f"{base}/v1/jobs?{query}", data=prompts(1), headers=JSONL) as r:
                assert r.status == 422
                assert name in (await r.json())["error"]["message"]
        form = aiohttp.FormData()
        form.add_field("upload", prompts(1), filename="p.jsonl")
        async with http.post(f"{base}/v1/jobs", data=form) as response:
            assert response.status == 400
            assert "`file` field" in (await response.json())["error"]["message"]
        for method, path in (
            ("GET", "/v1/jobs/job_nope"),
            ("GET", "/v1/jobs/job_nope/results"),
            ("DELETE", "/v1/jobs/job_nope"),
        ):
            async with http.request(method, base + path) as response:
                assert response.status == 404
                error = (await response.json())["error"]
            assert error["message"] == "no job with id 'job_nope'"
            assert error["type"] == "not_found_error"


async def test_cancel_stops_sending_and_keeps_what_finished(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with running(latency_ms=50, latency_jitter=0) as sim:
        # Two requests a second: the job is far from its end when it is cancelled.
        settings = settings_for(sim, tmp_path, limits=Limits(rpm=120))
        async with serving(settings) as base:
            async with http.post(f"{base}/v1/jobs", data=prompts(40), headers=JSONL) as r:
                id = (await r.json())["id"]

            async def started() -> bool:
                return (await job_of(http, base, id))["done"] >= 1

            await until(started, "the first answer arrives")
            async with http.delete(f"{base}/v1/jobs/{id}") as response:
                assert response.status == 200
                cancelled = await response.json()
            assert cancelled["status"] == "cancelled"
            assert 1 <= cancelled["done"] < 40 and cancelled["finished_at"] is not None
            sent = sim.handler.stats.snapshot()["received"]
            assert sent == cancelled["done"]  # nothing in flight was lost, nothing more sent

            lines = await results_of(http, base, id)
            assert [line["id"] for line in lines] == [f"q{i}" for i in range(len(lines))]
            assert len(lines) == cancelled["done"]
            assert await job_of(http, base, id) == cancelled

            async with http.delete(f"{base}/v1/jobs/{id}") as response:
                assert response.status == 200  # cancelling twice is no error
            async with http.post(f"{base}/v1/jobs", data=prompts(1), headers=JSONL) as r:
                small = (await r.json())["id"]
            await finished(http, base, small)
            async with http.delete(f"{base}/v1/jobs/{small}") as response:
                assert response.status == 409
                assert "already ended (done)" in (await response.json())["error"]["message"]

        # A cancelled job is not resumed by the next start.
        async with serving(settings) as base:
            assert await job_of(http, base, id) == cancelled
        assert sim.handler.stats.snapshot()["received"] == sent + 1


# What `curl -X POST localhost:8080/v1/jobs --data-binary @prompts.jsonl` sends, as the README
# shows it: curl labels a --data-binary body as a form.
CURL_HEADERS = {
    "User-Agent": "curl/8.5.0",
    "Accept": "*/*",
    "Content-Type": "application/x-www-form-urlencoded",
}


async def test_the_readmes_curl_command_starts_a_job(
    sim: RunningSimulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with serving(settings_for(sim, tmp_path)) as base:
        async with http.post(f"{base}/v1/jobs", data=prompts(3), headers=CURL_HEADERS) as r:
            assert r.status == 202, await r.text()
            created = await r.json()
        job = await finished(http, base, created["id"])
        assert (job["total"], job["done"], job["failed"]) == (3, 3, 0)
        # A form that is not JSONL is still refused, saying what to send.
        async with http.post(
            f"{base}/v1/jobs", data=b"max_tokens=5&prompt=hi", headers=CURL_HEADERS
        ) as r:
            assert r.status == 400
            assert "send JSONL" in (await r.json())["error"]["message"]


async def _chunks(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def test_a_job_body_over_the_limit_is_refused_413_as_it_arrives(
    sim: RunningSimulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    limit = 1024 * 1024
    big = prompts(26_000)  # valid JSONL, about 1.1 MB
    assert limit < len(big) < limit + 200 * 1024
    async with serving(settings_for(sim, tmp_path, max_job_bytes=limit)) as base:
        # No length said: counted as it streams in, and refused once past the limit.
        async with http.post(f"{base}/v1/jobs", data=_chunks(big), headers=JSONL) as r:
            assert r.status == 413
            assert "larger than 1 MB" in (await r.json())["error"]["message"]
        # A length said up front: refused before a byte of the body is read.
        head = {**JSONL, "Content-Length": str(100 * 1024 * 1024)}
        status, raw = await post_head_only(base, "/v1/jobs", head)
        assert status == 413 and b"--max-job-mb" in raw
        form = aiohttp.FormData()
        form.add_field(
            "file", io.BytesIO(big), filename="prompts.jsonl", content_type="application/jsonl"
        )
        async with http.post(f"{base}/v1/jobs", data=form) as r:
            assert r.status == 413
        async with http.get(f"{base}/v1/jobs") as r:
            assert (await r.json())["data"] == []
        async with http.post(f"{base}/v1/jobs", data=prompts(2), headers=JSONL) as r:
            assert r.status == 202  # under the limit: taken
    assert len(names_in(tmp_path)) == 1  # no trace of the refused bodies
    assert sim.handler.stats.received <= 2


async def test_serve_flags_bound_job_bodies_and_keep_generations_for_their_retention(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    # On the built-in simulator; a retention of 1.8 s, so the answer is read before it goes.
    async with served_by_cli(tmp_path, "--max-job-mb", "1", "--retention", "0.0005") as served:
        base = served.url
        big = prompts(26_000)
        async with http.post(f"{base}/v1/jobs", data=_chunks(big), headers=CURL_HEADERS) as r:
            assert r.status == 413
        body = orjson.dumps({"prompt": "Why?", "background": True})
        async with http.post(f"{base}/generate", data=body) as r:
            assert r.status == 202
            id = (await r.json())["id"]

        async def status_is(expected: int) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                async with http.get(f"{base}/generate/{id}") as response:
                    return response.status == expected

            return check

        await until(await status_is(200), "the background /generate is answered")
        await until(await status_is(404), "the background /generate is removed")
    assert not (tmp_path / "jobs" / "generate" / id).exists()
