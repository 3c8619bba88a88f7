"""The SQLite job store: one file (WAL) beside the output that remembers every result.

The first implementation of the `JobStore` protocol. A run ingests every input line once (id,
line, status), then records results as they arrive, one transaction per batch, so a crash loses
only what was in flight. It never writes the output file: `finished_rows` reads what the output
shows, in input order, for `jobs.output` to rewrite the file from. Nothing here holds all items
or all ids in memory; every scan is a bounded page or a streamed cursor.

The pieces live beside it: `schema` (schema, connections, transactions), `rows`
(items and results as rows), `ingest` (ingest and duplicate ids), `merge` (a rerun on an
edited input, line by line), `..identity` (same parameters, and what else changed),
`..liveness` (who runs the job) and `stats` (status numbers).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

import orjson

from llmgather._errors import InvalidInputError, JobMismatchError
from llmgather._types import Result
from llmgather.jobs.identity import (
    SENDING_ROUTE,
    describe_changes,
    describe_route_changes,
    fingerprint_file,
)
from llmgather.jobs.inputs import InputItem
from llmgather.jobs.liveness import (
    check_not_busy,
    process_alive,
    running_claim,
    unclosed_run_s,
)
from llmgather.jobs.output import real_output_path
from llmgather.jobs.store.ingest import IngestReport, insert_items
from llmgather.jobs.store.merge import merge_items
from llmgather.jobs.store.rows import INVALID_INPUT, UNSENT_FOR_COST, result_row
from llmgather.jobs.store.schema import SCHEMA, connect, migrate, transaction
from llmgather.jobs.store.spend import SPEND_SCHEMA, record_spend, spent_nanos
from llmgather.jobs.store.stats import JobStats, count_items, job_stats

__all__ = [
    "INVALID_INPUT",
    "IngestReport",
    "JobStats",
    "SQLiteJobStore",
    "fingerprint_file",
    "store_path_for",
]

STATES = ("new", "running", "interrupted", "complete")
# What the items' digests are of (`InputItem.content_digest`): a store without it has others.
DIGESTS = "sent"
_STORE_SUFFIX = ".llmgather.sqlite"
_PAGE_ROWS = 2_000


def store_path_for(output_path: str) -> str:
    """Where the job store of an output file lives: beside it, same name plus a suffix (beside
    the file a symbolic link names, when the output is one)."""
    return f"{real_output_path(output_path)}{_STORE_SUFFIX}"


class SQLiteJobStore:
    """One job's durable state in SQLite. Thread-safe: every method takes the store's lock."""

    def __init__(self, path: str, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str, *, create: bool = True) -> SQLiteJobStore:
        """Open (or, with `create`, create) the store at `path`; FileNotFoundError otherwise."""
        if not create and not os.path.exists(path):
            raise FileNotFoundError(path)
        conn = connect(path)
        try:
            conn.executescript(SCHEMA + SPEND_SCHEMA)
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return cls(path, conn)

    def __enter__(self) -> SQLiteJobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SQLiteJobStore {self.path!r}>"

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- lifecycle ---------------------------------------------------------------------------

    def prepare(self, *, input_fingerprint: str, params: dict[str, Any], restart: bool) -> bool:
        """Bind the store to these parameters (and, for a new job, this input) and claim it
        for this process; True when resuming a job.

        One write transaction from the busy check to the claim, so two runs started at once
        cannot both pass. A job whose ingestion never finished holds no results and is replaced.
        Another input resumes the job line by line (see `ingest`); other parameters do not.
        """
        params = _as_stored(params)
        now = time.time()
        with self._lock, self._transaction():
            meta = self._meta()
            check_not_busy(meta)
            resuming = bool(meta.get("ingested")) and not restart
            if resuming:
                changes = describe_changes(meta.get("params") or {}, params)
                if changes:
                    raise JobMismatchError(_output_name(self.path), changes)
                if meta.get("digests") != DIGESTS:
                    # An older llmgather's digests are of line bytes, not of what is sent:
                    # dropped, so a pending line read again is not taken for an edit; on an
                    # edited input, a line with a result then counts as changed (unknown).
                    self._conn.execute("UPDATE items SET digest = NULL")
                    self._set_meta(digests=DIGESTS)
            else:
                self._conn.execute("DELETE FROM items")
                self._conn.execute("DELETE FROM retired")
                self._conn.execute("DELETE FROM spend")
                self._conn.execute("DELETE FROM meta")
                self._set_meta(
                    fingerprint=input_fingerprint,
                    params=params,
                    state="new",
                    created_at=now,
                    digests=DIGESTS,
                )
                meta = {}
            active = float(meta.get("active_s", 0.0)) + unclosed_run_s(meta, now)
            self._set_meta(**running_claim(now), active_s=active)
        return resuming

    def ingest(
        self,
        items: Iterable[InputItem],
        *,
        input_fingerprint: str | None = None,
        route: dict[str, Any] | None = None,
        resend_changed: bool = False,
        source: str = "the input",
    ) -> IngestReport:
        """Take the input's items: every one, for a new job; none, for a resumed job on the
        same input (`input_fingerprint`) read the same way (`route`), whose saved report is
        returned; otherwise the input merged into the job line by line (`jobs.store.merge`),
        which raises ChangedItemsError, the job untouched, when items with results changed
        and `resend_changed` is not set. The report says what changed since the last run."""
        route = _as_stored(route or {})
        with self._lock:
            meta = self._meta()
            old_route = meta.get("route") or _route_of_old_store(meta, route)
            route_changes = describe_route_changes(old_route, route) if meta.get("ingested") else []
            same_input = input_fingerprint in (None, meta.get("fingerprint"))
            if meta.get("ingested") and same_input and not _reads_differently(old_route, route):
                if route_changes:
                    with self._transaction():
                        self._set_meta(route=route)
                saved = IngestReport(**meta["ingest_report"])
                return replace(saved, route_changes=tuple(route_changes))
            generation = int(meta.get("generation", 0))
            if meta.get("ingested"):
                report, changes = merge_items(
                    self._conn, items, resend_changed=resend_changed, source=source
                )
                report = replace(
                    report, changes=tuple(changes.describe()), route_changes=tuple(route_changes)
                )
                generation += changes.resend_anew
            else:
                report = insert_items(self._conn, items)
            with self._transaction():
                self._set_meta(
                    ingested=True,
                    ingest_report=_saved(report),
                    fingerprint=input_fingerprint or meta.get("fingerprint"),
                    route=route,
                    generation=generation,
                )
            return report

    def epoch(self) -> str:
        """What tells this job's requests from those of another job on the same output (its
        creation) or of an earlier run of it (how many reruns changed a request that may have
        been sent): a work queue keeps results by item id, and must not take one for another
        request."""
        with self._lock:
            meta = self._meta()
        return f"{meta.get('created_at')}:{meta.get('generation', 0)}"

    def mark_state(self, state: str) -> None:
        """Record the job's state; "running" also notes this process, to spot a crashed run."""
        if state not in STATES:
            raise ValueError(f"unknown job state {state!r}; expected one of {', '.join(STATES)}")
        now = time.time()
        with self._lock:
            meta = self._meta()
            active = float(meta.get("active_s", 0.0)) + unclosed_run_s(meta, now)
            changes: dict[str, Any] = {"state": state, "active_s": active, "run_started_at": None}
            if state == "running":
                changes.update(running_claim(now))
                if meta.get("started_at") is None:
                    changes["started_at"] = now
            with self._transaction():
                self._set_meta(**changes)

    # -- the run -----------------------------------------------------------------------------

    def reset_failed(self) -> int:
        """Put failed items (not invalid lines) back to pending; returns how many."""
        with self._lock, self._transaction():
            return self._conn.execute(
                "UPDATE items SET status = 'pending' WHERE status = 'error' AND error_type IS NOT ?",
                (INVALID_INPUT,),
            ).rowcount

    def reset_unsent(self) -> int:
        """Put the items a spent cost cap left unsent back to pending (a rerun sends them
        without `--retry-failed`: they were never sent); returns how many."""
        with self._lock, self._transaction():
            return self._conn.execute(
                "UPDATE items SET status = 'pending' WHERE status = 'error' AND error_type = ?",
                (UNSENT_FOR_COST,),
            ).rowcount

    def record_spend(
        self, reserved: Sequence[tuple[str, int]], settled: Sequence[tuple[str, int]]
    ) -> None:
        """Commit a batch of a cost cap's reservations and settlements (see `store.spend`)."""
        with self._lock, self._transaction():
            record_spend(self._conn, reserved, settled)

    def spent_nanos(self) -> int:
        """What the job spent under its cost cap, in nano-dollars, over all its runs."""
        with self._lock:
            return spent_nanos(self._conn)

    def pending_lines(self) -> Iterator[int]:
        for line, _, _ in self._pending_rows():
            yield line

    def _pending_rows(self) -> Iterator[tuple[int, str, bytes | None]]:
        """(line, id, digest) of every pending item as ingested, in line order."""
        # Short keyset-paged queries, not one long cursor: results recorded meanwhile are for
        # lines already yielded, and no read snapshot is held open for the whole run.
        after = 0
        while True:
            with self._lock:
                page: list[tuple[int, str, bytes | None]] = self._conn.execute(
                    "SELECT line, id, digest FROM items WHERE status = 'pending' AND line > ?"
                    " ORDER BY line LIMIT ?",
                    (after, _PAGE_ROWS),
                ).fetchall()
            yield from page
            if len(page) < _PAGE_ROWS:
                return
            after = page[-1][0]

    def pending_items(
        self, items: Iterable[InputItem], *, should_stop: Callable[[], bool] | None = None
    ) -> Iterator[InputItem]:
        """The items still to send: `items` (a fresh read of the same input) joined to the store.

        Both sides are in ascending line order, so this is a streaming merge with no lookup set.
        Each pending line read again must be the one ingested (its id, and its digest when both
        reads kept one): InvalidInputError otherwise, before it is yielded, so an edit made to
        the input while the job runs is never sent. `should_stop` is asked now and then while a
        stretch of finished lines is skipped, so a stop does not wait for the scan to reach the
        next pending line.
        """
        pending = self._pending_rows()
        wanted = next(pending, None)
        for item in items:
            if wanted is None:
                return
            if should_stop is not None and item.line % 1024 == 0 and should_stop():
                return
            line, id, digest = wanted
            if item.line == line:
                _check_unchanged(item, id, digest)
                yield item
                wanted = next(pending, None)
            elif item.line > line:
                raise InvalidInputError(
                    f"line {line} of the input is pending in the job store but was not read "
                    "again; the input changed while the job ran"
                )
        if wanted is not None:
            raise InvalidInputError(
                f"line {wanted[0]} of the input is pending in the job store but the input ended "
                "first; the input changed while the job ran"
            )

    def record(
        self, results: Sequence[tuple[str, Result]], encoded: Sequence[bytes] | None = None
    ) -> int:
        """Store a batch of finished results in one transaction; returns how many ids matched.

        Recording an id again replaces its earlier result (the output never holds it twice).
        `encoded`, when given, is each result's `jobs.encoding.encode_result`, made already.
        """
        now = time.time()
        if encoded is None:
            rows = [result_row(id, result, now) for id, result in results]
        else:
            rows = [
                result_row(id, result, now, data)
                for (id, result), data in zip(results, encoded, strict=True)
            ]
        with self._lock, self._transaction():
            before = self._conn.total_changes
            self._conn.executemany(
                "UPDATE items SET status = ?, result = ?, attempts = ?, input_tokens = ?, output_tokens = ?,"
                " error_type = ?, error_key = ?, error_message = ?, finished_at = ?, cost_nanos = ?"
                " WHERE id = ?",
                rows,
            )
            matched = self._conn.total_changes - before
            self._set_meta(last_activity_at=now)
        return matched

    def finished_rows(self) -> Generator[tuple[bytes | None, bytes], None, None]:
        """Every finished item's (output fields, result) as stored JSON, in input order.

        Reads from its own connection (a WAL snapshot), so recording can go on meanwhile; the
        connection closes when the iterator ends or is closed (`contextlib.closing`).
        """
        reader = connect(self.path)
        try:
            yield from reader.execute(
                "SELECT output_fields, result FROM items WHERE status != 'pending' ORDER BY line"
            )
        finally:
            reader.close()

    # -- reporting ---------------------------------------------------------------------------

    def recorded_state(self) -> str:
        """The job's state as recorded (a run that died while running: interrupted), without
        counting its items."""
        with self._lock:
            meta = self._meta()
        state = str(meta.get("state", "new"))
        return "interrupted" if state == "running" and not process_alive(meta) else state

    def stats(self, *, top: int = 5) -> JobStats:
        now = time.time()
        with self._lock:
            meta = self._meta()
            counts, top_errors = count_items(self._conn, top)
        return job_stats(meta, counts, top_errors, now)

    # -- internals ---------------------------------------------------------------------------

    def _meta(self) -> dict[str, Any]:
        return {
            key: orjson.loads(value)
            for key, value in self._conn.execute("SELECT key, value FROM meta")
        }

    def _set_meta(self, **values: Any) -> None:
        self._conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [(key, orjson.dumps(value)) for key, value in values.items()],
        )

    def _transaction(self) -> AbstractContextManager[None]:
        return transaction(self._conn)


def _as_stored(values: dict[str, Any]) -> dict[str, Any]:
    """`values` as JSON stores them, so what is compared is what a later run reads back."""
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(values, default=str))
    return loaded


def _route_of_old_store(meta: dict[str, Any], route: dict[str, Any]) -> dict[str, Any]:
    """The route of a job an older llmgather made, which kept it among its parameters."""
    params = meta.get("params") or {}
    return {key: params.get(key) for key in route}


def _reads_differently(old_route: dict[str, Any], route: dict[str, Any]) -> bool:
    """Whether the input is read another way (another format, column…): its items may differ
    even when its bytes do not. Where the requests go changes no item."""
    return any(old_route.get(key) != route.get(key) for key in route if key not in SENDING_ROUTE)


def _saved(report: IngestReport) -> dict[str, Any]:
    """What a resumed run reads back as its report: the counts, not the last run's changes."""
    return {"total": report.total, "valid": report.valid, "invalid": report.invalid}


def _check_unchanged(item: InputItem, id: str, digest: bytes | None) -> None:
    """InvalidInputError unless a pending line read again is the line that was ingested."""
    if item.request is None:
        change = f"cannot be sent any more ({item.error})"
    elif item.id != id:
        change = f"had the id {_shown_id(id)} and now has {_shown_id(item.id)}"
    elif digest is not None and (now := item.content_digest) is not None and now != digest:
        change = f"(id {_shown_id(id)}) is not what it was when the job read it first"
    else:
        return
    raise InvalidInputError(
        f"line {item.line} of the input is pending in the job store but {change}; "
        "the input changed while the job ran"
    )


def _shown_id(id: str) -> str:
    return repr(id) if len(id) <= 40 else repr(id[:37] + "...")


def _output_name(store_path: str) -> str:
    return store_path.removesuffix(_STORE_SUFFIX)
