"""A response cache in front of the engine: a rerun pays only for what changed.

key.py        the key: a hash of the exact request as sent, less its bookkeeping
entry.py      what is kept: one clean answer, as bytes
base.py       the store protocol and its statistics
sqlite.py     a file (by default beside the job store)
redis.py      one shared by every process naming the same Redis
responses.py  the rules: which requests it answers, which answers it keeps
open.py       where it is, as the user says it (`--cache …`, `Client(cache=…)`)
"""

from llmgather.cache.base import CacheStats, CacheStore
from llmgather.cache.key import FORMAT_VERSION, endpoint_of, request_key
from llmgather.cache.open import CacheSetting, cache_setting, open_cache, open_store
from llmgather.cache.responses import CACHED_BASIS, BoundCache, CacheCounts, ResponseCache

__all__ = [
    "CACHED_BASIS",
    "FORMAT_VERSION",
    "BoundCache",
    "CacheCounts",
    "CacheSetting",
    "CacheStats",
    "CacheStore",
    "ResponseCache",
    "cache_setting",
    "endpoint_of",
    "open_cache",
    "open_store",
    "request_key",
]
