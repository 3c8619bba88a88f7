"""Tool calls in every dialect: requests offer tools in one llmgather spelling, answers carry
`tool_calls` (plain and streamed) into the Result and the output line, and the simulator's
calls are judged by `jsonschema` and by the official SDKs."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import openai
import orjson
import pydantic
import pytest
from anthropic import AsyncAnthropic
from google import genai
from google.genai import types

import llmgather
from llmgather import InvalidInputError, Request, Result, ToolCall
from llmgather._prompt import request_from_dict
from llmgather.jobs.encoding import render_result
from llmgather.jobs.queue.wire import (
    request_from_wire,
    request_to_wire,
    result_from_wire,
    result_to_wire,
)
from llmgather.providers.anthropic import AnthropicProvider
from llmgather.providers.gemini import GeminiProvider
from llmgather.providers.openai import OpenAIProvider
from llmgather.sim import RunningSimulator
from llmgather.sim.structured import value_for
from tests.clihelpers import run_cli
from tests.simfixtures import running

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "email": {"type": "string", "format": "email"},
        "role": {"type": "string", "enum": ["engineer", "manager", "designer"]},
        "skills": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 4},
        "remote": {"type": "boolean"},
        "salary": {"type": "number", "exclusiveMinimum": 0, "maximum": 250000},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": "string", "maxLength": 5}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "age", "role", "skills", "address"],
    "additionalProperties": False,
}
RECORD = {"name": "record_person", "description": "Record a person", "parameters": PERSON}
WEATHER = {
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
PROMPT = "Call record_person for: Dana, 34, engineer in Lyon."
MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-5-haiku-latest",
    "gemini": "gemini-2.0-flash",
}


def valid(arguments: Any, schema: dict[str, Any] = PERSON) -> bool:
    checker = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    return not list(checker.iter_errors(arguments))


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with running(seed=3) as simulator:
        yield simulator


def base_url(sim: RunningSimulator, dialect: str) -> str:
    return sim.base_url + ("/v1" if dialect == "openai" else "")


# -- through llmgather, every dialect, plain and streamed --------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("dialect", ["openai", "anthropic", "gemini"])
async def test_a_tool_call_reaches_the_result_in_every_dialect(
    sim: RunningSimulator, dialect: str, stream: bool
) -> None:
    url = base_url(sim, dialect)
    async with llmgather.Client(MODELS[dialect], base_url=url, api_key="k", stream=stream) as c:
        [result] = await c.gather([{"prompt": PROMPT, "tools": [WEATHER, RECORD]}])
        again = await c.complete_result(PROMPT, tools=[WEATHER, RECORD])
    assert result.ok and result.finish_reason == "tool_calls"
    [call] = result.tool_calls
    assert call.name == "record_person" and call.id and call.raw_arguments is None
    assert valid(call.arguments)
    assert again.tool_calls[0].arguments == call.arguments  # deterministic
    line = orjson.loads(render_result("p1", result, None))
    assert line["tool_calls"] == [{"id": call.id, "name": call.name, "arguments": call.arguments}]


@pytest.mark.parametrize("dialect", ["openai", "anthropic", "gemini"])
async def test_the_choice_decides_whether_the_simulator_calls_a_tool(
    sim: RunningSimulator, dialect: str
) -> None:
    url = base_url(sim, dialect)
    async with llmgather.Client(MODELS[dialect], base_url=url, api_key="k") as c:
        tools = [WEATHER, RECORD]
        unnamed = await c.complete_result("Hello there", tools=tools)
        required = await c.complete_result("Hello there", tools=tools, tool_choice="required")
        named = await c.complete_result("Hi", tools=tools, tool_choice={"name": "record_person"})
        none = await c.complete_result(PROMPT, tools=tools, tool_choice="none")
    assert unnamed.tool_calls == () and unnamed.text and unnamed.finish_reason == "stop"
    assert [call.name for call in required.tool_calls] == ["get_weather"]
    assert valid(required.tool_calls[0].arguments, WEATHER["parameters"])
    assert [call.name for call in named.tool_calls] == ["record_person"]
    assert none.tool_calls == () and none.text


# -- the official SDKs as judges of the simulator ----------------------------------------------


class Person(pydantic.BaseModel):
    name: str
    age: int = pydantic.Field(ge=0, le=120)
    role: str
    skills: list[str]


async def test_the_openai_sdk_parses_the_calls_plain_and_streamed(sim: RunningSimulator) -> None:
    client = openai.AsyncOpenAI(base_url=sim.base_url + "/v1", api_key="k", max_retries=0)
    tool = openai.pydantic_function_tool(Person, name="record_person")
    messages: Any = [{"role": "user", "content": PROMPT}]
    plain = await client.chat.completions.parse(
        model="gpt-4o-mini", messages=messages, tools=[tool]
    )
    [call] = plain.choices[0].message.tool_calls or []
    assert plain.choices[0].finish_reason == "tool_calls"
    assert isinstance(call.function.parsed_arguments, Person)
    async with client.chat.completions.stream(
        model="gpt-4o-mini", messages=messages, tools=[tool]
    ) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    [streamed] = final.choices[0].message.tool_calls or []
    assert streamed.function.parsed_arguments == call.function.parsed_arguments
    raw = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=messages,
        tools=[{"type": "function", "function": RECORD}],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "record_person"}},
    )
    arguments = (raw.choices[0].message.tool_calls or [])[0].function.arguments  # type: ignore[union-attr]
    assert valid(orjson.loads(arguments))
    await client.close()


async def test_the_anthropic_sdk_reads_tool_use_plain_and_streamed(sim: RunningSimulator) -> None:
    client = AsyncAnthropic(base_url=sim.base_url, api_key="k", max_retries=0)
    args: Any = {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 200,
        "messages": [{"role": "user", "content": "Who is Dana?"}],
        "tools": [{"name": "record_person", "input_schema": PERSON}],
        "tool_choice": {"type": "tool", "name": "record_person"},
    }
    plain = await client.messages.create(**args)
    [block] = plain.content
    assert plain.stop_reason == "tool_use" and block.type == "tool_use"
    assert valid(block.input)
    async with client.messages.stream(**args) as stream:
        final = await stream.get_final_message()  # the SDK joins the input_json_delta pieces
    [streamed] = final.content
    assert streamed.type == "tool_use" and streamed.input == block.input
    await client.close()


async def test_the_gemini_sdk_reads_function_calls_plain_and_streamed(
    sim: RunningSimulator,
) -> None:
    async with aiohttp.ClientSession() as session:
        options = types.HttpOptions(
            base_url=sim.base_url,
            aiohttp_client=session,
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        client = genai.Client(api_key="k", http_options=options)
        declaration = types.FunctionDeclaration(
            name="record_person", description="Record", parameters_json_schema=PERSON
        )
        calling = types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.ANY)
        config = types.GenerateContentConfig(
            tools=[types.Tool(function_declarations=[declaration])],
            tool_config=types.ToolConfig(function_calling_config=calling),
        )
        plain = await client.aio.models.generate_content(
            model="gemini-2.0-flash", contents="Who is Dana?", config=config
        )
        [call] = plain.function_calls or []
        assert call.name == "record_person" and valid(call.args)
        calls = []
        async for chunk in await client.aio.models.generate_content_stream(
            model="gemini-2.0-flash", contents="Who is Dana?", config=config
        ):
            calls += chunk.function_calls or []
        assert [(c.name, c.args) for c in calls] == [(call.name, call.args)]


# -- what the adapters send and read -----------------------------------------------------------


def body(provider: Any, request: Request) -> dict[str, Any]:
    return orjson.loads(provider.build_request(request, model="m", stream=False).body)


def test_one_spelling_of_tools_is_translated_for_each_provider() -> None:
    request = request_from_dict(
        {"prompt": "x", "tools": [RECORD], "tool_choice": {"name": "record_person"}}
    )
    sent = body(OpenAIProvider(api_key="k"), request)
    assert sent["tools"] == [{"type": "function", "function": RECORD}]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "record_person"}}
    sent = body(AnthropicProvider(api_key="k"), request)
    assert sent["tools"] == [
        {"name": "record_person", "description": "Record a person", "input_schema": PERSON}
    ]
    assert sent["tool_choice"] == {"type": "tool", "name": "record_person"}
    sent = body(GeminiProvider(api_key="k"), request)
    [declaration] = sent["tools"][0]["functionDeclarations"]
    assert declaration["parametersJsonSchema"] == PERSON
    assert sent["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["record_person"]}
    }
    words = {"auto": ("auto", "auto", "AUTO"), "required": ("required", "any", "ANY")}
    words["none"] = ("none", "none", "NONE")
    for choice, (openai_word, anthropic_word, gemini_mode) in words.items():
        request = request.replace(tool_choice=choice)
        assert body(OpenAIProvider(api_key="k"), request)["tool_choice"] == openai_word
        assert (
            body(AnthropicProvider(api_key="k"), request)["tool_choice"]["type"] == anthropic_word
        )
        calling = body(GeminiProvider(api_key="k"), request)["toolConfig"]["functionCallingConfig"]
        assert calling == {"mode": gemini_mode}


def test_arguments_that_are_not_a_json_object_keep_their_text_and_the_item_ok() -> None:
    answer = {
        "choices": [
            {
                "message": {
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a": 1'},
                        },
                        {
                            "id": "c2",
                            "type": "function",
                            "function": {"name": "g", "arguments": ""},
                        },
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ]
    }
    completion = OpenAIProvider(api_key="k").parse_response(200, {}, orjson.dumps(answer))
    broken, empty = completion.tool_calls
    assert broken == ToolCall("c1", "f", None, '{"a": 1')
    assert empty == ToolCall("c2", "g", {})  # no arguments at all: an empty object
    result = Result(id="x", status="ok", text="", tool_calls=completion.tool_calls)
    line = orjson.loads(render_result("x", result, None))
    assert line["status"] == "ok"
    assert line["tool_calls"][0] == {
        "id": "c1",
        "name": "f",
        "arguments": None,
        "raw_arguments": '{"a": 1',
    }


def test_a_line_without_calls_keeps_the_shape_it_always_had() -> None:
    line = orjson.loads(render_result("x", Result(id="x", status="ok", text="hi"), None))
    assert "tool_calls" not in line and list(line)[:3] == ["id", "status", "text"]


def test_tools_and_calls_cross_a_redis_queue_intact() -> None:
    request = request_from_dict({"prompt": "x", "tools": [RECORD], "tool_choice": "required"})
    assert request_from_wire(request_to_wire(request), id="") == request
    result = Result(id="r", status="ok", text="", tool_calls=(ToolCall("c", "f", {"a": 1}),))
    back = result_from_wire(result_to_wire(result), id="r")
    assert back.tool_calls == result.tool_calls


# -- the prompt parser's errors name the field -------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tools": {"name": "f"}}, 'field "tools" must be a non-empty list'),
        ({"tools": []}, 'field "tools" must be a non-empty list'),
        ({"tools": ["f"]}, 'field "tools[0]" must be an object'),
        ({"tools": [{"type": "retrieval", "function": RECORD}]}, 'field "tools[0].type" must be'),
        ({"tools": [{"description": "d"}]}, 'field "tools[0].name" must be 1 to 64'),
        ({"tools": [{"name": "a b"}]}, 'field "tools[0].name" must be 1 to 64'),
        ({"tools": [{"name": "f", "parameters": {"type": "string"}}]}, '"tools[0].parameters"'),
        ({"tools": [{"name": "f", "parameter": {}}]}, 'field "tools[0]" has unknown key'),
        ({"tools": [WEATHER, WEATHER]}, "two tools are named"),
        ({"tools": [{"name": "json_answer"}]}, "is reserved"),
        ({"tool_choice": "auto"}, 'field "tool_choice" needs "tools"'),
        ({"tools": [WEATHER], "tool_choice": "any"}, 'field "tool_choice" must be'),
        ({"tools": [WEATHER], "tool_choice": {"name": "nope"}}, "get_weather"),
        ({"json_schema": PERSON}, 'field "json_schema" has unknown key'),
        ({"json_schema": {"schema": {"type": "array"}}}, 'field "json_schema.schema"'),
        ({"json_schema": {"schema": PERSON}, "tools": [WEATHER]}, "cannot go together"),
    ],
)
def test_bad_tool_fields_are_refused_naming_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        request_from_dict({"prompt": "x", **fields})


async def test_the_client_checks_tools_given_as_keywords() -> None:
    async with llmgather.Client("sim:openai") as client:
        request = client.build_request("x", tools=[WEATHER], tool_choice={"name": "get_weather"})
        assert request.tools == (WEATHER,) and request.tool_choice == {"name": "get_weather"}
        both = client.build_request({"prompt": "x", "tools": [WEATHER]}, tool_choice="required")
        assert both.tool_choice == "required"
        with pytest.raises(InvalidInputError, match='field "tools'):
            client.build_request("x", tools=[{"nom": "f"}])


# -- the simulator's values, judged by jsonschema ----------------------------------------------

SCHEMAS: list[dict[str, Any]] = [
    PERSON,
    {
        "type": "object",
        "properties": {"n": {"type": "integer", "exclusiveMinimum": 3, "exclusiveMaximum": 5}},
        "required": ["n"],
    },
    {
        "type": "object",
        "properties": {"x": {"type": "number", "minimum": 0.5, "maximum": 0.5}},
        "required": ["x"],
    },
    {
        "type": "object",
        "properties": {"v": {"type": ["string", "null"], "maxLength": 3, "minLength": 3}},
        "required": ["v"],
    },
    {
        "type": "object",
        "properties": {"k": {"const": 7}, "e": {"enum": [1, "a", None]}},
        "required": ["k", "e"],
    },
    {
        "type": "object",
        "properties": {
            "items": {"type": "array", "minItems": 2, "items": {"$ref": "#/$defs/item"}}
        },
        "required": ["items"],
        "$defs": {
            "item": {
                "type": "object",
                "properties": {"id": {"type": "integer"}},
                "required": ["id"],
            }
        },
    },
    {
        "type": "object",
        "properties": {"u": {"anyOf": [{"type": "integer", "minimum": 10}, {"type": "null"}]}},
        "required": ["u"],
    },
    {
        "type": "OBJECT",
        "properties": {"s": {"type": "STRING"}},
        "required": ["s"],
    },  # Gemini's OpenAPI spelling
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
def test_the_simulators_values_validate_against_their_schema(schema: dict[str, Any]) -> None:
    judged = orjson.loads(
        orjson.dumps(schema).replace(b'"OBJECT"', b'"object"').replace(b'"STRING"', b'"string"')
    )
    for seed in range(200):
        value = value_for(schema, random.Random(seed))
        assert valid(value, judged), (seed, value)


# -- the CLI: a run of extraction prompts ------------------------------------------------------


def test_a_run_of_extraction_prompts_writes_a_valid_tool_call_on_every_line(
    tmp_path: Path,
) -> None:
    inputs = tmp_path / "extract.jsonl"
    lines = [
        {
            "id": f"n{i}",
            "prompt": f"Note {i}: Dana, {20 + i % 40}. Call record_person.",
            "tools": [RECORD],
        }
        for i in range(200)
    ]
    batch = {
        "custom_id": "b1",
        "url": "/v1/chat/completions",
        "body": {
            "messages": [{"role": "user", "content": "Who is Dana?"}],
            "tools": [{"type": "function", "function": RECORD}],
            "tool_choice": "required",
        },
    }
    inputs.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in [*lines, batch]))
    output = tmp_path / "out.jsonl"
    done = run_cli("run", str(inputs), "-o", str(output), "--quiet", "--concurrency", "32")
    assert done.returncode == 0, done.stderr
    results = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    assert len(results) == 201 and all(r["status"] == "ok" for r in results)
    for result in results:
        [call] = result["tool_calls"]
        assert call["name"] == "record_person" and valid(call["arguments"]), result
    assert results[-1]["custom_id"] == "b1"  # a Batch API line's own tools, read back too
