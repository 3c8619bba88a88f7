"""`POST /v1/jobs` reads a body as `llmgather run` reads a file: tools and JSON answers in
OpenAI's spelling too, a UTF-16 body refused once saying how to convert it, and an id two
lines share explained when one of them has it as its number."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import jsonschema
import orjson
import pytest

from llmgather.sim.server import RunningSimulator
from tests.service.jobclient import JSONL, finished, results_of, settings_for
from tests.servicefixtures import serving

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
}
OPENAI_TOOL = {"type": "function", "function": {"name": "record_person", "parameters": PERSON}}
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_a_job_takes_tools_and_json_answers_in_openais_spelling(
    sim: RunningSimulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    lines = [
        {"id": "tool", "prompt": "Dana, 34.", "tools": [OPENAI_TOOL],
         "tool_choice": {"type": "function", "function": {"name": "record_person"}}},
        {"id": "json", "prompt": "Dana, 34.", "response_format": RESPONSE_FORMAT},
    ]  # fmt: skip
    body = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    async with serving(settings_for(sim, tmp_path)) as base:
        async with http.post(f"{base}/v1/jobs", data=body, headers=JSONL) as response:
            assert response.status == 202, await response.text()
            created = await response.json()
        job = await finished(http, base, created["id"])
        assert (job["done"], job["failed"]) == (2, 0)
        tool, answer = await results_of(http, base, job["id"])
    [call] = tool["tool_calls"]
    assert call["name"] == "record_person"
    jsonschema.validate(call["arguments"], PERSON)
    jsonschema.validate(orjson.loads(answer["text"]), PERSON)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            '{"prompt": "a"}\n{"prompt": "b"}\n'.encode("utf-16"),
            "body: this input is UTF-16; convert it to UTF-8 (e.g. pipe it through iconv",
        ),
        (
            b'{"prompt": "no id"}\n{"id": 1, "prompt": "says 1"}\n',
            "body lines 1 and 2 both have the id '1' (1 is line 1's number, the id of a line "
            "that gives none); give every line an id of its own, or give none",
        ),
    ],
    ids=["utf-16", "numbered-id"],
)
async def test_a_body_that_cannot_be_a_job_says_why_once(
    sim: RunningSimulator,
    tmp_path: Path,
    http: aiohttp.ClientSession,
    body: bytes,
    words: str,
) -> None:
    async with serving(settings_for(sim, tmp_path)) as base:
        async with http.post(f"{base}/v1/jobs", data=body, headers=JSONL) as response:
            assert response.status == 400, await response.text()
            message = (await response.json())["error"]["message"]
    assert words in message
    assert "invalid UTF-8" not in message
