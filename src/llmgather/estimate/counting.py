"""How many input tokens a request's messages are, per target: counted or approximated, and said.

- An OpenAI model tiktoken knows, with its encoding installed offline (`llmgather[tokens]`):
  tiktoken's count of each message's role and text, plus the chat format's framing as OpenAI
  documents it for its chat models (3 tokens a message, 1 more for a `name`, and 3 that prime
  the reply). Exact for plain text messages; tools, JSON schemas and images are not counted.
- The built-in simulator: its own rule (`limits.tokens.estimate_prompt_tokens`), which is the
  very count it bills, so exact for it.
- Anything else (Anthropic and Gemini, which ship no offline tokenizer; a model tiktoken does
  not know; tiktoken not installed): that same approximation, about four characters a token,
  and the reason it is one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from llmgather.estimate.tiktoken_offline import encoding_name_for, load_encoding
from llmgather.limits.tokens import estimate_prompt_tokens, message_text
from llmgather.providers.registry import PROVIDERS

__all__ = ["PromptCounter", "counter_for"]

# OpenAI's chat framing of a message (role markers, separators) and of the reply's start.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3


@dataclass(frozen=True, slots=True)
class PromptCounter:
    """Counts a request's input tokens. `method` says how (`tiktoken o200k_base`,
    `the simulator's own count`, `approximation`); `exact` whether the count is what the provider bills;
    `note`, for an approximation, why no tokenizer was used."""

    method: str
    exact: bool
    count: Callable[[Iterable[dict[str, Any]]], int]
    note: str | None = None


def counter_for(provider: str, model: str, *, simulated: bool) -> PromptCounter:
    """The best offline counter for `model` of `provider` (a registry name)."""
    if simulated:
        return PromptCounter("the simulator's own count", True, estimate_prompt_tokens)
    spec = PROVIDERS.get(provider)
    if spec is None or not spec.counted_by_tiktoken:
        return _approximation(f"{provider} publishes no offline tokenizer")
    name = encoding_name_for(model)
    if name is None:
        return _approximation(f"tiktoken knows no encoding for {model}")
    loaded = load_encoding(name)
    if loaded.encoding is None:
        return _approximation(loaded.why_not or f"tiktoken's {name} is unavailable")
    encode = loaded.encoding.encode_ordinary

    def count(messages: Iterable[dict[str, Any]]) -> int:
        total = REPLY_PRIMING_TOKENS
        for message in messages:
            total += TOKENS_PER_MESSAGE + len(encode(str(message.get("role", ""))))
            total += len(encode(message_text(message)))
            if message.get("name"):
                total += TOKENS_PER_NAME + len(encode(str(message["name"])))
        return total

    return PromptCounter(f"tiktoken {name}", True, count)


def _approximation(why: str) -> PromptCounter:
    return PromptCounter("approximation", False, estimate_prompt_tokens, note=why)
