"""Which limiter a run gets: its own (`LocalLimiter`), or one shared through Redis given a URL.

The one place that chooses between the two (`_link.open_link` calls it), beside both rather
than inside either.
"""

from __future__ import annotations

import dataclasses
from contextlib import AsyncExitStack

from llmgather._config import Limits
from llmgather.limits.base import Limiter
from llmgather.limits.job_cap import JobCap
from llmgather.limits.local import LocalLimiter
from llmgather.limits.redis import RedisLimiter, limiter_key_for
from llmgather.providers.registry import Target

__all__ = ["open_limiter"]


async def open_limiter(
    stack: AsyncExitStack,
    limits: Limits,
    target: Target,
    *,
    url: str | None,
    key: str | None,
    job_cap: bool = False,
) -> Limiter:
    """This process's own limiter, or, given a Redis `url` (`--limiter`), the one shared
    through it under `key` (default: `limiter_key_for(target)`): checked now, so a Redis that
    does not answer fails before anything is sent, and closed with `stack`.

    `job_cap`: a cost cap is one job's (`run`), kept in this process beside the shared rates
    (`JobCap`), not the key's in Redis (a worker's or the service's, spent together)."""
    if url is None:
        return LocalLimiter(limits)
    own_cap = job_cap and limits.max_cost is not None
    shared_limits = dataclasses.replace(limits, max_cost=None) if own_cap else limits
    shared = await stack.enter_async_context(
        RedisLimiter(url, shared_limits, key=key or limiter_key_for(target))
    )
    return JobCap(shared, limits) if own_cap else shared
