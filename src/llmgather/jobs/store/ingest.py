"""Ingest: insert every input item into the job store once, refusing ids used by several lines.

Items are inserted in batches; a line whose id is already taken is noted in a temporary table,
so every duplicate can be reported at the end without holding all ids in memory.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from llmgather._errors import InvalidInputError
from llmgather.jobs.inputs import InputItem
from llmgather.jobs.store.rows import item_row
from llmgather.jobs.store.schema import transaction

__all__ = ["DuplicateIdError", "IngestReport", "insert_items"]

_BATCH_ROWS = 5_000


class DuplicateIdError(InvalidInputError):
    """Two or more input lines share an id; `examples` maps up to 10 ids to their lines."""

    def __init__(self, examples: list[tuple[str, list[int]]], ids: int, lines: int) -> None:
        self.examples = examples
        self.ids = ids
        self.lines = lines
        shown = "; ".join(f"{id!r} on lines {', '.join(map(str, ls))}" for id, ls in examples)
        more = f" (the first {len(examples)} shown)" if ids > len(examples) else ""
        super().__init__(
            f"{ids} id{'s' if ids != 1 else ''} used by more than one input line "
            f"({lines} lines in all): {shown}{more}. Every line needs its own id so results can be "
            "matched and resumed; fix the ids (or drop them to number lines automatically) and rerun."
        )


@dataclass(frozen=True, slots=True)
class IngestReport:
    total: int = 0
    valid: int = 0
    invalid: int = 0


def insert_items(conn: sqlite3.Connection, items: Iterable[InputItem]) -> IngestReport:
    """Replace the store's items with `items`; on any error (DuplicateIdError too) none remain."""
    with transaction(conn):
        conn.execute("DELETE FROM items")
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS duplicates (id TEXT NOT NULL, line INTEGER NOT NULL)"
    )
    conn.execute("DELETE FROM duplicates")
    try:
        report = _insert_all(conn, items)
        duplicate = _duplicate_error(conn)
        if duplicate is not None:
            raise duplicate
    except BaseException:
        with transaction(conn):
            conn.execute("DELETE FROM items")
        raise
    finally:
        conn.execute("DROP TABLE IF EXISTS temp.duplicates")
    return report


def _insert_all(conn: sqlite3.Connection, items: Iterable[InputItem]) -> IngestReport:
    total = invalid = 0
    batch: list[tuple[Any, ...]] = []
    for item in items:
        total += 1
        invalid += item.request is None
        batch.append(item_row(item))
        if len(batch) >= _BATCH_ROWS:
            _insert_batch(conn, batch)
            batch = []
    if batch:
        _insert_batch(conn, batch)
    return IngestReport(total=total, valid=total - invalid, invalid=invalid)


def _insert_batch(conn: sqlite3.Connection, batch: list[tuple[Any, ...]]) -> None:
    with transaction(conn):
        before = conn.total_changes
        conn.executemany(
            "INSERT INTO items (line, id, status, output_fields, result, error_type, error_key,"
            " error_message, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            batch,
        )
        if conn.total_changes - before == len(batch):
            return
        # Some ids were taken already: note which lines lost, to report them all at the end.
        first, last = batch[0][0], batch[-1][0]
        stored = {line for (line,) in conn.execute(
            "SELECT line FROM items WHERE line BETWEEN ? AND ?", (first, last))}  # fmt: skip
        conn.executemany(
            "INSERT INTO temp.duplicates (id, line) VALUES (?, ?)",
            [(row[1], row[0]) for row in batch if row[0] not in stored],
        )


def _duplicate_error(conn: sqlite3.Connection) -> DuplicateIdError | None:
    ids, lines = conn.execute("SELECT count(DISTINCT id), count(*) FROM temp.duplicates").fetchone()
    if not lines:
        return None
    examples: list[tuple[str, list[int]]] = []
    for (id,) in conn.execute(
        "SELECT id FROM temp.duplicates GROUP BY id ORDER BY min(line) LIMIT 10"
    ).fetchall():
        found = conn.execute(
            "SELECT line FROM items WHERE id = ? UNION ALL"
            " SELECT * FROM (SELECT line FROM temp.duplicates WHERE id = ? ORDER BY line LIMIT 9)",
            (id, id),
        ).fetchall()
        examples.append((id, [line for (line,) in found]))
    return DuplicateIdError(examples, ids=ids, lines=lines + ids)
