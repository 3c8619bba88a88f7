"""Deterministic answers: the text depends only on the prompt and the seed, never on timing."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Answer:
    """One generated answer: its words (one output token each) and why it stopped."""

    words: tuple[str, ...]
    finished_by_length: bool

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def output_tokens(self) -> int:
        return len(self.words)

    def chunks(self) -> list[str]:
        """Pieces of a few words each that concatenate exactly to `text`, for streaming."""
        return stream_chunks(self.words)


def _words(prompt: str, seed: int) -> tuple[str, ...]:
    # One hash of (seed, prompt) decides everything: the first byte the length, one byte per
    # word after it. No RNG to seed per request, and no dependence on anything else.
    digest = hashlib.shake_128(f"{seed}\x00{prompt}".encode()).digest(1 + MAX_WORDS)
    count = MIN_WORDS + digest[0] % (MAX_WORDS - MIN_WORDS + 1)
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
