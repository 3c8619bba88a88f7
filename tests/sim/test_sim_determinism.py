"""Answers depend only on the prompt and the seed: same in every dialect, plain or streamed."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from llmgather.sim.text import MAX_WORDS, MIN_WORDS, answer_chunks, answer_text, generate
from tests.simfixtures import (
    ANTHROPIC,
    GEMINI,
    GEMINI_STREAM,
    OPENAI,
    PROMPT,
    body_for,
    post,
    running,
    sse_data,
)


def plain_text(path: str, raw: bytes) -> str:
    data = orjson.loads(raw)
    if path == OPENAI:
        return data["choices"][0]["message"]["content"]
    if path == ANTHROPIC:
        return data["content"][0]["text"]
    return data["candidates"][0]["content"]["parts"][0]["text"]


def streamed_text(path: str, raw: bytes) -> str:
    pieces = []
    for payload in sse_data(raw):
        if payload == "[DONE]":
            continue
        event = orjson.loads(payload)
        if path == OPENAI:
            pieces += [c["delta"].get("content") or "" for c in event["choices"]]
        elif path == ANTHROPIC:
            if event["type"] == "content_block_delta":
                pieces.append(event["delta"]["text"])
        else:
            pieces.append(event["candidates"][0]["content"]["parts"][0]["text"])
    return "".join(pieces)


async def texts(seed: int, prompt: str = PROMPT) -> list[str]:
    """The answer to `prompt` from each dialect, plain then streamed."""
    found = []
    async with running(seed=seed) as sim, aiohttp.ClientSession() as session:
        for path, stream_path in (
            (OPENAI, OPENAI),
            (ANTHROPIC, ANTHROPIC),
            (GEMINI, GEMINI_STREAM),
        ):
            status, _, raw = await post(session, sim, path, body_for(path, prompt))
            assert status == 200
            found.append(plain_text(path, raw))
            body = body_for(stream_path, prompt, stream=stream_path != GEMINI_STREAM)
            status, headers, raw = await post(session, sim, stream_path, body)
            assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
            found.append(streamed_text(stream_path, raw))
    return found


async def test_same_prompt_and_seed_give_the_same_text_everywhere() -> None:
    first = await texts(seed=11)
    assert first == [answer_text(PROMPT, 11)[0]] * 6
    assert await texts(seed=11) == first


async def test_a_different_seed_or_prompt_changes_the_text() -> None:
    assert answer_text(PROMPT, 1)[0] != answer_text(PROMPT, 2)[0]
    assert answer_text(PROMPT, 1)[0] != answer_text(PROMPT + "!", 1)[0]
    assert (await texts(seed=12))[0] == answer_text(PROMPT, 12)[0]


@pytest.mark.parametrize("max_tokens", [None, 1, 10, 1000])
def test_chunks_concatenate_to_the_text(max_tokens: int | None) -> None:
    for prompt in ("a", "b", PROMPT, "x" * 500):
        text, count, by_length = answer_text(prompt, 4, max_tokens)
        assert "".join(answer_chunks(prompt, 4, max_tokens)) == text
        assert len(text.split()) == count
        assert by_length == (max_tokens is not None and max_tokens < len(generate(prompt, 4).words))


def test_length_is_within_bounds() -> None:
    counts = {generate(f"prompt {i}", 0).output_tokens for i in range(300)}
    assert min(counts) >= MIN_WORDS and max(counts) <= MAX_WORDS
    assert len(counts) > 20
