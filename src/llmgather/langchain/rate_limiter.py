"""`LLMGatherRateLimiter`: LangChain's rate-limiter interface over a llmgather limiter, so
existing `ChatOpenAI`/`ChatAnthropic` objects spend from the same budget as everything else."""

from __future__ import annotations

import asyncio

from langchain_core.rate_limiters import BaseRateLimiter

from llmgather.langchain._loop import home_of
from llmgather.limits import Cost, Limiter


class LLMGatherRateLimiter(BaseRateLimiter):
    """A LangChain `BaseRateLimiter` that takes one request from a llmgather limiter per call.

        limiter = llmgather.LocalLimiter(llmgather.Limits(rpm=500))
        shared = LLMGatherRateLimiter(limiter)
        gpt = ChatOpenAI(model="gpt-4o-mini", rate_limiter=shared)
        claude = ChatAnthropic(model="claude-3-5-haiku-latest", rate_limiter=shared)
        ours = ChatLLMGather(model="gpt-4o-mini", limiter=limiter)  # the same budget

    Requests only: LangChain asks its rate limiter before a call and tells it nothing after,
    so no token count reaches the limiter and the call's own 429s do not pause it. A `tpm`
    budget of the limiter is charged nothing by these calls (ChatLLMGather's calls are charged
    their tokens as usual). The concurrency slot is given back at once, since the end of the
    call is never told. The limiter is driven from its home loop (see `_loop.py`), so one
    limiter serves sync and async callers in any thread or loop alike.
    """

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter
        self._home = home_of(limiter)

    def acquire(self, *, blocking: bool = True) -> bool:
        """Take one request from the budget; with `blocking=False`, only if it is there now."""
        return self._home.run_sync(self._take(blocking))

    async def aacquire(self, *, blocking: bool = True) -> bool:
        return await self._home.run(self._take(blocking))

    async def _take(self, blocking: bool) -> bool:
        waiting = asyncio.ensure_future(self.limiter.acquire(Cost(requests=1)))
        if not blocking:
            # A grant with room to spare takes no sleep, only a loop turn or two.
            for _ in range(3):
                if waiting.done():
                    break
                await asyncio.sleep(0)
            if not waiting.done():
                waiting.cancel()  # a cancelled wait takes nothing from the budget
                return False
        permit = await waiting
        # "failed" is the neutral ending: how the call went is never told to a rate limiter,
        # and "ok" would clear a backoff that another caller's 429 set.
        await self.limiter.release(permit, None, outcome="failed")
        return True

    def __repr__(self) -> str:
        return f"LLMGatherRateLimiter({self.limiter!r})"
