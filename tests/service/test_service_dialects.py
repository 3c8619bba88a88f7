"""The gateway's Anthropic and Gemini dialects, and translation between dialects, judged by the
official SDKs (anthropic, google-genai, openai) as clients of `llmgather serve` started for
real on loopback, with the simulator as its upstream.

Relay: the client speaks the upstream's dialect, and bodies go through unchanged (tools too).
Translation: the client speaks another; text, system prompts, limits, stop sequences and
streams are carried, and what cannot be (tools) is a 400 that names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest
from anthropic import AsyncAnthropic
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from openai import AsyncOpenAI

from llmgather._retry import RetryPolicy
from llmgather.providers.registry import PROVIDERS
from llmgather.service.dialects.anthropic import AnthropicFront
from llmgather.service.dialects.base import Untranslatable
from llmgather.service.dialects.gemini import GeminiFront
from llmgather.service.dialects.openai import OpenAIFront
from llmgather.service.settings import ServiceSettings
from llmgather.service.upstream import Upstream
from llmgather.sim import RunningSimulator, answer_text
from tests.servicefixtures import serving
from tests.simfixtures import PROMPT, running

KEY = "canary-key-123"  # the gateway's upstream key: never in any answer
SIM_KEY = "the-simulators-own-key"
SERVED = {
    "openai": "openai:gpt-4o-mini",
    "anthropic": "anthropic:claude-3-5-haiku-latest",
    "gemini": "gemini:gemini-2.0-flash",
}
GEMINI_MODEL = "gemini-2.0-flash"
CLAUDE = "claude-3-5-haiku-latest"
TEXT = answer_text(PROMPT, 0)[0]  # the simulator's answer to PROMPT, in every dialect
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@contextlib.asynccontextmanager
async def gateway(
    dialect: str,
    *,
    api_key: str = KEY,
    faults: str | None = None,
    retry: RetryPolicy | None = None,
    **sim_settings: Any,
) -> AsyncIterator[tuple[RunningSimulator, str]]:
    """A simulator that takes only KEY, in `dialect`, behind the gateway (given `api_key`)."""
    async with running(faults, require_key=KEY, **sim_settings) as sim:
        base_url = sim.base_url + PROVIDERS[dialect].base_url_suffix
        settings = ServiceSettings(
            model=SERVED[dialect],
            base_url=base_url,
            api_key=api_key,
            retry=retry or RetryPolicy(),
        )
        async with serving(settings) as url:
            yield sim, url


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # google-genai subclasses aiohttp.ClientSession for its own, which aiohttp deprecates (a
    # warning, so an error here); handing it a plain session avoids that.
    async with aiohttp.ClientSession() as own:
        yield own


def claude(url: str) -> AsyncAnthropic:
    return AsyncAnthropic(base_url=url, api_key="x", max_retries=0)


def gemini(url: str, session: aiohttp.ClientSession) -> genai.Client:
    options = types.HttpOptions(
        base_url=url, aiohttp_client=session, retry_options=types.HttpRetryOptions(attempts=1)
    )
    return genai.Client(api_key="x", http_options=options)


def gpt(url: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0)


def received(sim: RunningSimulator) -> list[dict[str, Any]]:
    """What the simulator was sent: path and status of each request."""
    return [entry.to_dict() for entry in sim.handler.stats._log]


# -- Anthropic, relayed -------------------------------------------------------------------


async def test_anthropic_relay_plain_and_streamed() -> None:
    async with gateway("anthropic") as (sim, url), claude(url) as client:
        message = await client.messages.create(
            model=CLAUDE, max_tokens=256, messages=[{"role": "user", "content": PROMPT}]
        )
        async with client.messages.stream(
            model=CLAUDE, max_tokens=256, messages=[{"role": "user", "content": PROMPT}]
        ) as stream:
            pieces = [text async for text in stream.text_stream]
            final = await stream.get_final_message()
    assert message.content[0].type == "text" and message.content[0].text == TEXT
    assert message.stop_reason == "end_turn" and message.usage.output_tokens > 0
    assert len(pieces) > 1 and "".join(pieces) == TEXT
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    assert [e["path"] for e in received(sim)] == ["/v1/messages", "/v1/messages"]


async def test_anthropic_relay_passes_tools_through() -> None:
    async with gateway("anthropic") as (sim, url), claude(url) as client:
        message = await client.messages.create(
            model=CLAUDE,
            max_tokens=64,
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
            messages=[{"role": "user", "content": PROMPT}],
        )
    assert message.content[0].type == "text"
    assert [(e["path"], e["status"]) for e in received(sim)] == [("/v1/messages", 200)]


async def test_anthropic_relay_upstream_400_stays_400() -> None:
    async with gateway("anthropic") as (_, url), claude(url) as client:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await client.messages.create(
                model=CLAUDE, max_tokens=0, messages=[{"role": "user", "content": PROMPT}]
            )
    assert caught.value.status_code == 400
    assert "max_tokens" in caught.value.message


async def test_anthropic_relay_refused_key_is_a_502_without_the_key() -> None:
    async with gateway("anthropic", api_key="canary-wrong-456") as (_, url), claude(url) as client:
        with pytest.raises(anthropic.APIStatusError) as caught:
            await client.messages.create(
                model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": PROMPT}]
            )
    error = caught.value
    assert error.status_code == 502
    assert "refused the API key" in error.message
    assert "canary" not in error.response.text


async def test_anthropic_stream_cut_midway_ends_with_an_error_event_the_sdk_raises() -> None:
    async with gateway("anthropic", faults="cut=1") as (_, url), claude(url) as client:
        pieces: list[str] = []
        with pytest.raises(anthropic.APIStatusError) as caught:
            async with client.messages.stream(
                model=CLAUDE, max_tokens=256, messages=[{"role": "user", "content": PROMPT}]
            ) as stream:
                async for text in stream.text_stream:
                    pieces.append(text)
    assert pieces  # the text that came before the cut reached the client
    assert "upstream" in str(caught.value)


async def test_anthropic_stream_stopped_without_a_stop_reason_is_not_taken_as_whole() -> None:
    # message_stop with no message_delta (and so no stop_reason) before it, after some text:
    # the gateway holds the message_stop back and ends with an error event the SDK raises.
    faulty = gateway("anthropic", faults="done_early=1", latency_ms=1000, latency_jitter=0)
    async with faulty as (sim, url), claude(url) as client:
        pieces: list[str] = []
        with pytest.raises(anthropic.APIStatusError) as caught:
            async with client.messages.stream(
                model=CLAUDE, max_tokens=256, messages=[{"role": "user", "content": PROMPT}]
            ) as stream:
                async for text in stream.text_stream:
                    pieces.append(text)
        assert len(received(sim)) == 1
    assert pieces
    assert "stop_reason" in str(caught.value)


# -- Gemini, relayed ----------------------------------------------------------------------


async def test_gemini_relay_plain_and_streamed(session: aiohttp.ClientSession) -> None:
    async with gateway("gemini") as (sim, url):
        client = gemini(url, session)
        response = await client.aio.models.generate_content(model=GEMINI_MODEL, contents=PROMPT)
        chunks = [
            chunk
            async for chunk in await client.aio.models.generate_content_stream(
                model=GEMINI_MODEL, contents=PROMPT
            )
        ]
        await client.aio.aclose()
    assert response.text == TEXT
    assert response.usage_metadata is not None and response.usage_metadata.total_token_count
    assert len(chunks) > 1 and "".join(c.text or "" for c in chunks) == TEXT
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata is not None and last.usage_metadata.candidates_token_count
    paths = [e["path"] for e in received(sim)]
    assert paths == [
        f"/v1beta/models/{GEMINI_MODEL}:generateContent",
        f"/v1beta/models/{GEMINI_MODEL}:streamGenerateContent",
    ]


async def test_gemini_relay_uses_the_model_of_the_path_and_passes_tools_through(
    session: aiohttp.ClientSession,
) -> None:
    tool = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(name="get_weather", description="The weather in a city")
        ]
    )
    async with gateway("gemini") as (sim, url):
        client = gemini(url, session)
        response = await client.aio.models.generate_content(
            model="gemini-2.5-pro",
            contents=PROMPT,
            config=types.GenerateContentConfig(
                tools=[tool],
                automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            ),
        )
        await client.aio.aclose()
    assert response.text == TEXT
    assert response.model_version == "gemini-2.5-pro"
    assert [(e["path"], e["status"]) for e in received(sim)] == [
        ("/v1beta/models/gemini-2.5-pro:generateContent", 200)
    ]


async def test_gemini_relay_upstream_400_stays_400(session: aiohttp.ClientSession) -> None:
    async with gateway("gemini") as (_, url):
        client = gemini(url, session)
        with pytest.raises(genai_errors.ClientError) as caught:
            await client.aio.models.generate_content(
                model=GEMINI_MODEL,
                contents=PROMPT,
                config=types.GenerateContentConfig(max_output_tokens=0),
            )
        await client.aio.aclose()
    assert caught.value.code == 400
    assert "max_output_tokens" in (caught.value.message or "")


async def test_gemini_relay_refused_key_is_a_502_without_the_key(
    session: aiohttp.ClientSession,
) -> None:
    async with gateway("gemini", api_key="canary-wrong-456") as (_, url):
        client = gemini(url, session)
        with pytest.raises(genai_errors.ServerError) as caught:
            await client.aio.models.generate_content(model=GEMINI_MODEL, contents=PROMPT)
        await client.aio.aclose()
    assert caught.value.code == 502
    assert "refused the API key" in (caught.value.message or "")
    assert "canary" not in orjson.dumps(caught.value.details).decode()


async def test_gemini_stream_cut_midway_ends_with_an_error_the_sdk_raises(
    session: aiohttp.ClientSession,
) -> None:
    async with gateway("gemini", faults="cut=1") as (_, url):
        client = gemini(url, session)
        pieces: list[str] = []
        with pytest.raises(genai_errors.ServerError) as caught:
            stream = await client.aio.models.generate_content_stream(
                model=GEMINI_MODEL, contents=PROMPT
            )
            async for chunk in stream:
                pieces.append(chunk.text or "")
        await client.aio.aclose()
    assert pieces
    assert caught.value.code == 502 and "upstream" in (caught.value.message or "")


# -- Under faults, relayed ----------------------------------------------------------------

FAULTS = "malformed=0.1,cut=0.05,done_early=0.05"


async def _openai_text(url: str, session: aiohttp.ClientSession, stream: bool) -> str:
    async with gpt(url) as client:
        messages: Any = [{"role": "user", "content": PROMPT}]
        if not stream:
            answer = await client.chat.completions.create(model="gpt-4o-mini", messages=messages)
            assert answer.choices[0].finish_reason == "stop"
            return answer.choices[0].message.content or ""
        chunks = [
            chunk
            async for chunk in await client.chat.completions.create(
                model="gpt-4o-mini", messages=messages, stream=True
            )
        ]
    assert chunks[-1].choices[0].finish_reason == "stop"
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


async def _anthropic_text(url: str, session: aiohttp.ClientSession, stream: bool) -> str:
    async with claude(url) as client:
        messages: Any = [{"role": "user", "content": PROMPT}]
        if stream:
            async with client.messages.stream(
                model=CLAUDE, max_tokens=256, messages=messages
            ) as live:
                message = await live.get_final_message()
        else:
            message = await client.messages.create(model=CLAUDE, max_tokens=256, messages=messages)
    assert message.stop_reason == "end_turn"
    return "".join(block.text for block in message.content if block.type == "text")


async def _gemini_text(url: str, session: aiohttp.ClientSession, stream: bool) -> str:
    client = gemini(url, session)
    try:
        if not stream:
            response = await client.aio.models.generate_content(model=GEMINI_MODEL, contents=PROMPT)
            assert response.candidates and response.candidates[0].finish_reason == "STOP"
            return response.text or ""
        live = await client.aio.models.generate_content_stream(model=GEMINI_MODEL, contents=PROMPT)
        chunks = [chunk async for chunk in live]
    finally:
        await client.aio.aclose()
    assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == "STOP"
    return "".join(chunk.text or "" for chunk in chunks)


ANSWERED_BY = {"openai": _openai_text, "anthropic": _anthropic_text, "gemini": _gemini_text}
SDK_ERRORS: dict[str, type[Exception]] = {
    "openai": openai.APIError,
    "anthropic": anthropic.APIError,
    "gemini": genai_errors.APIError,
}


@pytest.mark.quiet
@pytest.mark.parametrize("dialect", ["openai", "anthropic", "gemini"])
async def test_under_random_faults_each_sdk_gets_whole_answers_or_its_own_errors(
    dialect: str, session: aiohttp.ClientSession
) -> None:
    # Cut-off JSON, streams cut short and streams ended early (OpenAI's [DONE] with no
    # finish_reason, Anthropic's message_stop with no stop_reason) are retried while nothing
    # reached the client, and fail in the client's dialect after: no SDK ever reads a body it
    # cannot parse, nor takes a truncated answer for a whole one.
    answered = ANSWERED_BY[dialect]
    retry = RetryPolicy(max_attempts=4, base_delay=0.01)
    seed = 2  # plain answers draw two malformed; the streams all three kinds
    faulty = gateway(dialect, faults=FAULTS, retry=retry, latency_ms=40, seed=seed)
    async with faulty as (sim, url):
        outcomes = []
        for stream in (False, True):  # plain first: which kinds each meets is then seeded
            batch = (answered(url, session, stream) for _ in range(20))
            outcomes += await asyncio.gather(*batch, return_exceptions=True)
        faults = sim.handler.stats.snapshot()["faults"]
    assert faults.get("malformed") and faults.get("done_early") and faults.get("cut")
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert [e for e in errors if not isinstance(e, SDK_ERRORS[dialect])] == []
    whole = answer_text(PROMPT, seed)[0]
    assert [o for o in outcomes if not isinstance(o, BaseException) and o != whole] == []
    assert len(errors) < len(outcomes) // 4  # most were retried to a whole answer


# -- Translation --------------------------------------------------------------------------


@pytest.mark.parametrize("upstream", ["anthropic", "gemini"])
async def test_openai_sdk_in_front_of_another_dialect(upstream: str) -> None:
    messages: Any = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": PROMPT},
    ]
    async with gateway(upstream) as (sim, url), gpt(url) as client:
        answer = await client.chat.completions.create(
            model="anything", messages=messages, max_tokens=200, stop=["\n\n"]
        )
        stream = await client.chat.completions.create(
            model="anything",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    expected = answer_text("Be brief.\n" + PROMPT, 0)[0]
    assert answer.choices[0].message.content == expected
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.prompt_tokens > 0
    assert answer.model == SERVED[upstream].partition(":")[2]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert all(e["status"] == 200 for e in received(sim)) and len(received(sim)) == 2


async def test_anthropic_sdk_in_front_of_openai() -> None:
    async with gateway("openai") as (sim, url), claude(url) as client:
        message = await client.messages.create(
            model=CLAUDE,
            max_tokens=200,
            system=[{"type": "text", "text": "Be brief."}],
            stop_sequences=["\n\n"],
            messages=[{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
        )
        async with client.messages.stream(
            model=CLAUDE, max_tokens=6, messages=[{"role": "user", "content": PROMPT}]
        ) as stream:
            pieces = [text async for text in stream.text_stream]
            final = await stream.get_final_message()
    assert message.content[0].type == "text"
    assert message.content[0].text == answer_text("Be brief.\n" + PROMPT, 0)[0]
    assert message.stop_reason == "end_turn" and message.model == "gpt-4o-mini"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    short, output_tokens, _ = answer_text(PROMPT, 0, 6)
    assert "".join(pieces) == short
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == output_tokens and final.usage.input_tokens > 0
    assert [e["path"] for e in received(sim)] == ["/v1/chat/completions"] * 2


async def test_gemini_sdk_in_front_of_openai(session: aiohttp.ClientSession) -> None:
    config = types.GenerateContentConfig(
        system_instruction="Be brief.", max_output_tokens=200, stop_sequences=["\n\n"]
    )
    async with gateway("openai") as (sim, url):
        client = gemini(url, session)
        response = await client.aio.models.generate_content(
            model=GEMINI_MODEL, contents=PROMPT, config=config
        )
        chunks = [
            chunk
            async for chunk in await client.aio.models.generate_content_stream(
                model=GEMINI_MODEL, contents=PROMPT
            )
        ]
        await client.aio.aclose()
    assert response.text == answer_text("Be brief.\n" + PROMPT, 0)[0]
    assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage is not None and usage.prompt_token_count and usage.candidates_token_count
    assert "".join(c.text or "" for c in chunks) == TEXT
    last = chunks[-1].usage_metadata
    assert last is not None and last.total_token_count
    assert [e["path"] for e in received(sim)] == ["/v1/chat/completions"] * 2


async def test_anthropic_sdk_in_front_of_gemini() -> None:
    async with gateway("gemini") as (_, url), claude(url) as client:
        message = await client.messages.create(
            model=CLAUDE, max_tokens=200, messages=[{"role": "user", "content": PROMPT}]
        )
    assert message.content[0].type == "text" and message.content[0].text == TEXT


async def test_untranslatable_fields_are_a_400_naming_them(
    session: aiohttp.ClientSession,
) -> None:
    async with gateway("openai") as (sim, url), claude(url) as client:
        with pytest.raises(anthropic.BadRequestError) as from_claude:
            await client.messages.create(
                model=CLAUDE,
                max_tokens=64,
                tools=[WEATHER_TOOL],  # type: ignore[list-item]
                messages=[{"role": "user", "content": PROMPT}],
            )
        genai_client = gemini(url, session)
        with pytest.raises(genai_errors.ClientError) as from_gemini:
            await genai_client.aio.models.generate_content(
                model=GEMINI_MODEL,
                contents=PROMPT,
                config=types.GenerateContentConfig(top_k=3),
            )
        await genai_client.aio.aclose()
        assert received(sim) == []  # refused before anything was sent
    assert "tools" in from_claude.value.message
    assert from_gemini.value.code == 400
    assert "generationConfig.topK" in (from_gemini.value.message or "")
    async with gateway("anthropic") as (_, url), gpt(url) as client:
        with pytest.raises(Exception) as from_gpt:
            await client.chat.completions.create(
                model="anything",
                messages=[{"role": "user", "content": PROMPT}],
                tools=[{"type": "function", "function": {"name": "get_weather"}}],
            )
    assert getattr(from_gpt.value, "status_code", None) == 400
    assert "tools" in str(from_gpt.value)


@pytest.mark.parametrize(
    ("upstream", "where"),
    [
        ("openai", ("stop",)),
        ("anthropic", ("stop_sequences",)),
        ("gemini", ("generationConfig", "stopSequences")),
    ],
)
async def test_translated_stop_sequences_go_where_the_upstream_takes_them(
    upstream: str, where: tuple[str, ...]
) -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stop": "END",
        "max_tokens": 7,
    }
    settings = ServiceSettings(model=SERVED[upstream], base_url="http://127.0.0.1:9", api_key=KEY)
    served = Upstream(settings, env={})
    await served.start()
    try:
        http = served.translated(served.prepared(OpenAIFront().to_request(body)), stream=False)
    finally:
        await served.aclose()
    sent = orjson.loads(http.body)
    assert "stop" not in sent or where == ("stop",)
    if upstream == "gemini":  # merged with the generationConfig the adapter writes
        assert sent["generationConfig"]["maxOutputTokens"] == 7
    for key in where:
        sent = sent[key]
    assert sent == ["END"]


# -- What translation refuses, by name ----------------------------------------------------

_CLAUDE_BODY: dict[str, Any] = {
    "model": CLAUDE,
    "max_tokens": 64,
    "messages": [{"role": "user", "content": PROMPT}],
}
_IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": ""}}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking"),
        ({"tool_choice": {"type": "auto"}}, "tool_choice"),
        ({"top_k": 5}, "top_k"),
        ({"messages": [{"role": "user", "content": [_IMAGE]}]}, "messages[0].content[0]"),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]},
            "tool_result",
        ),
        (
            {"system": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]},
            "system[0].cache_control",
        ),
        ({"stop_sequences": "END"}, "stop_sequences"),
    ],
)
def test_anthropic_translation_refuses_by_name(change: dict[str, Any], named: str) -> None:
    with pytest.raises(Untranslatable, match=re.escape(named)):
        AnthropicFront().to_request({**_CLAUDE_BODY, **change})


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"tools": [{"functionDeclarations": []}]}, "tools"),
        ({"safetySettings": []}, "safetySettings"),
        ({"generationConfig": {"responseSchema": {"type": "OBJECT"}}}, "responseSchema"),
        ({"generationConfig": {"candidateCount": 2}}, "candidateCount"),
        ({"generation_config": {"thinking_config": {}}}, "generationConfig.thinking_config"),
        (
            {"contents": [{"role": "user", "parts": [{"inlineData": {"data": ""}}]}]},
            "contents[0].parts[0].inlineData",
        ),
        ({"contents": [{"role": "function", "parts": [{"text": "x"}]}]}, "contents[0].role"),
    ],
)
def test_gemini_translation_refuses_by_name(change: dict[str, Any], named: str) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}], **change}
    with pytest.raises(Untranslatable, match=re.escape(named)):
        GeminiFront().to_request(body)


def test_gemini_translation_reads_both_spellings() -> None:
    request = GeminiFront().to_request(
        {
            "contents": [{"parts": [{"text": "hi"}]}, {"role": "model", "parts": [{"text": "yo"}]}],
            "system_instruction": {"parts": [{"text": "Be brief."}]},
            "generation_config": {
                "max_output_tokens": 7,
                "temperature": 0,
                "stop_sequences": ["."],
            },
        }
    )
    assert request.messages == (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
    )
    assert (request.max_tokens, request.temperature, request.extra) == (7, 0.0, {"stop": ["."]})


SYSTEM = "You are a careful assistant who answers in one short paragraph. " * 80


async def test_the_cache_share_of_an_answer_is_told_in_each_clients_dialect(
    session: aiohttp.ClientSession,
) -> None:
    """An OpenAI upstream reads a long system prompt from its cache; an Anthropic client is told
    so as Anthropic tells it (outside its input_tokens), a Gemini client as Gemini does."""
    async with gateway("openai") as (_, url):
        client = claude(url)
        first, second = [
            await client.messages.create(
                model="claude-x",
                max_tokens=16,
                system=SYSTEM,
                messages=[{"role": "user", "content": question}],
            )
            for question in ("One?", "Two?")
        ]
        await client.close()
        answers = [
            await gemini(url, session).aio.models.generate_content(
                model="gemini-x",
                contents=question,
                config=types.GenerateContentConfig(system_instruction=SYSTEM),
            )
            for question in ("Three?", "Four?")
        ]
    assert first.usage.cache_read_input_tokens == 0
    read = second.usage.cache_read_input_tokens
    assert read is not None and read >= 1024
    assert second.usage.input_tokens + read == first.usage.input_tokens  # the same prompt length
    metadata = answers[1].usage_metadata
    assert metadata is not None and metadata.cached_content_token_count == read
    assert metadata.prompt_token_count is not None and metadata.prompt_token_count > read
