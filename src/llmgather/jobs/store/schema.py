"""The job store's SQLite plumbing: the schema, how a connection is opened, and transactions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ITEM_COLUMNS", "SCHEMA", "STAGING", "connect", "migrate", "transaction"]

# The columns every item row has after its line and id, in order: (name, declaration).
_ROW_COLUMNS = (
    ("status", "TEXT NOT NULL"),  # pending | ok | error
    ("output_fields", "BLOB"),  # JSON object merged into the output line, or NULL
    ("result", "BLOB"),  # the output line's JSON (Result.to_dict() with the input's id)
    ("attempts", "INTEGER NOT NULL DEFAULT 0"),
    ("input_tokens", "INTEGER NOT NULL DEFAULT 0"),
    ("output_tokens", "INTEGER NOT NULL DEFAULT 0"),
    ("error_type", "TEXT"),
    ("error_key", "TEXT"),  # the message without its location, cut short: groups errors
    ("error_message", "TEXT"),
    ("finished_at", "REAL"),
    ("digest", "BLOB"),  # what is sent for the item (its content digest), or NULL
    ("metadata", "BLOB"),  # the request's metadata as JSON, or NULL
    # An ok result's cost in whole nano-dollars (its line's `cost` × 1e9), NULL when unpriced:
    # summed in SQL, the job's cost is exact without reading every result's JSON.
    ("cost_nanos", "INTEGER"),
)
# Every column of `items`, `retired` and a rerun's `incoming`, in that order.
ITEM_COLUMNS = ", ".join(("line", "id", *(name for name, _ in _ROW_COLUMNS)))


def _item_table(name: str, line: str, id: str, *, temp: bool = False) -> str:
    columns = ",\n    ".join(
        f"{n} {kind}" for n, kind in (("line", line), ("id", id), *_ROW_COLUMNS)
    )
    return f"CREATE {'TEMP ' if temp else ''}TABLE IF NOT EXISTS {name} (\n    {columns}\n);\n"


SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB);\n"
    # `id` is NULL for a bad line known only by its line number.
    + _item_table("items", "INTEGER PRIMARY KEY", "TEXT UNIQUE")
    + "CREATE INDEX IF NOT EXISTS items_status ON items (status);\n"
    # Results of ids a rerun's input no longer holds (or can no longer send): kept, not shown.
    + _item_table("retired", "INTEGER NOT NULL", "TEXT PRIMARY KEY")
)
# Columns added since the first schema, for a store an older llmgather made: (name, type).
ADDED_COLUMNS = (("digest", "BLOB"), ("metadata", "BLOB"), ("cost_nanos", "INTEGER"))
# What a column added later holds for the rows recorded before it, by name (else NULL).
_BACKFILL = {
    "cost_nanos": "CAST(round(json_extract(CAST(result AS TEXT), '$.cost') * 1e9) AS INTEGER)"
    " WHERE status = 'ok'"
}
# A rerun's input read into the same shape as `items`, to be merged with it by id.
STAGING = _item_table("incoming", "INTEGER PRIMARY KEY", "TEXT UNIQUE", temp=True)


def migrate(conn: sqlite3.Connection) -> None:
    """Give a store made by an older llmgather the columns added since: empty for its rows, or
    read from their results (a cost from its line's JSON, once)."""
    with transaction(conn):  # two runs opening one old store at once add each column once
        for table in ("items", "retired"):
            have = {name for _, name, *_ in conn.execute(f"PRAGMA table_info({table})")}
            for name, kind in ADDED_COLUMNS:
                if name not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                    if name in _BACKFILL:
                        conn.execute(f"UPDATE {table} SET {name} = {_BACKFILL[name]}")


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
