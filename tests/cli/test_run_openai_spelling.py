"""Input lines may offer tools and ask for JSON answers in OpenAI's own spelling (`{"type":
"function", "function": {...}}`, what LangChain's `convert_to_openai_tool` returns, and
`response_format`) beside llmgather's: read into one form, which each provider gets in its own.
Through `llmgather run` as a user runs it, against the simulator and a recording upstream."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from aiohttp import web
from langchain_core.utils.function_calling import convert_to_openai_tool

import llmgather
from llmgather._prompt import request_from_dict
from tests.clihelpers import read_jsonl, run_cli
from tests.loopbackserver import serving_handler

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
}
RECORD = {"name": "record_person", "description": "Record a person", "parameters": PERSON}
OPENAI_TOOL = {"type": "function", "function": RECORD}
OPENAI_CHOICE = {"type": "function", "function": {"name": "record_person"}}
SCHEMA = {"name": "person", "schema": PERSON, "strict": True}
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": SCHEMA}


def record_person(name: str, age: int) -> None:
    """Record a person."""


def write_lines(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return path


@pytest.mark.parametrize(
    "model",
    ["sim:gpt-4o-mini", "sim:anthropic:claude-3-5-haiku-latest", "sim:gemini:gemini-2.0-flash"],
)
def test_openai_spelled_tools_and_response_format_run_against_the_simulator(
    tmp_path: Path, model: str
) -> None:
    inputs = write_lines(
        tmp_path / "in.jsonl",
        [
            {"id": "openai", "prompt": "Dana, 34.", "tools": [OPENAI_TOOL],
             "tool_choice": OPENAI_CHOICE},
            {"id": "langchain", "prompt": "Dana, 34.",
             "tools": [convert_to_openai_tool(record_person)], "tool_choice": "required"},
            {"id": "schema", "prompt": "Dana, 34.", "response_format": RESPONSE_FORMAT},
        ],
    )  # fmt: skip
    output = tmp_path / "out.jsonl"
    done = run_cli("run", str(inputs), "-o", str(output), "-m", model, "--quiet", timeout=90)
    assert done.returncode == 0, done.stderr
    assert "unknown field" not in done.stderr  # response_format is read, not ignored
    lines = {line["id"]: line for line in read_jsonl(output)}
    for id in ("openai", "langchain"):
        [call] = lines[id]["tool_calls"]
        assert call["name"] == "record_person", lines[id]
        jsonschema.validate(call["arguments"], PERSON)  # the tool's schema reached the provider
    answer = lines["schema"]
    assert answer["status"] == "ok", answer
    jsonschema.validate(orjson.loads(answer["text"]), PERSON)


async def test_both_spellings_send_the_same_body(tmp_path: Path) -> None:
    bodies: list[dict[str, Any]] = []

    async def upstream(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.json_response(
            {
                "id": "chatcmpl-1", "object": "chat.completion", "created": 0,
                "model": "gpt-4o-mini",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "ok"}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            }
        )  # fmt: skip

    inputs = write_lines(
        tmp_path / "in.jsonl",
        [
            {"id": "own-tools", "prompt": "p", "tools": [RECORD],
             "tool_choice": {"name": "record_person"}},
            {"id": "openai-tools", "prompt": "p", "tools": [OPENAI_TOOL],
             "tool_choice": OPENAI_CHOICE},
            {"id": "own-schema", "prompt": "p", "json_schema": SCHEMA},
            {"id": "openai-schema", "prompt": "p", "response_format": RESPONSE_FORMAT},
        ],
    )  # fmt: skip
    output = tmp_path / "out.jsonl"
    async with serving_handler(upstream, access_log=False) as base:
        done = await asyncio.to_thread(
            run_cli,
            "run", str(inputs), "-o", str(output), "--quiet", "-c", "1",
            "-m", "openai:gpt-4o-mini", "--base-url", base + "/v1", "--api-key", "k",
            timeout=60,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(bodies) == 4
    with_tools = [b for b in bodies if "tools" in b]
    with_schema = [b for b in bodies if "response_format" in b]
    assert len(with_tools) == 2 and with_tools[0] == with_tools[1]
    assert with_tools[0]["tools"] == [OPENAI_TOOL]
    assert with_tools[0]["tool_choice"] == OPENAI_CHOICE
    assert len(with_schema) == 2 and with_schema[0] == with_schema[1]
    assert with_schema[0]["response_format"] == RESPONSE_FORMAT


def test_one_parser_reads_both_spellings_into_one_request() -> None:
    own = request_from_dict(
        {"prompt": "p", "tools": [RECORD], "tool_choice": {"name": "record_person"}}
    )
    openai = request_from_dict(
        {"prompt": "p", "tools": [OPENAI_TOOL], "tool_choice": OPENAI_CHOICE}
    )
    assert openai == own and own.tools == (RECORD,)
    schema = request_from_dict({"prompt": "p", "response_format": RESPONSE_FORMAT})
    assert schema == request_from_dict({"prompt": "p", "json_schema": SCHEMA})


async def test_the_clients_keywords_take_both_spellings() -> None:
    async with llmgather.Client("sim:gpt-4o-mini") as client:
        own = client.build_request("p", tools=[RECORD], tool_choice={"name": "record_person"})
        openai = client.build_request("p", tools=[OPENAI_TOOL], tool_choice=OPENAI_CHOICE)
        assert openai == own
        schema = client.build_request("p", response_format=RESPONSE_FORMAT)
        assert schema == client.build_request("p", json_schema=SCHEMA)
        answer = await client.complete("Dana, 34.", response_format=RESPONSE_FORMAT)
    jsonschema.validate(orjson.loads(answer), PERSON)


BAD_SPELLINGS = [
    ({"tools": [{"type": "retrieval", "function": RECORD}]}, 'field "tools[0].type" must be "function"'),
    ({"tools": [{"type": "function", "function": "f"}]}, 'field "tools[0].function" must be an object'),
    ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, 'field "tools[0].function.name"'),
    ({"tools": [{"type": "function", "function": RECORD, "x": 1}]}, 'field "tools[0]" has unknown key "x"'),
    ({"response_format": {"type": "json_object"}}, "give its schema"),
    ({"response_format": {"type": "json_schema"}}, '"response_format.json_schema" is missing'),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "array"}}}},
     '"response_format.json_schema.schema" must be a JSON schema of an object'),
    ({"response_format": RESPONSE_FORMAT, "json_schema": SCHEMA}, "give one"),
    ({"response_format": RESPONSE_FORMAT, "tools": [RECORD]}, "cannot go together"),
]  # fmt: skip


def test_a_bad_openai_spelling_is_an_invalid_line_naming_the_field_as_written(
    tmp_path: Path,
) -> None:
    lines = [{"prompt": "p", **fields} for fields, _ in BAD_SPELLINGS] + [{"prompt": "q"}]
    inputs = write_lines(tmp_path / "in.jsonl", lines)
    output = tmp_path / "out.jsonl"
    done = run_cli("run", str(inputs), "-o", str(output), "--quiet", timeout=60)
    assert done.returncode == 1, done.stderr
    *bad, good = read_jsonl(output)
    assert good["status"] == "ok"
    for n, (line, (_, message)) in enumerate(zip(bad, BAD_SPELLINGS, strict=True), 1):
        assert line["error"]["type"] == "invalid_input", line
        assert line["error"]["message"].startswith(f"{inputs}:{n}: ")
        assert message in line["error"]["message"], (n, line["error"]["message"])
