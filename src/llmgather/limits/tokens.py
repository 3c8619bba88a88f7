"""A cheap, deterministic token estimate shared by the client limiter and the simulator.

Real tokenizers average about four characters of English per token. The estimate only has to
be close and never wildly low: the limiter reserves it before a send and reconciles it with the
real `usage` afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from llmgather.limits.base import Cost

CHARS_PER_TOKEN = 4
PER_MESSAGE_OVERHEAD = 4  # role markers and separators, as the chat formats add them


def estimate_text_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def estimate_prompt_tokens(messages: Iterable[dict[str, Any]]) -> int:
    total = 0
    for message in messages:
        total += PER_MESSAGE_OVERHEAD + estimate_text_tokens(message_text(message))
    return total


def message_text(message: dict[str, Any]) -> str:
    """The text of a chat message whose content is a string or a list of text parts."""
    content = message.get("content", "")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


# What a request without `max_tokens` is assumed to produce when reserving tokens-per-minute
# budget; the simulator charges the same, and both settle to the real usage afterwards.
DEFAULT_OUTPUT_ESTIMATE = 256


def estimate_request_tokens(messages: Iterable[dict[str, Any]], max_tokens: int | None) -> int:
    """Prompt tokens plus the output the request may produce: what a TPM budget must reserve."""
    output = DEFAULT_OUTPUT_ESTIMATE if max_tokens is None else max_tokens
    return estimate_prompt_tokens(messages) + output


def request_cost(messages: Iterable[dict[str, Any]], max_tokens: int | None) -> Cost:
    """What a chat request reserves: one request, its prompt's tokens, and its output budget."""
    output = DEFAULT_OUTPUT_ESTIMATE if max_tokens is None else max_tokens
    return Cost(requests=1, input_tokens=estimate_prompt_tokens(messages), output_tokens=output)


def input_token_bound(messages: Iterable[dict[str, Any]]) -> int:
    """At most how many tokens the prompt's text can be: no tokenizer makes more tokens of a
    text than it has UTF-8 bytes (byte-level BPE falls back to one token per byte). What a cost
    cap reserves, where the estimate above could fall short of the real count."""
    total = 0
    for message in messages:
        total += PER_MESSAGE_OVERHEAD + len(message_text(message).encode())
    return total
