"""The cache in Redis, shared by every process and machine that names the same URL.

Entries are the fields of one hash (`{prefix}:entries`), counts those of another
(`{prefix}:counts`). The lookups of many workers come gathered (`ResponseCache` asks once
per turn of the event loop): one `HMGET` each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmgather import _redis
from llmgather._redact import redact_url
from llmgather.cache.base import CacheStats

__all__ = ["DEFAULT_PREFIX", "RedisCacheStore"]

DEFAULT_PREFIX = "llmgather:cache"
_ATTEMPTS = 5


class RedisCacheStore:
    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.where = redact_url(url) or url
        self._url = url
        self._redis: Any = _redis.connect(url, what="--cache")
        self._entries = f"{prefix}:entries"
        self._counts = f"{prefix}:counts"
        self._hits = self._misses = 0

    async def check(self) -> None:
        """RedisUnavailableError, naming the URL, unless Redis answers."""
        await _redis.retried(self._redis.ping, self._url, attempts=_ATTEMPTS)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        entries: list[bytes | None] = await _redis.retried(
            lambda: self._redis.hmget(self._entries, list(keys)), self._url, attempts=_ATTEMPTS
        )
        hits = sum(entry is not None for entry in entries)
        self._hits += hits
        self._misses += len(keys) - hits
        return entries

    async def put(self, key: str, entry: bytes) -> None:
        await _redis.retried(
            lambda: self._redis.hset(self._entries, key, entry), self._url, attempts=_ATTEMPTS
        )

    async def stats(self) -> CacheStats:
        async def read() -> tuple[int, int, dict[bytes, bytes]]:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hlen(self._entries)
                pipe.memory_usage(self._entries)
                pipe.hgetall(self._counts)
                entries, size, counts = await pipe.execute()
            return entries, size or 0, counts

        entries, size, counts = await _redis.retried(read, self._url, attempts=_ATTEMPTS)
        return CacheStats(
            where=self.where,
            entries=entries,
            size_bytes=size,
            hits=int(counts.get(b"hits", 0)) + self._hits,
            misses=int(counts.get(b"misses", 0)) + self._misses,
        )

    async def clear(self) -> int:
        async def drop() -> int:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hlen(self._entries)
                pipe.delete(self._entries, self._counts)
                entries, _ = await pipe.execute()
            return int(entries)

        self._hits = self._misses = 0
        return await _redis.retried(drop, self._url, attempts=_ATTEMPTS)

    async def aclose(self) -> None:
        try:
            if self._hits or self._misses:
                hits, misses = self._hits, self._misses
                self._hits = self._misses = 0

                async def count() -> None:
                    async with self._redis.pipeline(transaction=True) as pipe:
                        pipe.hincrby(self._counts, "hits", hits)
                        pipe.hincrby(self._counts, "misses", misses)
                        await pipe.execute()

                await _redis.retried(count, self._url, attempts=_ATTEMPTS)
        finally:
            await self._redis.aclose()
