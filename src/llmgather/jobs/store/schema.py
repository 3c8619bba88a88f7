"""The job store's SQLite plumbing: the schema, how a connection is opened, and transactions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ITEM_COLUMNS", "SCHEMA", "STAGING", "connect", "migrate", "transaction"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB);
CREATE TABLE IF NOT EXISTS items (
    line INTEGER PRIMARY KEY,
    id TEXT UNIQUE,                  -- NULL for a bad line known only by its line number
    status TEXT NOT NULL,            -- pending | ok | error
    output_fields BLOB,              -- JSON object merged into the output line, or NULL
    result BLOB,                     -- the output line's JSON (Result.to_dict() with the input's id)
    attempts INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    error_type TEXT,
    error_key TEXT,                  -- the message without its location, cut short: groups errors
    error_message TEXT,
    finished_at REAL,
    digest BLOB,                     -- what is sent for the item (its content digest), or NULL
    metadata BLOB                    -- the request's metadata as JSON, or NULL
);
CREATE INDEX IF NOT EXISTS items_status ON items (status);
-- Results of ids a rerun's input no longer holds (or can no longer send): kept, not shown.
CREATE TABLE IF NOT EXISTS retired (
    id TEXT PRIMARY KEY,
    line INTEGER NOT NULL,
    status TEXT NOT NULL,
    output_fields BLOB,
    result BLOB,
    attempts INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    error_type TEXT,
    error_key TEXT,
    error_message TEXT,
    finished_at REAL,
    digest BLOB,
    metadata BLOB
);
"""
# Columns added since the first schema, for a store an older llmgather made: (name, type).
ADDED_COLUMNS = (("digest", "BLOB"), ("metadata", "BLOB"))
# Every column of `items` and `retired`, in that order.
ITEM_COLUMNS = (
    "line, id, status, output_fields, result, attempts, input_tokens, output_tokens,"
    " error_type, error_key, error_message, finished_at, digest, metadata"
)
# A rerun's input read into the same shape as `items`, to be merged with it by id.
STAGING = """
CREATE TEMP TABLE IF NOT EXISTS incoming (
    line INTEGER PRIMARY KEY,
    id TEXT UNIQUE,
    status TEXT NOT NULL,
    output_fields BLOB,
    result BLOB,
    attempts INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    error_type TEXT,
    error_key TEXT,
    error_message TEXT,
    finished_at REAL,
    digest BLOB,
    metadata BLOB
);
"""


def migrate(conn: sqlite3.Connection) -> None:
    """Give a store made by an older llmgather the columns added since (empty for its rows)."""
    with transaction(conn):  # two runs opening one old store at once add each column once
        have = {name for _, name, *_ in conn.execute("PRAGMA table_info(items)")}
        for name, kind in ADDED_COLUMNS:
            if name not in have:
                conn.execute(f"ALTER TABLE items ADD COLUMN {name} {kind}")


def connect(path: str) -> sqlite3.Connection:
    """A connection in WAL mode, usable from any thread, with explicit transactions only."""
    # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE), never implicit.
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
