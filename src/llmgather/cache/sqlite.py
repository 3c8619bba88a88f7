"""The cache in a SQLite file: one table of key → answer, one of counts.

Reads are primary-key lookups made on the event loop: a few microseconds each, cheaper than
handing each to a thread, so ten thousand hits take a fraction of a second. Writes are
gathered and committed together (every `_BATCH` entries, and at close): the file is in WAL
mode with `synchronous=NORMAL`, so a commit writes without waiting for the disk, and a crash
loses at most the entries not yet committed (they are sent again next time; nothing else
depends on them). Several processes may share the file: SQLite's lock orders their writes.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence

from llmgather._errors import ConfigurationError
from llmgather.cache.base import CacheStats

__all__ = ["DEFAULT_CACHE_NAME", "SQLiteCacheStore"]

DEFAULT_CACHE_NAME = "llmgather-cache.sqlite"
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
            self._conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                self._conn.execute(statement)
        except sqlite3.DatabaseError as error:
            raise ConfigurationError(
                f"--cache {path}: not a cache file llmgather can use ({error}); give another "
                "path, or remove it"
            ) from None
        self._pending: dict[str, bytes] = {}
        self._hits = self._misses = 0

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        found: dict[str, bytes] = {}
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT key, entry FROM entries WHERE key IN ({marks})",
                chunk,
            )
            found.update(rows)
        entries = [found.get(key, self._pending.get(key)) for key in keys]
        hits = sum(entry is not None for entry in entries)
        self._hits += hits
        self._misses += len(keys) - hits
        return entries

    async def put(self, key: str, entry: bytes) -> None:
        self._pending[key] = entry
        if len(self._pending) >= _BATCH:
            self._commit()

    def _commit(self) -> None:
        pending, self._pending = self._pending, {}
        counts = [("hits", self._hits), ("misses", self._misses)]
        self._hits = self._misses = 0
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
        entries, size = self._conn.execute(
            "SELECT count(*), coalesce(sum(length(entry)), 0) FROM entries"
        ).fetchone()
        counts = dict(self._conn.execute("SELECT name, value FROM counts"))
        return CacheStats(
            where=self.where,
            entries=entries,
            size_bytes=size,
            hits=counts.get("hits", 0) + self._hits,
            misses=counts.get("misses", 0) + self._misses,
        )

    async def clear(self) -> int:
        (entries,) = self._conn.execute("SELECT count(*) FROM entries").fetchone()
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("DELETE FROM entries")
            self._conn.execute("DELETE FROM counts")
        self._pending.clear()
        self._hits = self._misses = 0
        self._conn.execute("VACUUM")
        return int(entries)

    async def aclose(self) -> None:
        try:
            if self._pending or self._hits or self._misses:
                self._commit()
        finally:
            self._conn.close()
