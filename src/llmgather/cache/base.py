"""Where cached answers live: the `CacheStore` protocol and its statistics.

Two stores keep the same entries (key → answer bytes): `SQLiteCacheStore`, a file on this
machine (by default beside the job store), and `RedisCacheStore`, shared by every process
that names the same Redis. Hits and misses are counted by each store as it answers, and
added to the store's own totals when it closes, for `llmgather cache stats`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["CacheStats", "CacheStore"]


@dataclass(frozen=True, slots=True)
class CacheStats:
    """What a cache holds (`entries`, `size_bytes`: its answers' bytes) and how it has served:
    `hits` and `misses` over every run that used it."""

    where: str
    entries: int
    size_bytes: int
    hits: int
    misses: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "cache": self.where,
            "entries": self.entries,
            "size_bytes": self.size_bytes,
            "hits": self.hits,
            "misses": self.misses,
        }


class CacheStore(Protocol):
    """Key → answer bytes, read many at once."""

    where: str  # the file or the URL (its password hidden), as the user named it

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The entries of `keys`, in order (None where there is none); counts hits and misses."""
        ...

    async def put(self, key: str, entry: bytes) -> None: ...

    async def stats(self) -> CacheStats: ...

    async def clear(self) -> int:
        """Removes every entry and the counts; returns how many entries there were."""
        ...

    async def aclose(self) -> None:
        """Writes what is pending (entries, counts) and closes."""
        ...
