"""Deterministic answers: the text depends only on the prompt and the seed, never on timing.

`sim/structured.py` decides when the answer is a tool call or a JSON object instead of words.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from llmgather.limits.tokens import estimate_text_tokens

MIN_WORDS = 16
MAX_WORDS = 64
MEAN_WORDS = (MIN_WORDS + MAX_WORDS) / 2

# 64 words, so one hash byte picks one word without bias.
_VOCABULARY = (
    "the a of and to in is that it for on with as by at this "
    "data model river cloud signal light garden system answer question pattern network birds "
    "season journey memory ocean mountain engine theory simple careful quiet bright quickly "
    "often because between under through during across every small large early later "
    "migrate gather build measure explain follow change travel return balance grow"
).split()
assert len(_VOCABULARY) == 64


# How many characters of JSON text one streamed piece carries (a tool call's arguments, a
# JSON answer): about what a real server sends per token or two.
JSON_PIECE_CHARS = 12


@dataclass(frozen=True, slots=True)
class ToolUse:
    """One tool call of an answer: the tool's name and its arguments (a JSON object)."""

    name: str
    arguments: dict[str, Any]

    @property
    def json(self) -> str:
        return orjson.dumps(self.arguments).decode()

    def pieces(self) -> list[str]:
        """The arguments' JSON text in pieces that concatenate to it, for streaming."""
        return json_pieces(self.json)


@dataclass(frozen=True, slots=True)
class Answer:
    """One generated answer: its words (one output token each) and why it stopped.

    A structured answer has no words: `calls` (tool calls) or `json` (a JSON answer's text).
    """

    words: tuple[str, ...]
    finished_by_length: bool
    calls: tuple[ToolUse, ...] = ()
    json: str | None = None

    @property
    def text(self) -> str:
        if self.json is not None:
            return self.json
        return " ".join(self.words)

    @property
    def output_tokens(self) -> int:
        if self.calls:
            return sum(estimate_text_tokens(call.json) for call in self.calls)
        if self.json is not None:
            return estimate_text_tokens(self.json)
        return len(self.words)

    def chunks(self) -> list[str]:
        """Pieces of a few words each that concatenate exactly to `text`, for streaming
        (a tool-call answer: its calls' argument pieces, one after the other)."""
        if self.calls:
            return [piece for call in self.calls for piece in call.pieces()]
        if self.json is not None:
            return json_pieces(self.json)
        return stream_chunks(self.words)


def json_pieces(text: str) -> list[str]:
    return [text[i : i + JSON_PIECE_CHARS] for i in range(0, len(text), JSON_PIECE_CHARS)]


def answer_length(first_byte: int) -> int:
    """The words of an answer whose hash starts with `first_byte` (0-255): MIN_WORDS to
    MAX_WORDS, the shorter ones slightly likelier (256 is not a multiple of the range)."""
    return MIN_WORDS + first_byte % (MAX_WORDS - MIN_WORDS + 1)


def _words(prompt: str, seed: int) -> tuple[str, ...]:
    # One hash of (seed, prompt) decides everything: the first byte the length, one byte per
    # word after it. No RNG to seed per request, and no dependence on anything else.
    digest = hashlib.shake_128(f"{seed}\x00{prompt}".encode()).digest(1 + MAX_WORDS)
    count = answer_length(digest[0])
    words = [_VOCABULARY[b & 63] for b in digest[1 : 1 + count]]
    words[0] = words[0].capitalize()
    words[-1] += "."
    return tuple(words)


def generate(prompt: str, seed: int, max_tokens: int | None = None) -> Answer:
    """The answer to `prompt`, cut to `max_tokens` words when that is smaller."""
    words = _words(prompt, seed)
    if max_tokens is not None and max_tokens < len(words):
        return Answer(words[: max(max_tokens, 0)], finished_by_length=True)
    return Answer(words, finished_by_length=False)


def answer_text(prompt: str, seed: int, max_tokens: int | None = None) -> tuple[str, int, bool]:
    """(text, output_tokens, finished_by_length) for `prompt` under `seed`."""
    answer = generate(prompt, seed, max_tokens)
    return answer.text, answer.output_tokens, answer.finished_by_length


def stream_chunks(words: tuple[str, ...] | list[str]) -> list[str]:
    """Group words into chunks of 1–4 words; chunk boundaries carry the joining space."""
    # Each chunk's size comes from its first word, so a replay streams identical chunks.
    chunks: list[str] = []
    i = 0
    while i < len(words):
        size = 1 + len(words[i]) % 4
        piece = " ".join(words[i : i + size])
        chunks.append(piece if i == 0 else " " + piece)
        i += size
    return chunks


def answer_chunks(prompt: str, seed: int, max_tokens: int | None = None) -> list[str]:
    """The streamed form of `answer_text(...)[0]`: chunks that concatenate to it exactly."""
    return generate(prompt, seed, max_tokens).chunks()
