"""The job store beside `-o`, as a rerun would find it, read and never written.

A dry run must leave an existing store as it was: `SQLiteJobStore.open` runs the schema and
migrates a store an older llmgather made (a write), so the store is opened here with SQLite's
read-only URI instead, and an old store's schema is read as it is (no `cost_nanos` column:
the costs are read from the results' JSON). A store that was closed cleanly (no `-wal` file)
is opened `immutable`, so not even the `-wal`/`-shm` files a read-only WAL reader leaves
behind appear beside it; one with a `-wal` (a run is live, or died) is opened `mode=ro`,
which reads that run's commits consistently.

What a rerun sends, item by item, as `llmgather run` decides it: an item whose id has a
result (ok; or failed, unless `--retry-failed`) for the same request (the same digest) is
kept; anything else (new, pending, edited, invalid before, left unsent by a spent cost cap)
is sent.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import orjson

from llmgather.jobs.inputs import InputItem
from llmgather.jobs.store import store_path_for
from llmgather.jobs.store.rows import INVALID_INPUT, UNSENT_FOR_COST

__all__ = ["FinishedJob", "open_finished_job"]

# The results a rerun keeps rather than sends, by (status, error type): see the module's doc.
_NEVER_KEPT_ERRORS = (INVALID_INPUT, UNSENT_FOR_COST)


@dataclass(frozen=True, slots=True)
class _Summary:
    ok: int
    output_tokens: int
    spent_usd: Decimal | None  # the ok lines' cost; None when one of them is unpriced


class FinishedJob:
    """A job store opened read-only: its finished items' figures and, per input item,
    whether a rerun keeps its result (`keeps`)."""

    def __init__(self, conn: sqlite3.Connection, *, retry_failed: bool) -> None:
        self._conn = conn
        self._retry_failed = retry_failed
        self._summary = _summarize(conn)
        self._lookup = " UNION ALL ".join(
            f"SELECT status, error_type, {_digest_of(conn, table)} FROM {table} WHERE id = ?"
            for table in ("items", "retired")
        )
        self.kept = 0  # items `keeps` said yes to

    def __enter__(self) -> FinishedJob:
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.close()

    @property
    def ok(self) -> int:
        return self._summary.ok

    @property
    def average_output(self) -> float | None:
        """The mean output tokens of the ok items (None with none)."""
        s = self._summary
        return s.output_tokens / s.ok if s.ok else None

    @property
    def spent_usd(self) -> Decimal | None:
        return self._summary.spent_usd

    def keeps(self, item: InputItem) -> bool:
        """Whether a rerun keeps this valid item's result rather than sending it."""
        row = self._conn.execute(f"{self._lookup} LIMIT 1", (item.id, item.id)).fetchone()
        if row is None:
            return False
        status, error_type, digest = row
        # A store an older llmgather made may hold no digest: the rerun takes it as the same.
        same = digest is None or bytes(digest) == item.content_digest
        finished = status == "ok" or (
            status == "error" and error_type not in _NEVER_KEPT_ERRORS and not self._retry_failed
        )
        kept = same and finished
        self.kept += kept
        return kept


def open_finished_job(output_path: str, *, retry_failed: bool) -> FinishedJob | None:
    """The job store beside `output_path`, read-only; None when there is none, it holds no
    ingested job, or it cannot be read (the estimate then covers every item)."""
    path = store_path_for(output_path)
    if not os.path.exists(path):
        return None
    live = os.path.exists(f"{path}-wal")
    uri = f"file:{quote(str(Path(path).resolve()))}?{'mode=ro' if live else 'immutable=1'}"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=5, check_same_thread=False)
    except sqlite3.Error:
        return None
    try:
        ingested = conn.execute("SELECT value FROM meta WHERE key = 'ingested'").fetchone()
        if ingested is None or not orjson.loads(ingested[0]):
            conn.close()
            return None
        return FinishedJob(conn, retry_failed=retry_failed)
    except (sqlite3.Error, orjson.JSONDecodeError):
        conn.close()
        return None


def _digest_of(conn: sqlite3.Connection, table: str) -> str:
    """The `digest` column, or NULL in a store made before items had one."""
    columns = {name for _, name, *_ in conn.execute(f"PRAGMA table_info({table})")}
    return "digest" if "digest" in columns else "NULL"


def _summarize(conn: sqlite3.Connection) -> _Summary:
    ok, output_tokens, unpriced = conn.execute(
        "SELECT count(*), coalesce(sum(output_tokens), 0),"
        " coalesce(sum(json_extract(CAST(result AS TEXT), '$.cost') IS NULL), 0)"
        " FROM items WHERE status = 'ok'"
    ).fetchone()
    if unpriced:
        return _Summary(ok, output_tokens, None)
    # Each line's cost as its JSON shows it (at most 9 decimals), summed exactly; read from
    # the result, not `cost_nanos`, which a store made before the cost was counted lacks.
    spent = sum(
        (
            Decimal(str(cost))
            for (cost,) in conn.execute(
                "SELECT json_extract(CAST(result AS TEXT), '$.cost') FROM items WHERE status = 'ok'"
            )
        ),
        Decimal(0),
    )
    return _Summary(ok, output_tokens, spent)
