"""Every error the service answers itself reads alike, in OpenAI's error shape, and says what is
wrong: an unknown route or method (never FastAPI's `{"detail": "Not Found"}`), a body that is
malformed, nested too deeply or empty (each said so, with where), an unknown query parameter
of `/v1/jobs` (named, as `/generate` names an unknown field). On the service started for real
on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from llmgather.service import ServiceSettings
from tests.service.jobclient import JSONL, prompts
from tests.servicefixtures import serving

TOO_DEEP = b"[" * 2000 + b"]" * 2000  # past orjson's 1024 levels


@pytest.fixture
async def base(tmp_path: Path) -> AsyncIterator[str]:
    async with serving(ServiceSettings(model=None, jobs_dir=tmp_path / "jobs")) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def ask(
    http: aiohttp.ClientSession, method: str, url: str, **options: Any
) -> tuple[int, dict[str, Any]]:
    async with http.request(method, url, **options) as response:
        assert response.content_type == "application/json", await response.text()
        return response.status, await response.json()


def message_of(answer: dict[str, Any]) -> str:
    """The message of an error in the service's shape (OpenAI's; Anthropic's on its route)."""
    assert set(answer) in ({"error"}, {"type", "error"}) and "detail" not in answer, answer
    assert {"message", "type"} <= set(answer["error"]), answer
    return str(answer["error"]["message"])


@pytest.mark.parametrize(
    ("method", "path", "status", "words"),
    [
        ("GET", "/nowhere", 404, "no route GET /nowhere"),
        ("POST", "/v1/nothing/here", 404, "no route POST /v1/nothing/here"),
        ("GET", "/v1/jobs/x/y/z", 404, "/docs"),
        ("GET", "/docs/not-an-asset.js", 404, "no route GET /docs/not-an-asset.js"),
        ("DELETE", "/generate", 405, "/generate does not take DELETE; it takes POST"),
    ],
)
async def test_unknown_routes_and_methods_answer_in_the_services_error_shape(
    base: str, http: aiohttp.ClientSession, method: str, path: str, status: int, words: str
) -> None:
    got, answer = await ask(http, method, base + path)
    assert got == status
    assert words in message_of(answer)


@pytest.mark.parametrize("path", ["/generate", "/v1/chat/completions", "/v1/messages"])
@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"prompt": "Hi", ', "the body is not valid JSON: unexpected end of data at line 1"),
        (b'{"prompt": "Hi",\n "max_tokens": }', "not valid JSON: unexpected character"),
        (TOO_DEEP, "nested too deeply"),
        (b"", "the body is empty"),
        (b'["Hi"]', "the body must be a JSON object, not an array"),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_told_what_is_wrong_with_it(
    base: str, http: aiohttp.ClientSession, path: str, body: bytes, words: str
) -> None:
    status, answer = await ask(http, "POST", base + path, data=body)
    assert status == 400
    message = message_of(answer)
    assert words in message
    if body.strip() and not body.startswith(b"["):
        assert "must be a JSON object" not in message  # it is one, only broken


async def test_the_too_deep_body_names_the_depth_and_where(
    base: str, http: aiohttp.ClientSession
) -> None:
    _, answer = await ask(http, "POST", base + "/generate", data=TOO_DEEP)
    assert "more than 1024 levels deep, at line 1, column" in message_of(answer)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/jobs?limit=5&order=asc"),
        ("GET", "/v1/jobs/job_nope?verbose=1&limit=5"),
        ("GET", "/v1/jobs/job_nope/results?limit=5&order=asc"),
        ("DELETE", "/v1/jobs/job_nope?limit=5&order=asc"),
    ],
)
async def test_jobs_routes_refuse_unknown_query_parameters_by_name(
    base: str, http: aiohttp.ClientSession, method: str, path: str
) -> None:
    status, answer = await ask(http, method, base + path)
    assert status == 422
    message = message_of(answer)
    assert "unknown query parameter(s)" in message and "takes none" in message
    assert ("limit, order" in message) or ("limit, verbose" in message)


async def test_a_job_with_a_misspelt_parameter_is_refused_and_not_started(
    base: str, http: aiohttp.ClientSession
) -> None:
    status, answer = await ask(
        http, "POST", base + "/v1/jobs?max_token=5", data=prompts(2), headers=JSONL
    )
    assert status == 422
    message = message_of(answer)
    assert "unknown parameter(s) max_token" in message
    assert "max_tokens, temperature, system" in message
    form = aiohttp.FormData()
    form.add_field("file", prompts(2), filename="p.jsonl")
    form.add_field("temprature", "0.5")
    status, answer = await ask(http, "POST", base + "/v1/jobs", data=form)
    assert status == 422 and "unknown parameter(s) temprature" in message_of(answer)
    status, listed = await ask(http, "GET", base + "/v1/jobs")
    assert status == 200 and listed["data"] == []  # neither became a job
