"""How long finished background `/generate`s are kept: each is a folder on disk (its input,
results and store, ~40 KB) and a record in memory, read again at every start, so a web app
that runs a million of them must not keep them all.

    finished ─▶ kept, oldest first ─▶ removed once older than `keep_s`, or once more than
                                      `keep_most` newer ones have finished

The count is enforced as each one finishes, the age by a timer that sleeps until the oldest
expires (and not at all while none is kept); both once more at start.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmgather.service.job_records import JobRecord

logger = logging.getLogger("llmgather.service")


class GenerationRetention:
    """The finished generations of `registry` (id → record, which it removes them from), kept
    for `keep_s` seconds after they end and at most `keep_most` of them."""

    def __init__(
        self,
        registry: MutableMapping[str, JobRecord],
        *,
        keep_s: float,
        keep_most: int,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._registry = registry
        self._keep_s = keep_s
        self._keep_most = keep_most
        self._now = now
        self._kept: OrderedDict[str, JobRecord] = OrderedDict()  # in the order they ended
        self._added = asyncio.Event()

    def __len__(self) -> int:
        return len(self._kept)

    def kept(self, record: JobRecord) -> None:
        """Count a finished generation in (records loaded at start: oldest first)."""
        self._kept[record.id] = record
        self._added.set()

    async def finished(self, record: JobRecord) -> None:
        """A generation has just ended: kept, and the oldest removed past `keep_most`."""
        self.kept(record)
        if len(self._kept) > self._keep_most:
            await self.prune()

    async def prune(self) -> int:
        """Remove what is past its time or beyond the count; returns how many went."""
        cutoff = self._now() - self._keep_s
        gone: list[JobRecord] = []
        while self._kept:
            oldest = next(iter(self._kept.values()))
            if len(self._kept) <= self._keep_most and _ended(oldest) > cutoff:
                break
            del self._kept[oldest.id]
            # Forgotten before its folder goes: a read from now on is a 404, never a record
            # whose files are half removed.
            self._registry.pop(oldest.id, None)
            gone.append(oldest)
        if gone:
            await asyncio.to_thread(_remove, [record.directory for record in gone])
            logger.info("removed %d finished background /generate(s) past retention", len(gone))
        return len(gone)

    async def run(self) -> None:
        """Remove each one as it expires, until cancelled (a task of the app's)."""
        while True:
            if not self._kept:
                self._added.clear()
                await self._added.wait()
                continue
            oldest = next(iter(self._kept.values()))
            wait = _ended(oldest) + self._keep_s - self._now()
            if wait > 0:
                await asyncio.sleep(wait)
            await self.prune()


def _ended(record: JobRecord) -> float:
    return record.finished_at if record.finished_at is not None else record.created_at


def _remove(directories: list[Path]) -> None:
    # A folder that cannot be removed now is forgotten here and pruned again at the next start.
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)
