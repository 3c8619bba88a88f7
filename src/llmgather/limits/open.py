"""Which limiter a run gets: its own (`LocalLimiter`), or one shared through Redis given a URL.

The one place that chooses between the two (`_link.open_link` calls it), beside both rather
than inside either.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from llmgather._config import Limits
from llmgather.limits.base import Limiter
from llmgather.limits.local import LocalLimiter
from llmgather.limits.redis import RedisLimiter, limiter_key_for
from llmgather.providers.registry import Target

__all__ = ["open_limiter"]


async def open_limiter(
    stack: AsyncExitStack, limits: Limits, target: Target, *, url: str | None, key: str | None
) -> Limiter:
    """This process's own limiter, or, given a Redis `url` (`--limiter`), the one shared
    through it under `key` (default: `limiter_key_for(target)`): checked now, so a Redis that
    does not answer fails before anything is sent, and closed with `stack`."""
    if url is None:
        return LocalLimiter(limits)
    shared = RedisLimiter(url, limits, key=key or limiter_key_for(target))
    return await stack.enter_async_context(shared)
