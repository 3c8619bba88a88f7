"""The response cache the engine asks before the limiter: a store, and the rules of what it
may answer and what it keeps.

    engine ─ key(request) ─▶ look_up ─ hit ─▶ Result(cached=True, cost 0): no permit, no send
                                      └ miss ─▶ limiter ─▶ send ─▶ ok, clean finish? ─▶ keep

Requests sampled above temperature 0 are not answered from the cache unless `always`: their
answer is meant to vary, and a rerun that sends them again gets a new sample, as asked. An
unset temperature is the provider's default, which is 1 at OpenAI, Anthropic and Gemini, so
it counts as above 0 too.

The store is asked through a `GuardedStore`: a lookup it fails is a miss, and an answer it
cannot keep is lost, with one warning; the answer itself stands (see `guard`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from llmgather._types import Completion, Request
from llmgather.cache.base import CacheStore
from llmgather.cache.entry import decode_entry, encode_entry, is_clean, raw_answer
from llmgather.cache.guard import GuardedStore, log_warning

__all__ = ["CACHED_BASIS", "BoundCache", "CacheCounts", "ResponseCache", "body_samples", "samples"]

CACHED_BASIS = "cached"  # a hit's `cost_basis`: it cost nothing, this time

KeyOf = Callable[[Request], str | None]


def samples(request: Request) -> bool:
    """Whether `request` asks for a sampled answer: a temperature above 0, or none given."""
    temperature = request.temperature
    if temperature is None and request.extra:
        temperature = request.extra.get("temperature")
    return _above_zero(temperature)


def body_samples(body: Mapping[str, Any]) -> bool:
    """`samples` for a body already in a provider's dialect (a gateway's): its temperature is
    at the top (OpenAI, Anthropic) or in Gemini's `generationConfig`."""
    config = body.get("generationConfig")
    nested = config.get("temperature") if isinstance(config, dict) else None
    return _above_zero(body.get("temperature", nested))


def _above_zero(temperature: object) -> bool:
    return not isinstance(temperature, int | float) or temperature > 0


@dataclass(slots=True)
class CacheCounts:
    """What one cache answered in this process: `hits`, `misses`, `stored` (clean answers
    kept), `passed` (requests the temperature rule sent past the cache), `lookups_failed`
    (lookups the store failed, or skipped while it was failing: sent as misses) and
    `keeps_failed` (clean answers it could not take)."""

    hits: int = 0
    misses: int = 0
    stored: int = 0
    passed: int = 0
    lookups_failed: int = 0
    keeps_failed: int = 0


class ResponseCache:
    """A `CacheStore` and its rules; `always` answers sampled requests (temperature > 0) too;
    `warn` hears once that the store failed (else the "llmgather" logger's warning); `clock`
    times the rest a failing store is given.

    The store is the caller's: `aclose()` closes it, once every engine using it is done."""

    def __init__(
        self,
        store: CacheStore,
        *,
        always: bool = False,
        warn: Callable[[str], None] = log_warning,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.always = always
        self.counts = CacheCounts()
        self._guarded = GuardedStore(store, warn=warn, clock=clock)
        # Lookups asked in one turn of the event loop (by many workers at once), answered by
        # one `get_many`: a rerun of ten thousand items asks the store a few hundred times.
        self._asked: dict[str, list[asyncio.Future[bytes | None]]] = {}
        self._answering: asyncio.Task[None] | None = None
        # The event loop keeps only weak references to tasks: each answering one is held
        # here until it is done.
        self._running: set[asyncio.Task[None]] = set()

    @property
    def where(self) -> str:
        return self.store.where

    def admits(self, request: Request | Mapping[str, Any]) -> bool:
        """Whether the cache may answer `request` (or a provider's body): see `samples`."""
        sampled = body_samples(request) if isinstance(request, Mapping) else samples(request)
        if self.always or not sampled:
            return True
        self.counts.passed += 1
        return False

    async def look_up(self, key: str) -> Completion | None:
        entry = await self._entry(key)
        return None if entry is None else decode_entry(entry)

    async def look_up_relayed(self, key: str) -> tuple[Completion, bytes] | None:
        """The answer under `key` and the provider's answer as it came, for a gateway to
        relay; None (a miss) when the entry kept no such answer."""
        entry = await self._entry(key)
        raw = None if entry is None else raw_answer(entry)
        if entry is None or raw is None:
            return None
        return decode_entry(entry), raw

    async def _entry(self, key: str) -> bytes | None:
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._asked.setdefault(key, []).append(future)
        if self._answering is None:
            self._answering = task = asyncio.create_task(self._answer_asked())
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return await future

    async def _answer_asked(self) -> None:
        await asyncio.sleep(0)  # the other workers of this turn ask too
        asked, self._asked, self._answering = self._asked, {}, None
        try:
            entries = await self._guarded.get_many(list(asked))
        except BaseException as error:  # a cancellation: the store's errors are misses
            for futures in asked.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(error)
            raise
        counts = self.counts
        if entries is None:  # the store failed: every lookup of this turn misses
            entries = [None] * len(asked)
            counts.lookups_failed += sum(len(futures) for futures in asked.values())
        else:
            for futures, entry in zip(asked.values(), entries, strict=True):
                if entry is None:
                    counts.misses += len(futures)
                else:
                    counts.hits += len(futures)
        for futures, entry in zip(asked.values(), entries, strict=True):
            for future in futures:
                if not future.done():
                    future.set_result(entry)

    async def keep(self, key: str, completion: Completion, raw: bytes | None = None) -> None:
        """Stores `completion` (and `raw`, the provider's answer as it came) under `key` if
        it finished cleanly. Never raises for the store: an entry it cannot take is lost."""
        if not is_clean(completion):
            return
        if await self._guarded.put(key, encode_entry(completion, raw)):
            self.counts.stored += 1
        else:
            self.counts.keeps_failed += 1

    async def aclose(self) -> None:
        """Closes the store, writing what is pending; a failure to is a warning, not raised."""
        await self._guarded.aclose()


class BoundCache:
    """A `ResponseCache` as one link's engine asks it: `key` is the link's own (its provider
    builds the body), None for a request the cache must not answer."""

    __slots__ = ("_cache", "_key_of")

    def __init__(self, cache: ResponseCache, key_of: KeyOf) -> None:
        self._cache = cache
        self._key_of = key_of

    def key(self, request: Request) -> str | None:
        # Only a prompt goes through the link's own send: a user's callable (a subclass)
        # runs itself, and what it sends is not the link's to know.
        if type(request) is not Request or not self._cache.admits(request):
            return None
        return self._key_of(request)

    def look_up(self, key: str) -> Awaitable[Completion | None]:
        return self._cache.look_up(key)

    def keep(self, key: str, completion: Completion) -> Awaitable[None]:
        return self._cache.keep(key, completion)
