"""The simulator's Gemini dialect, judged by the official `google-genai` SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from google import genai
from google.genai import errors, types

from llmgather.sim import answer_text
from tests.simfixtures import PROMPT, running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # google-genai subclasses aiohttp.ClientSession for its own session, which aiohttp
    # deprecates (a warning, so an error here); handing it a plain session avoids that.
    async with aiohttp.ClientSession() as own:
        yield own


def client(base_url: str, session: aiohttp.ClientSession, api_key: str = "k") -> genai.Client:
    # attempts=1: no tenacity retries, and no implicit retry after a connection error.
    options = types.HttpOptions(
        base_url=base_url,
        aiohttp_client=session,
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    return genai.Client(api_key=api_key, http_options=options)


async def test_generate_content_has_the_deterministic_text_and_usage(
    session: aiohttp.ClientSession,
) -> None:
    async with running(seed=9) as sim:
        gemini = client(sim.base_url, session)
        response = await gemini.aio.models.generate_content(
            model="gemini-2.0-flash", contents=PROMPT
        )
        await gemini.aio.aclose()
    text, output_tokens, _ = answer_text(PROMPT, 9)
    assert response.text == text
    assert response.candidates is not None
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage is not None and usage.candidates_token_count == output_tokens
    assert usage.total_token_count == (usage.prompt_token_count or 0) + output_tokens
    assert response.model_version == "gemini-2.0-flash"


async def test_system_instruction_and_max_output_tokens(session: aiohttp.ClientSession) -> None:
    async with running() as sim:
        gemini = client(sim.base_url, session)
        response = await gemini.aio.models.generate_content(
            model="gemini-2.0-flash",
            contents=PROMPT,
            config=types.GenerateContentConfig(
                system_instruction="Be brief.", max_output_tokens=6, temperature=0.2
            ),
        )
        await gemini.aio.aclose()
    assert response.text == answer_text("Be brief.\n" + PROMPT, 0, 6)[0]
    assert response.candidates is not None
    assert response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


async def test_stream_concatenates_to_the_plain_text(session: aiohttp.ClientSession) -> None:
    async with running() as sim:
        gemini = client(sim.base_url, session)
        chunks = [
            chunk
            async for chunk in await gemini.aio.models.generate_content_stream(
                model="gemini-2.0-flash", contents=PROMPT
            )
        ]
        await gemini.aio.aclose()
    text, output_tokens, _ = answer_text(PROMPT, 0)
    assert len(chunks) > 1
    assert "".join(chunk.text or "" for chunk in chunks) == text
    last = chunks[-1]
    assert last.candidates is not None
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata is not None
    assert last.usage_metadata.candidates_token_count == output_tokens
    assert all(c.candidates and c.candidates[0].finish_reason is None for c in chunks[:-1])


async def test_rate_limit_is_resource_exhausted_with_retry_info(
    session: aiohttp.ClientSession,
) -> None:
    async with running(rpm=60) as sim:
        gemini = client(sim.base_url, session)
        await gemini.aio.models.generate_content(model="gemini-2.0-flash", contents=PROMPT)
        with pytest.raises(errors.ClientError) as caught:
            await gemini.aio.models.generate_content(model="gemini-2.0-flash", contents=PROMPT)
        await gemini.aio.aclose()
    error = caught.value
    assert error.code == 429
    assert error.status == "RESOURCE_EXHAUSTED"
    details = error.details["error"]["details"]
    retry = [d for d in details if d["@type"].endswith("google.rpc.RetryInfo")]
    assert retry == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}]
    quota = [d for d in details if d["@type"].endswith("google.rpc.QuotaFailure")]
    assert quota[0]["violations"][0]["quotaValue"] == "60"


async def test_wrong_key_is_api_key_invalid(session: aiohttp.ClientSession) -> None:
    async with running(require_key="AIza-right-key-0000") as sim:
        gemini = client(sim.base_url, session, api_key="AIza-wrong-key-1111")
        with pytest.raises(errors.ClientError) as caught:
            await gemini.aio.models.generate_content(model="gemini-2.0-flash", contents=PROMPT)
        await gemini.aio.aclose()
    # As the real API does: 400 INVALID_ARGUMENT with reason API_KEY_INVALID.
    assert caught.value.code == 400
    assert caught.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    assert "AIza-wrong-key-1111" not in str(caught.value.details)


async def test_injected_500_is_server_error(session: aiohttp.ClientSession) -> None:
    async with running(faults="500=1") as sim:
        gemini = client(sim.base_url, session)
        with pytest.raises(errors.ServerError) as caught:
            await gemini.aio.models.generate_content(model="gemini-2.0-flash", contents=PROMPT)
        await gemini.aio.aclose()
    assert caught.value.code == 500 and caught.value.status == "INTERNAL"
