"""The simulator's prompt cache: a long system prompt seen before is read from the cache.

Real providers cache a prompt's long, repeated prefix and bill it at a lower rate. The simulator
keeps the rule simple and deterministic, so a test knows what each answer reports:

    request ─▶ its leading system message ─▶ at least MIN_CACHED_TOKENS?  no ─▶ nothing cached
                                                   │ yes
                           seen before for this model? ─▶ yes: read from the cache (its tokens)
                                                   └────▶ no:  written to the cache (its tokens)

The real Anthropic API caches only up to a `cache_control` mark; the simulator caches the
system prompt in every dialect alike, marked or not, so the three report the same request the
same way. Each dialect reports it its provider's way: OpenAI `prompt_tokens_details.cached_tokens` and
Gemini `cachedContentTokenCount` (reads, counted inside the prompt's tokens), Anthropic
`cache_read_input_tokens` and `cache_creation_input_tokens` (outside its `input_tokens`).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from llmgather.limits.tokens import estimate_prompt_tokens

__all__ = ["MIN_CACHED_TOKENS", "CacheUse", "PromptCache"]

# The shortest prefix OpenAI and Anthropic cache (1,024 tokens): shorter prompts are never cached.
MIN_CACHED_TOKENS: Final = 1024
# How many prefixes the cache remembers, the least recently used forgotten first: bounded memory.
_REMEMBERED: Final = 4096


@dataclass(frozen=True, slots=True)
class CacheUse:
    """The prompt tokens one request read from and wrote to the cache (both within its prompt)."""

    read: int = 0
    written: int = 0


NO_CACHE: Final = CacheUse()


class PromptCache:
    """The prefixes one simulator has seen, by model; owned by its event loop."""

    def __init__(self, min_tokens: int = MIN_CACHED_TOKENS) -> None:
        self._min_tokens = min_tokens
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def use(self, model: str, messages: Sequence[dict[str, Any]]) -> CacheUse:
        """What an answered request reads or writes; a write is remembered for the next one."""
        if not messages or messages[0].get("role") != "system":
            return NO_CACHE
        tokens = estimate_prompt_tokens(messages[:1])
        if tokens < self._min_tokens:
            return NO_CACHE
        key = hashlib.blake2b(f"{model}\0{messages[0].get('content')}".encode()).digest()
        if key in self._seen:
            self._seen.move_to_end(key)
            return CacheUse(read=tokens)
        self._seen[key] = None
        if len(self._seen) > _REMEMBERED:
            self._seen.popitem(last=False)
        return CacheUse(written=tokens)
