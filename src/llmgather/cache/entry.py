"""What a cache entry holds: one clean answer, as bytes, and back.

Only an answer that finished cleanly is worth keeping: the model stopped of its own accord
(`stop`) or asked for tools whose arguments parsed. An answer cut by `max_tokens`
(`length`), filtered, or with tool arguments that are not JSON is sent again instead; errors
and cut-off streams never become a Completion, so they never get here.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from llmgather._types import Completion, ToolCall, Usage

__all__ = ["CLEAN_FINISHES", "decode_entry", "encode_entry", "is_clean", "raw_answer"]

CLEAN_FINISHES = frozenset({"stop", "tool_calls"})


def is_clean(completion: Completion) -> bool:
    """Whether `completion` may be stored: a clean finish and well-formed tool calls."""
    if completion.finish_reason not in CLEAN_FINISHES:
        return False
    return all(call.arguments is not None for call in completion.tool_calls)


def encode_entry(completion: Completion, raw: bytes | None = None) -> bytes:
    """The entry of `completion`; `raw`, the provider's answer as it came (JSON), kept for a
    gateway to relay again."""
    usage = completion.usage
    data: dict[str, Any] = {
        "text": completion.text,
        "usage": None if usage is None else _usage_counts(usage),
        "finish_reason": completion.finish_reason,
        "provider_finish_reason": completion.provider_finish_reason,
        "model": completion.model,
        "stored_at": round(time.time(), 3),
    }
    if completion.tool_calls:
        data["tool_calls"] = [call.to_dict() for call in completion.tool_calls]
    if raw is not None:
        data["raw"] = orjson.Fragment(raw)
    return orjson.dumps(data)


def raw_answer(entry: bytes) -> bytes | None:
    """The provider's answer as it came, if the entry kept it (a gateway's relay did)."""
    raw = orjson.loads(entry).get("raw")
    return None if raw is None else orjson.dumps(raw)


def decode_entry(entry: bytes) -> Completion:
    """The stored answer; announced limits are not kept (a hit asks no server anything)."""
    data = orjson.loads(entry)
    usage = data["usage"]
    return Completion(
        text=data["text"],
        usage=None if usage is None else Usage(*usage),
        finish_reason=data["finish_reason"],
        provider_finish_reason=data["provider_finish_reason"],
        model=data["model"],
        tool_calls=tuple(ToolCall.from_dict(call) for call in data.get("tool_calls", ())),
    )


def _usage_counts(usage: Usage) -> list[int]:
    return [
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
    ]
