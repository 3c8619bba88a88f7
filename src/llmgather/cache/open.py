"""Where the cache is, as the user says it: `--cache`, `--cache PATH`, `--cache redis://…`,
`--cache always` (any temperature), repeated to combine (`--cache always --cache PATH`), or
`Client(cache=…)`'s value of the same words.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from llmgather import _redis
from llmgather._errors import ConfigurationError
from llmgather.cache.base import CacheStore
from llmgather.cache.guard import log_warning
from llmgather.cache.redis import RedisCacheStore
from llmgather.cache.responses import ResponseCache
from llmgather.cache.sqlite import DEFAULT_CACHE_NAME, SQLiteCacheStore

__all__ = ["ALWAYS", "DEFAULT", "CacheSetting", "cache_setting", "open_cache", "open_store"]

ALWAYS = "always"
DEFAULT = "default"  # the bare flag: the file beside the job store (or the current folder)


@dataclass(frozen=True, slots=True)
class CacheSetting:
    """`where`: a file's path, a Redis URL, or None for the default file; `always`: answer
    requests of any temperature from the cache."""

    where: str | None = None
    always: bool = False


def cache_setting(values: Iterable[str], *, what: str = "--cache") -> CacheSetting | None:
    """The setting the words `values` give (each `--cache`'s value), None for none."""
    values = list(values)
    if not values:
        return None
    places = [value for value in values if value not in (ALWAYS, DEFAULT)]
    if len(places) > 1:
        raise ConfigurationError(
            f"{what} names {len(places)} places ({', '.join(places)}): give one file or one "
            "redis:// URL (and `always`, if wanted)"
        )
    return CacheSetting(where=places[0] if places else None, always=ALWAYS in values)


def open_store(where: str, *, what: str = "--cache") -> CacheStore:
    if where.startswith(_redis.SCHEMES):
        return RedisCacheStore(where)
    if "://" in where:
        raise ConfigurationError(
            f"{what} {where!r}: give a file's path or a Redis URL (redis://HOST:PORT/DB)"
        )
    return SQLiteCacheStore(where)


async def open_cache(
    setting: CacheSetting,
    *,
    beside: str | None = None,
    warn: Callable[[str], None] = log_warning,
) -> ResponseCache:
    """The cache `setting` names, open (a Redis that does not answer fails here, naming its
    URL); the default file lives in the folder `beside` names (the job store's), else here.
    `warn` hears that it failed later on (it then misses, and the work goes on)."""
    where = setting.where or os.path.join(beside or os.curdir, DEFAULT_CACHE_NAME)
    store = open_store(where)
    if isinstance(store, RedisCacheStore):
        try:
            await store.check()
        except BaseException:
            await store.aclose()
            raise
    return ResponseCache(store, always=setting.always, warn=warn)
