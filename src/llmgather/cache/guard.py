"""A store that fails only misses: its errors never reach the answers or the job.

    lookup ─▶ store ─ error ─▶ a miss (the request is sent)  ─┐
    keep   ─▶ store ─ error ─▶ the entry is lost              ─┴▶ one warning, naming the cache

A cache saves time and money and nothing depends on it: an answer paid for stands whether
or not it could be kept, and a lookup that cannot be made is a request sent. A side that
failed (lookups, or keeps) is left alone for `RETRY_AFTER_S` before it is asked again, so a
Redis that went down costs no item the wait of its retries; the two sides are apart because
a SQLite file another process holds locked still answers lookups while it refuses writes.
One warning tells of a failure; the next comes only after every side that failed has worked
again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmgather._redact import hide_shapes
from llmgather.cache.base import CacheStore

__all__ = ["RETRY_AFTER_S", "GuardedStore", "log_warning"]

logger = logging.getLogger("llmgather")

RETRY_AFTER_S = 30.0
_GOES_ON = f"it is asked again in {RETRY_AFTER_S:.0f} s, and the work goes on without it"


def log_warning(message: str) -> None:
    """The warning of a cache whose owner named no other place for it."""
    logger.warning("llmgather: %s", message)


@dataclass(slots=True)
class _Side:
    """Lookups or keeps since they last failed: `failing` until one works again, and not
    asked before `resume_at` (a monotonic time)."""

    failing: bool = False
    resume_at: float = 0.0


class GuardedStore:
    """`store`'s lookups and keeps, its failures told to `warn` (once) instead of raised.

    `clock` is a monotonic time in seconds (injected by the tests)."""

    def __init__(
        self,
        store: CacheStore,
        *,
        warn: Callable[[str], None] = log_warning,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._warn = warn
        self._clock = clock
        self._lookups = _Side()
        self._keeps = _Side()

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None] | None:
        """The entries of `keys` (see `CacheStore.get_many`), None if the store failed."""
        if self._resting(self._lookups):
            return None
        try:
            entries = await self.store.get_many(keys)
        except Exception as error:
            self._failed(
                self._lookups, error, f"its lookups miss (the requests are sent); {_GOES_ON}"
            )
            return None
        self._lookups.failing = False
        return entries

    async def put(self, key: str, entry: bytes) -> bool:
        """Whether `entry` was taken (the store may still lose it on a later failed write)."""
        if self._resting(self._keeps):
            return False
        try:
            await self.store.put(key, entry)
        except Exception as error:
            self._failed(self._keeps, error, f"the answers it should keep are lost; {_GOES_ON}")
            return False
        self._keeps.failing = False
        return True

    async def aclose(self) -> None:
        """Closes the store; what it could not write is lost, with a warning."""
        try:
            await self.store.aclose()
        except Exception as error:
            self._failed(self._keeps, error, "what it had not yet written is lost")

    def _resting(self, side: _Side) -> bool:
        return side.failing and self._clock() < side.resume_at

    def _failed(self, side: _Side, error: Exception, consequence: str) -> None:
        if not (self._lookups.failing or self._keeps.failing):
            # A store's errors name the store as the user gave it (a Redis URL's password
            # hidden); the shapes of credentials are hidden here too, whatever else said them.
            said = hide_shapes(str(error)) or "no message"
            self._warn(
                f"the response cache {self.store.where} failed ({type(error).__name__}: "
                f"{said}): {consequence}"
            )
        side.failing = True
        side.resume_at = self._clock() + RETRY_AFTER_S
