"""The cache in a SQLite file: one table of key → answer, one of counts.

Every use of the file after it is opened runs on one thread of the store's own, in the order
asked: a write that waits for another process's lock holds neither the event loop nor any
item. It waits `BUSY_TIMEOUT_S` at most, then fails, and its entries are lost (a cache may
lose an entry; it must never stall the work). The lookups of many workers come gathered
(`ResponseCache` asks once per turn of the event loop), so a turn costs one hand-over to the
thread. Writes are gathered and committed together (every `_BATCH` entries, and at close):
the file is in WAL mode with `synchronous=NORMAL`, so a commit writes without waiting for the
disk, readers never wait for a writer, and a crash loses at most the entries not yet
committed (they are sent again next time; nothing else depends on them). Several processes
may share the file: SQLite's lock orders their writes.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from llmgather._errors import ConfigurationError
from llmgather.cache.base import CacheStats

__all__ = ["BUSY_TIMEOUT_S", "DEFAULT_CACHE_NAME", "SQLiteCacheStore"]

T = TypeVar("T")

DEFAULT_CACHE_NAME = "llmgather-cache.sqlite"
# Long enough for another process's commit of a batch (milliseconds), short enough that a
# file held locked for good loses a batch instead of holding the close of a run.
BUSY_TIMEOUT_S = 1.0
_BATCH = 256
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, entry BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS counts (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)
# SQLite's limit on the parameters of one statement is 32766 since 3.32; keep well below.
_LOOKUP_CHUNK = 500


class SQLiteCacheStore:
    def __init__(self, path: str) -> None:
        self.where = path
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise ConfigurationError(
                f"--cache {path}: the folder {directory} does not exist; give a file in a "
                "folder that does"
            )
        try:
            # Used by the store's thread only, one call at a time (see `_io`).
            self._conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                self._conn.execute(statement)
        except sqlite3.DatabaseError as error:
            raise ConfigurationError(
                f"--cache {path}: not a cache file llmgather can use ({error}); give another "
                "path, or remove it"
            ) from None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmgather-cache")
        self._pending: dict[str, bytes] = {}
        self._hits = self._misses = 0

    async def _io(self, work: Callable[[], T]) -> T:
        """`work` on the store's thread, after everything asked before it."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, work)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        # Read before the thread's turn: an entry not pending now is in a batch handed to the
        # thread earlier, so committed (or lost) before this read runs there.
        pending = {key: self._pending[key] for key in keys if key in self._pending}
        found = await self._io(lambda: self._read(keys))
        entries = [found.get(key, pending.get(key)) for key in keys]
        hits = sum(entry is not None for entry in entries)
        self._hits += hits
        self._misses += len(keys) - hits
        return entries

    def _read(self, keys: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT key, entry FROM entries WHERE key IN ({marks})",
                chunk,
            )
            found.update(rows)
        return found

    async def put(self, key: str, entry: bytes) -> None:
        self._pending[key] = entry
        if len(self._pending) >= _BATCH:
            await self._commit()

    async def _commit(self) -> None:
        """Writes the pending entries and counts; raises if the file refused them, and the
        entries are lost (the counts are kept for the next commit)."""
        pending, self._pending = self._pending, {}
        hits, misses = self._hits, self._misses
        self._hits = self._misses = 0
        try:
            await self._io(lambda: self._write(pending, [("hits", hits), ("misses", misses)]))
        except BaseException:
            self._hits += hits
            self._misses += misses
            raise

    def _write(self, pending: dict[str, bytes], counts: list[tuple[str, int]]) -> None:
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(
                "INSERT OR REPLACE INTO entries (key, entry) VALUES (?, ?)", pending.items()
            )
            self._conn.executemany(
                "INSERT INTO counts (name, value) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                counts,
            )

    async def stats(self) -> CacheStats:
        entries, size, counts = await self._io(self._read_stats)
        return CacheStats(
            where=self.where,
            entries=entries,
            size_bytes=size,
            hits=counts.get("hits", 0) + self._hits,
            misses=counts.get("misses", 0) + self._misses,
        )

    def _read_stats(self) -> tuple[int, int, dict[str, int]]:
        entries, size = self._conn.execute(
            "SELECT count(*), coalesce(sum(length(entry)), 0) FROM entries"
        ).fetchone()
        return entries, size, dict(self._conn.execute("SELECT name, value FROM counts"))

    async def clear(self) -> int:
        entries = await self._io(self._clear)
        self._pending.clear()
        self._hits = self._misses = 0
        return entries

    def _clear(self) -> int:
        (entries,) = self._conn.execute("SELECT count(*) FROM entries").fetchone()
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("DELETE FROM entries")
            self._conn.execute("DELETE FROM counts")
        self._conn.execute("VACUUM")
        return int(entries)

    async def aclose(self) -> None:
        try:
            if self._pending or self._hits or self._misses:
                await self._commit()
        finally:
            try:
                await self._io(self._conn.close)
            finally:
                self._thread.shutdown(wait=False)
