"""Ingest: insert every input item into the job store once, refusing ids used by several lines.

Items are inserted in batches; a line whose id is already taken is noted in a temporary table,
so every duplicate can be reported at the end without holding all ids in memory.

A bad line with no id of its own is known by its line number. When that number is another
line's id, it is given `line-N` instead (`line-N-2`, … if that is taken too), so the output
never holds two lines with one id. The choice depends only on the input, so it is the same
on every run of the same file.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from llmgather._errors import DuplicateIdError
from llmgather.jobs.inputs import InputItem
from llmgather.jobs.store.rows import item_row
from llmgather.jobs.store.schema import transaction

__all__ = ["IngestReport", "insert_items"]

_BATCH_ROWS = 5_000


@dataclass(frozen=True, slots=True)
class IngestReport:
    """The input's items, and on a rerun what changed since the last run: in its items
    (`merge.InputChanges.describe`) and in where the requests go (`identity`)."""

    total: int = 0
    valid: int = 0
    invalid: int = 0
    changes: tuple[str, ...] = ()
    route_changes: tuple[str, ...] = ()


def insert_items(
    conn: sqlite3.Connection, items: Iterable[InputItem], *, table: str = "items"
) -> IngestReport:
    """Replace the rows of `table` (the store's items, or a rerun's staging copy of its
    schema, `jobs.store.merge`) with `items`; on any error (DuplicateIdError too) none remain."""
    with transaction(conn):
        conn.execute(f"DELETE FROM {table}")
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS duplicates (id TEXT NOT NULL, line INTEGER NOT NULL)"
    )
    conn.execute("DELETE FROM duplicates")
    try:
        report = _insert_all(conn, items, table)
        duplicate = _duplicate_error(conn, table)
        if duplicate is not None:
            raise duplicate
        _rekey_taken_line_numbers(conn, table)
    except BaseException:
        with transaction(conn):
            conn.execute(f"DELETE FROM {table}")
        raise
    finally:
        conn.execute("DROP TABLE IF EXISTS temp.duplicates")
    return report


def _insert_all(conn: sqlite3.Connection, items: Iterable[InputItem], table: str) -> IngestReport:
    total = invalid = 0
    batch: list[tuple[Any, ...]] = []
    for item in items:
        total += 1
        invalid += item.request is None
        batch.append(item_row(item))
        if len(batch) >= _BATCH_ROWS:
            _insert_batch(conn, batch, table)
            batch = []
    if batch:
        _insert_batch(conn, batch, table)
    return IngestReport(total=total, valid=total - invalid, invalid=invalid)


def _insert_batch(conn: sqlite3.Connection, batch: list[tuple[Any, ...]], table: str) -> None:
    with transaction(conn):
        before = conn.total_changes
        conn.executemany(
            f"INSERT INTO {table} (line, id, status, output_fields, result, error_type,"
            " error_key, error_message, finished_at, digest, metadata)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            batch,
        )
        if conn.total_changes - before == len(batch):
            return
        # Some ids were taken already: note which lines lost, to report them all at the end.
        first, last = batch[0][0], batch[-1][0]
        stored = {line for (line,) in conn.execute(
            f"SELECT line FROM {table} WHERE line BETWEEN ? AND ?", (first, last))}  # fmt: skip
        conn.executemany(
            "INSERT INTO temp.duplicates (id, line) VALUES (?, ?)",
            [(row[1], row[0]) for row in batch if row[0] not in stored],
        )


def _duplicate_error(conn: sqlite3.Connection, table: str) -> DuplicateIdError | None:
    ids, lines = conn.execute("SELECT count(DISTINCT id), count(*) FROM temp.duplicates").fetchone()
    if not lines:
        return None
    examples: list[tuple[str, list[int]]] = []
    for (id,) in conn.execute(
        "SELECT id FROM temp.duplicates GROUP BY id ORDER BY min(line) LIMIT 10"
    ).fetchall():
        found = conn.execute(
            f"SELECT line FROM {table} WHERE id = ? UNION ALL"
            " SELECT * FROM (SELECT line FROM temp.duplicates WHERE id = ? ORDER BY line LIMIT 9)",
            (id, id),
        ).fetchall()
        examples.append((id, [line for (line,) in found]))
    return DuplicateIdError(examples, ids=ids, lines=lines + ids)


def _rekey_taken_line_numbers(conn: sqlite3.Connection, table: str) -> None:
    """Give a bad line known by its number another id when that number is a real id."""
    after = 0
    while True:  # pages in line order: never every such line in memory at once
        # Only bad lines without an id keep a NULL id; the index on `id` answers each lookup.
        taken = conn.execute(
            f"SELECT line, result, output_fields FROM {table} AS a WHERE a.id IS NULL"
            f" AND a.line > ? AND EXISTS (SELECT 1 FROM {table} AS b"
            "  WHERE b.id = CAST(a.line AS TEXT))"
            " ORDER BY line LIMIT ?",
            (after, _BATCH_ROWS),
        ).fetchall()
        if not taken:
            return
        with transaction(conn):
            for line, result, output_fields in taken:
                id = next(
                    candidate
                    for candidate in _line_ids(line)
                    if conn.execute(f"SELECT 1 FROM {table} WHERE id = ?", (candidate,)).fetchone()
                    is None
                )
                data = orjson.loads(result)
                data["id"] = id
                # An integer id equal to its own line number must not show over the new one.
                fields = orjson.loads(output_fields) if output_fields else {}
                fields.pop("id", None)
                # The id column holds it now, so no later line's new id can take it.
                conn.execute(
                    f"UPDATE {table} SET id = ?, result = ?, output_fields = ? WHERE line = ?",
                    (id, orjson.dumps(data), orjson.dumps(fields) if fields else None, line),
                )
        after = taken[-1][0]


def _line_ids(line: int) -> Iterator[str]:
    yield f"line-{line}"
    for n in itertools.count(2):
        yield f"line-{line}-{n}"
