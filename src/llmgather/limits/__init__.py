"""Client-side rate limits: the `Limiter` protocol every limiter implements, the budgets a
request spends before it is sent, and `LocalLimiter`, the in-process implementation.

    base.py         Limiter (the protocol), Cost, Permit, LimiterStats
    budgets.py      the kinds of limit (rpm, rpd, tpm, itpm, otpm): a new kind is one entry
    local.py        LocalLimiter: one process's callers share it
    redis.py        RedisLimiter: processes on any machines share it (Lua in redis_scripts.py)
    open.py         open_limiter: the local one, or the Redis one a URL names
    concurrency.py  the concurrency cap, lowered while streams keep being cut off
    bucket.py       a token bucket (per-minute budgets; the simulator shares it)
    window.py       a sliding window (per-day budgets)
    tokens.py       the token estimate of a request
"""

from llmgather._config import Limits
from llmgather.limits.base import Cost, Ending, Limiter, LimiterStats, Permit
from llmgather.limits.local import LocalLimiter
from llmgather.limits.redis import RedisLimiter

__all__ = [
    "Cost",
    "Ending",
    "Limiter",
    "LimiterStats",
    "Limits",
    "LocalLimiter",
    "Permit",
    "RedisLimiter",
]
