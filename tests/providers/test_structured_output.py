"""JSON-schema answers in every dialect: one `json_schema` field, translated per provider
(OpenAI `response_format`, Gemini `responseJsonSchema`, Anthropic a forced tool), answered by
the simulator with a deterministic object that validates, plain and streamed; the official
SDKs' own structured-output helpers parse the simulator's answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
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
from llmgather._prompt import request_from_dict
from llmgather._types import JSON_ANSWER_TOOL
from llmgather.providers.anthropic import AnthropicProvider
from llmgather.providers.gemini import GeminiProvider
from llmgather.providers.openai import OpenAIProvider
from llmgather.sim import RunningSimulator
from tests.simfixtures import running

BOOK = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "year": {"type": "integer", "minimum": 1450, "maximum": 2030},
        "genres": {
            "type": "array",
            "items": {"type": "string", "enum": ["novel", "essay", "poetry"]},
            "minItems": 1,
        },
        "rating": {"type": "number", "minimum": 0, "maximum": 5},
        "in_print": {"type": "boolean"},
        "author": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "born": {"type": "integer"}},
            "required": ["name"],
        },
    },
    "required": ["title", "year", "genres", "author"],
}
SCHEMA = {"name": "book", "schema": BOOK}
MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-5-haiku-latest",
    "gemini": "gemini-2.0-flash",
}
PROMPT = "Describe a book you like."


def valid(value: Any, schema: dict[str, Any] = BOOK) -> bool:
    return not list(jsonschema.Draft202012Validator(schema).iter_errors(value))


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with running(seed=5) as simulator:
        yield simulator


def base_url(sim: RunningSimulator, dialect: str) -> str:
    return sim.base_url + ("/v1" if dialect == "openai" else "")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("dialect", ["openai", "anthropic", "gemini"])
async def test_a_json_schema_answer_is_a_valid_object_in_every_dialect(
    sim: RunningSimulator, dialect: str, stream: bool
) -> None:
    url = base_url(sim, dialect)
    async with llmgather.Client(MODELS[dialect], base_url=url, api_key="k", stream=stream) as c:
        [result] = await c.gather([{"prompt": PROMPT, "json_schema": SCHEMA}])
        text = await c.complete(PROMPT, json_schema=SCHEMA)
        pieces = [piece async for piece in c.stream(PROMPT, json_schema=SCHEMA)]
    assert result.ok and result.finish_reason == "stop" and result.tool_calls == ()
    value = orjson.loads(result.text or "")
    assert valid(value)
    assert orjson.loads(text) == value  # deterministic
    assert len(pieces) > 1 and orjson.loads("".join(pieces)) == value  # streamed as text


def body(provider: Any, fields: dict[str, Any]) -> dict[str, Any]:
    request = request_from_dict({"prompt": "x", **fields})
    return orjson.loads(provider.build_request(request, model="m", stream=False).body)


def test_one_json_schema_field_is_translated_for_each_provider() -> None:
    fields = {"json_schema": {**SCHEMA, "strict": True}}
    sent = body(OpenAIProvider(api_key="k"), fields)
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "book", "schema": BOOK, "strict": True},
    }
    sent = body(GeminiProvider(api_key="k"), {**fields, "max_tokens": 9})
    assert sent["generationConfig"] == {
        "maxOutputTokens": 9,
        "responseMimeType": "application/json",
        "responseJsonSchema": BOOK,
    }
    # Anthropic: the schema is the input schema of one tool the model is made to call.
    sent = body(AnthropicProvider(api_key="k"), fields)
    [tool] = sent["tools"]
    assert (tool["name"], tool["input_schema"]) == (JSON_ANSWER_TOOL, BOOK)
    assert sent["tool_choice"] == {"type": "tool", "name": JSON_ANSWER_TOOL}
    # A json_schema without a name is called "response".
    sent = body(OpenAIProvider(api_key="k"), {"json_schema": {"schema": BOOK}})
    assert sent["response_format"]["json_schema"]["name"] == "response"


def test_the_forced_tools_input_is_the_anthropic_answers_text() -> None:
    answer = {
        "content": [{"type": "tool_use", "id": "t", "name": JSON_ANSWER_TOOL, "input": {"a": 1}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }
    completion = AnthropicProvider(api_key="k").parse_response(200, {}, orjson.dumps(answer))
    assert (completion.text, completion.tool_calls) == ('{"a":1}', ())
    assert (completion.finish_reason, completion.provider_finish_reason) == ("stop", "tool_use")


# -- the official SDKs' structured-output helpers as judges ------------------------------------


class Author(pydantic.BaseModel):
    name: str
    born: int | None = None


class Book(pydantic.BaseModel):
    title: str
    year: int = pydantic.Field(ge=1450, le=2030)
    genres: list[str]
    author: Author  # a nested model: pydantic writes it as a $ref into $defs


async def test_the_openai_sdk_parses_the_answer_into_a_model(sim: RunningSimulator) -> None:
    client = openai.AsyncOpenAI(base_url=sim.base_url + "/v1", api_key="k", max_retries=0)
    messages: Any = [{"role": "user", "content": PROMPT}]
    plain = await client.chat.completions.parse(
        model="gpt-4o-mini", messages=messages, response_format=Book
    )
    parsed = plain.choices[0].message.parsed
    assert isinstance(parsed, Book)
    async with client.chat.completions.stream(
        model="gpt-4o-mini", messages=messages, response_format=Book
    ) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    assert final.choices[0].message.parsed == parsed
    await client.close()


async def test_the_anthropic_sdk_parses_the_answer_into_a_model(sim: RunningSimulator) -> None:
    client = AsyncAnthropic(base_url=sim.base_url, api_key="k", max_retries=0)
    messages: Any = [{"role": "user", "content": PROMPT}]
    # The newer models' own JSON mode (output_config.format), as the SDK's parse sends it (the
    # SDK moves numeric bounds out of the schema it sends, so the model has none)…
    parsed = await client.messages.parse(
        model="claude-sonnet-4-5", max_tokens=300, messages=messages, output_format=Author
    )
    assert isinstance(parsed.parsed_output, Author)
    # …and the forced tool llmgather sends, read by the SDK plain and streamed.
    args: Any = {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 300,
        "messages": messages,
        "tools": [{"name": JSON_ANSWER_TOOL, "input_schema": Book.model_json_schema()}],
        "tool_choice": {"type": "tool", "name": JSON_ANSWER_TOOL},
    }
    plain = await client.messages.create(**args)
    async with client.messages.stream(**args) as stream:
        final = await stream.get_final_message()
    [block], [streamed] = plain.content, final.content
    assert block.type == "tool_use" and streamed.type == "tool_use"
    assert Book.model_validate(block.input) == Book.model_validate(streamed.input)
    await client.close()


async def test_the_gemini_sdk_parses_the_answer_into_a_model(sim: RunningSimulator) -> None:
    async with aiohttp.ClientSession() as session:
        options = types.HttpOptions(
            base_url=sim.base_url,
            aiohttp_client=session,
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        client = genai.Client(api_key="k", http_options=options)
        for config in (
            # The SDK's OpenAPI schema (responseSchema), and plain JSON Schema.
            types.GenerateContentConfig(
                response_mime_type="application/json", response_schema=Book
            ),
            types.GenerateContentConfig(
                response_mime_type="application/json", response_json_schema=BOOK
            ),
        ):
            plain = await client.aio.models.generate_content(
                model="gemini-2.0-flash", contents=PROMPT, config=config
            )
            text = ""
            async for chunk in await client.aio.models.generate_content_stream(
                model="gemini-2.0-flash", contents=PROMPT, config=config
            ):
                text += chunk.text or ""
            assert orjson.loads(text) == orjson.loads(plain.text or "")
            if config.response_schema is not None:
                assert isinstance(plain.parsed, Book)
            else:
                assert valid(orjson.loads(plain.text or ""))


async def test_json_object_mode_answers_an_object(sim: RunningSimulator) -> None:
    client = openai.AsyncOpenAI(base_url=sim.base_url + "/v1", api_key="k", max_retries=0)
    answer = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Answer in JSON"}],
        response_format={"type": "json_object"},
    )
    assert isinstance(orjson.loads(answer.choices[0].message.content or ""), dict)
    await client.close()
