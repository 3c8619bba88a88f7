"""ChatLLMGather and LLMGatherRateLimiter through the real path: LangChain chains and official
LangChain models against the simulator on a free 127.0.0.1 port."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

import llmgather
from llmgather._types import Request
from llmgather.langchain import ChatLLMGather, LLMGatherRateLimiter
from llmgather.providers.registry import PROVIDERS
from llmgather.sim import EmbeddedSimulator, SimConfig

ROOT = Path(__file__).resolve().parents[2]
DIALECTS = {
    "openai": ("openai:gpt-4o-mini", "/v1"),
    "anthropic": ("anthropic:claude-3-5-haiku-latest", ""),
    "gemini": ("gemini:gemini-2.0-flash", ""),
}


@pytest.fixture(scope="module")
def sim() -> Iterator[EmbeddedSimulator]:
    with EmbeddedSimulator(SimConfig(latency_ms=0)) as running:
        yield running


def chat_on(sim: EmbeddedSimulator, dialect: str = "openai", **options: Any) -> ChatLLMGather:
    model, suffix = DIALECTS[dialect]
    return ChatLLMGather(model=model, base_url=sim.base_url + suffix, api_key="k", **options)


class GetWeather(BaseModel):
    """The weather in a city."""

    city: str = Field(description="the city's name")
    days: int = Field(ge=1, le=7)


class Person(BaseModel):
    """A person."""

    name: str
    age: int = Field(ge=0, le=120)


# -- many inputs at a limit ---------------------------------------------------------------------


async def test_chain_abatch_over_1000_inputs_meets_no_429() -> None:
    """prompt | ChatLLMGather | parser, 1,000 inputs, the model told the simulator's own RPM."""
    with EmbeddedSimulator(SimConfig(rpm=12_000, latency_ms=20)) as sim:
        chat = chat_on(sim, rpm=12_000, max_tokens=20)
        prompt = ChatPromptTemplate.from_messages([("human", "Summarise: {text}")])
        chain = prompt | chat | StrOutputParser()
        try:
            answers = await chain.abatch([{"text": f"text {i}"} for i in range(1000)])
        finally:
            await chat.aclose()
        stats = sim.stats
    assert len(answers) == 1000 and all(isinstance(a, str) and a for a in answers)
    assert stats["by_status"] == {"200": 1000}  # no 429 was ever sent, so none reached anyone
    assert stats["max_in_flight"] <= llmgather.Limits().concurrency  # the bounded pipeline


def test_sync_batch_and_invoke_from_threads(sim: EmbeddedSimulator) -> None:
    chat = chat_on(sim, max_tokens=10)
    try:
        answers = chat.batch(["one", "two", "three"])
        assert all(isinstance(a, AIMessage) and a.content for a in answers)
        assert chat.invoke("hello").usage_metadata["total_tokens"] > 0
    finally:
        chat.close()


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_a_cached_prompt_shows_in_the_usage_metadata(sim: EmbeddedSimulator, dialect: str) -> None:
    """The simulator caches a long system prompt: LangChain's usage names the cache's share of
    the input (all of it counted in `input_tokens`, as LangChain counts)."""
    system = f"You answer briefly, in the {dialect} way. " * 150
    chat = chat_on(sim, dialect, max_tokens=10)
    try:
        first, second = (
            chat.invoke([("system", system), ("human", question)]).usage_metadata
            for question in ("one?", "two?")
        )
    finally:
        chat.close()
    assert first is not None and second is not None
    written = first.get("input_token_details", {}).get("cache_creation", 0)
    assert written == (second["input_token_details"]["cache_read"] if dialect == "anthropic" else 0)
    read = second["input_token_details"]["cache_read"]
    assert 1024 <= read < second["input_tokens"]


# -- one budget shared with ChatOpenAI ----------------------------------------------------------


async def test_rate_limiter_shared_by_two_chatopenai_keeps_their_rate() -> None:
    """Two ChatOpenAI objects that retry nothing, one LLMGatherRateLimiter: the simulator, which
    enforces the same RPM, never refuses one of their 60 calls (sync ones included)."""
    rpm = 1200
    limiter = llmgather.LocalLimiter(llmgather.Limits(rpm=rpm))
    shared = LLMGatherRateLimiter(limiter)
    with EmbeddedSimulator(SimConfig(rpm=rpm, latency_ms=0)) as sim:
        models = [
            ChatOpenAI(
                model="gpt-4o-mini",
                base_url=sim.base_url + "/v1",
                api_key="k",
                max_retries=0,
                max_tokens=5,
                rate_limiter=shared,
            )
            for _ in range(2)
        ]
        calls = [models[i % 2].ainvoke(f"call {i}") for i in range(56)]
        calls += [asyncio.to_thread(models[i % 2].invoke, f"sync {i}") for i in range(4)]
        answers = await asyncio.gather(*calls)
        stats = sim.stats
    assert all(isinstance(a, AIMessage) for a in answers)
    assert stats["by_status"] == {"200": 60}


def test_rate_limiter_non_blocking_says_no_when_the_budget_is_spent() -> None:
    limiter = llmgather.LocalLimiter(llmgather.Limits(rpm=60, burst_seconds=1 / 60))
    shared = LLMGatherRateLimiter(limiter)
    assert shared.acquire(blocking=False) is True
    assert shared.acquire(blocking=False) is False


# -- tools and JSON answers, plain and streamed, in every dialect -------------------------------


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_bind_tools_plain_streamed_and_the_results_round_trip(
    sim: EmbeddedSimulator, dialect: str
) -> None:
    chat = chat_on(sim, dialect)
    schema = GetWeather.model_json_schema()
    try:
        with_tools = chat.bind_tools([GetWeather], tool_choice="any")
        question = HumanMessage("What will the weather be in Paris? Use GetWeather.")
        answer = await with_tools.ainvoke([question])
        streamed = None
        async for chunk in with_tools.astream([question]):
            streamed = chunk if streamed is None else streamed + chunk
        assert streamed is not None and streamed.chunk_position == "last"
        for message in (answer, streamed):
            (call,) = message.tool_calls
            assert call["name"] == "GetWeather" and call["id"]
            jsonschema.validate(call["args"], schema)
        assert answer.usage_metadata and streamed.usage_metadata
        # The conversation goes on with the tool's result, in the provider's own form.
        result = ToolMessage('{"forecast": "sunny"}', tool_call_id=answer.tool_calls[0]["id"])
        follow_up = await chat.ainvoke([question, answer, result])
        assert isinstance(follow_up, AIMessage) and follow_up.content
    finally:
        await chat.aclose()


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_with_structured_output_plain_and_streamed(
    sim: EmbeddedSimulator, dialect: str, method: str
) -> None:
    chat = chat_on(sim, dialect)
    try:
        people = chat.with_structured_output(Person, method=method)
        person = await people.ainvoke("Describe a person.")
        assert isinstance(person, Person)
        last = None
        async for part in people.astream("Describe a person."):
            last = part
        assert isinstance(last, Person) and last == person  # the same prompt, the same answer
        raw = await chat.with_structured_output(
            Person.model_json_schema(), method=method, include_raw=True
        ).ainvoke("Describe a person.")
        assert raw["parsing_error"] is None
        jsonschema.validate(raw["parsed"], Person.model_json_schema())
    finally:
        await chat.aclose()


def test_adapters_carry_tool_calls_and_results_in_each_providers_form() -> None:
    messages = (
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c1", "name": "GetWeather", "arguments": {"city": "Paris"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "name": "GetWeather", "content": "sunny"},
    )
    request = Request(messages=messages, max_tokens=10)
    bodies = {
        name: orjson.loads(
            PROVIDERS[name]
            .factory(api_key="k")
            .build_request(request, model="m", stream=False)
            .body
        )
        for name in DIALECTS
    }
    openai = bodies["openai"]["messages"]
    assert openai[1]["tool_calls"][0] == {
        "id": "c1",
        "type": "function",
        "function": {"name": "GetWeather", "arguments": '{"city":"Paris"}'},
    }
    assert openai[2] == {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
    anthropic = bodies["anthropic"]["messages"]
    assert anthropic[1]["content"] == [
        {"type": "tool_use", "id": "c1", "name": "GetWeather", "input": {"city": "Paris"}}
    ]
    assert anthropic[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "sunny"}],
    }
    gemini = bodies["gemini"]["contents"]
    assert gemini[1] == {
        "role": "model",
        "parts": [{"functionCall": {"name": "GetWeather", "args": {"city": "Paris"}}}],
    }
    assert gemini[2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "GetWeather", "response": {"result": "sunny"}}}],
    }


def test_bad_settings_and_inputs_say_what_to_do(sim: EmbeddedSimulator) -> None:
    limiter = llmgather.LocalLimiter(llmgather.Limits(rpm=60))
    with pytest.raises(llmgather.ConfigurationError, match="not both"):
        ChatLLMGather(model="sim:openai", limiter=limiter, rpm=10)
    with pytest.raises(llmgather.ConfigurationError, match=r"limits=Limits\(...\) or rpm="):
        ChatLLMGather(model="sim:openai", limits=llmgather.Limits(rpm=60), rpm=10)
    limits = llmgather.Limits(concurrency=3, rpm=60)
    assert ChatLLMGather(model="sim:openai", limits=limits)._limits() == limits
    chat = chat_on(sim)
    try:
        image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
        with pytest.raises(llmgather.InvalidInputError, match="text only"):
            chat.invoke([HumanMessage(content=[image])])
        with pytest.raises(llmgather.InvalidInputError, match="tool_choice"):
            chat.bind_tools([GetWeather], tool_choice="nonexistent")
    finally:
        chat.close()


def test_the_example_runs_on_the_embedded_simulator() -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "langchain_pipeline.py"), "40"],
        capture_output=True,
        text=True,
        timeout=50,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "40 summaries in" in done.stdout
