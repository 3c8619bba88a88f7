"""The durable job store: one SQLite file (WAL) beside the output that remembers every result.

A run ingests every input line once (id, line, status), then records results as they arrive,
one transaction per batch, so a crash loses only what was in flight. The output JSONL is never
appended to as the source of truth: `export_jsonl` rewrites it atomically from the store, in input
order, so a rerun can never tear or duplicate a line. Nothing here holds all items or all ids in
memory; every scan is a bounded page or a streamed cursor.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ._errors import ConfigurationError, InvalidInputError
from ._inputs import InputItem
from ._types import ErrorInfo, Result

__all__ = [
    "INVALID_INPUT",
    "DuplicateIdError",
    "IngestReport",
    "JobBusyError",
    "JobMismatchError",
    "JobStats",
    "JobStore",
    "fingerprint_file",
    "store_path_for",
]

INVALID_INPUT = "invalid_input"
STATES = ("new", "running", "interrupted", "complete")
_BATCH_ROWS = 5_000
_PAGE_ROWS = 2_000
_ERROR_PREFIX_CHARS = 80
_SCHEMA = """
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
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS items_status ON items (status);
"""


def store_path_for(output_path: str) -> str:
    """Where the job store of an output file lives: beside it, same name plus a suffix."""
    return f"{output_path}.llmgather.sqlite"


def fingerprint_file(path: str) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class JobMismatchError(ConfigurationError):
    """The output already belongs to a job with other inputs or parameters."""

    def __init__(self, output: str, changes: list[str]) -> None:
        self.changes = changes
        super().__init__(
            f"{output} belongs to an earlier job that differs from this one: {'; '.join(changes)}. "
            "Rerun with --restart to discard the old results, or use a different -o."
        )


class JobBusyError(ConfigurationError):
    """Another live process is running this job."""


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


@dataclass(frozen=True, slots=True)
class JobStats:
    total: int
    done: int
    failed: int
    pending: int
    invalid: int
    input_tokens: int
    output_tokens: int
    started_at: float | None  # epoch seconds of the first run's start
    elapsed_s: float  # time spent running, summed over runs
    throughput_per_min: float  # finished items per minute of running
    top_errors: list[tuple[str, str, int]] = field(default_factory=list)
    state: str = "new"

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total, "done": self.done, "failed": self.failed,
            "pending": self.pending, "invalid": self.invalid,
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "started_at": self.started_at, "elapsed_s": round(self.elapsed_s, 3),
            "throughput_per_min": round(self.throughput_per_min, 2),
            "top_errors": [{"type": t, "message": m, "count": c} for t, m, c in self.top_errors],
            "state": self.state,
        }  # fmt: skip


class JobStore:
    """One job's durable state. Thread-safe: every method takes the store's lock."""

    def __init__(self, path: str, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str, *, create: bool = True) -> JobStore:
        """Open (or, with `create`, create) the store at `path`; FileNotFoundError otherwise."""
        if not create and not os.path.exists(path):
            raise FileNotFoundError(path)
        conn = _connect(path)
        try:
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return cls(path, conn)

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<JobStore {self.path!r}>"

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- lifecycle ---------------------------------------------------------------------------

    def prepare(self, *, input_fingerprint: str, params: dict[str, Any], restart: bool) -> bool:
        """Bind the store to this input and these parameters and claim it for this process;
        True when resuming a job.

        One write transaction from the busy check to the claim, so two runs started at once
        cannot both pass. A job whose ingestion never finished holds no results and is replaced.
        """
        params = orjson.loads(orjson.dumps(params, default=str))  # compare what JSON can store
        now = time.time()
        with self._lock, self._transaction():
            meta = self._meta()
            _check_not_busy(meta)
            resuming = bool(meta.get("ingested")) and not restart
            if resuming:
                changes = _describe_changes(meta, input_fingerprint, params)
                if changes:
                    raise JobMismatchError(_output_name(self.path), changes)
            else:
                self._conn.execute("DELETE FROM items")
                self._conn.execute("DELETE FROM meta")
                self._set_meta(
                    fingerprint=input_fingerprint, params=params, state="new", created_at=now
                )
                meta = {}
            active = float(meta.get("active_s", 0.0)) + _unclosed_run_s(meta, now)
            self._set_meta(**_running(now), active_s=active)
        return resuming

    def ingest(self, items: Iterable[InputItem]) -> IngestReport:
        """Insert every input item once; on a resumed job return the saved report untouched."""
        with self._lock:
            meta = self._meta()
            if meta.get("ingested"):
                return IngestReport(**meta["ingest_report"])
            with self._transaction():
                self._conn.execute("DELETE FROM items")
            self._conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS duplicates (id TEXT NOT NULL, line INTEGER NOT NULL)"
            )
            self._conn.execute("DELETE FROM duplicates")
            try:
                report = self._insert_all(items)
                duplicate = self._duplicate_error()
                if duplicate is not None:
                    raise duplicate
            except BaseException:
                with self._transaction():
                    self._conn.execute("DELETE FROM items")
                raise
            finally:
                self._conn.execute("DROP TABLE IF EXISTS temp.duplicates")
            with self._transaction():
                self._set_meta(ingested=True, ingest_report=_report_dict(report))
            return report

    def mark_state(self, state: str) -> None:
        """Record the job's state; "running" also notes this process, to spot a crashed run."""
        if state not in STATES:
            raise ValueError(f"unknown job state {state!r}; expected one of {', '.join(STATES)}")
        now = time.time()
        with self._lock:
            meta = self._meta()
            active = float(meta.get("active_s", 0.0)) + _unclosed_run_s(meta, now)
            changes: dict[str, Any] = {"state": state, "active_s": active, "run_started_at": None}
            if state == "running":
                changes.update(_running(now))
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

    def pending_lines(self) -> Iterator[int]:
        # Short keyset-paged queries, not one long cursor: results recorded meanwhile are for
        # lines already yielded, and no read snapshot is held open for the whole run.
        after = 0
        while True:
            with self._lock:
                page = [
                    line
                    for (line,) in self._conn.execute(
                        "SELECT line FROM items WHERE status = 'pending' AND line > ? ORDER BY line LIMIT ?",
                        (after, _PAGE_ROWS),
                    )
                ]
            yield from page
            if len(page) < _PAGE_ROWS:
                return
            after = page[-1]

    def pending_items(self, items: Iterable[InputItem]) -> Iterator[InputItem]:
        """The items still to send: `items` (a fresh read of the same input) joined to the store.

        Both sides are in ascending line order, so this is a streaming merge with no lookup set.
        """
        lines = self.pending_lines()
        wanted = next(lines, None)
        for item in items:
            if wanted is None:
                return
            if item.line == wanted:
                if item.request is None:
                    raise InvalidInputError(
                        f"line {wanted} of the input is pending in the job store but cannot be "
                        f"sent any more ({item.error}); the input changed while the job was resumed"
                    )
                yield item
                wanted = next(lines, None)
            elif item.line > wanted:
                raise InvalidInputError(
                    f"line {wanted} of the input is pending in the job store but was not read again; "
                    "the input changed while the job was resumed"
                )
        if wanted is not None:
            raise InvalidInputError(
                f"line {wanted} of the input is pending in the job store but the input ended first; "
                "the input changed while the job was resumed"
            )

    def record(self, results: Sequence[tuple[str, Result]]) -> int:
        """Store a batch of finished results in one transaction; returns how many ids matched.

        Recording an id again replaces its earlier result (the output never holds it twice).
        """
        now = time.time()
        rows = [_result_row(id, result, now) for id, result in results]
        with self._lock, self._transaction():
            before = self._conn.total_changes
            self._conn.executemany(
                "UPDATE items SET status = ?, result = ?, attempts = ?, input_tokens = ?, output_tokens = ?,"
                " error_type = ?, error_key = ?, error_message = ?, finished_at = ? WHERE id = ?",
                rows,
            )
            matched = self._conn.total_changes - before
            self._set_meta(last_activity_at=now)
        return matched

    def export_jsonl(self, output_path: str) -> int:
        """Atomically rewrite `output_path` with every finished item, in input order.

        Reads from its own connection (a WAL snapshot), so recording can go on meanwhile.
        """
        directory = os.path.dirname(os.path.abspath(output_path))
        tmp = os.path.join(
            directory, f".{os.path.basename(output_path)}.{os.getpid()}.{threading.get_ident()}.tmp"
        )
        written = 0
        reader = _connect(self.path)
        try:
            # umask decides the mode, as for any file the user creates
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            with os.fdopen(fd, "wb", buffering=1 << 20) as out:
                rows = reader.execute(
                    "SELECT output_fields, result FROM items WHERE status != 'pending' ORDER BY line"
                )
                for output_fields, result in rows:
                    out.write(_merge(output_fields, result))
                    written += 1
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, output_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        finally:
            reader.close()
        return written

    # -- reporting ---------------------------------------------------------------------------

    def stats(self, *, top: int = 5) -> JobStats:
        now = time.time()
        with self._lock:
            meta = self._meta()
            counts = dict.fromkeys(
                ("total", "done", "failed", "pending", "invalid", "input_tokens", "output_tokens"),
                0,
            )
            row = self._conn.execute(
                "SELECT count(*), sum(status = 'ok'), sum(status = 'error' AND error_type IS NOT ?),"
                " sum(status = 'pending'), sum(status = 'error' AND error_type IS ?),"
                " sum(input_tokens), sum(output_tokens) FROM items",
                (INVALID_INPUT, INVALID_INPUT),
            ).fetchone()
            counts.update({k: v or 0 for k, v in zip(counts, row, strict=True)})
            top_errors = [
                (t, m, c)
                for t, m, c in self._conn.execute(
                    "SELECT error_type, error_key, count(*) AS n FROM items WHERE status = 'error'"
                    " GROUP BY error_type, error_key ORDER BY n DESC, min(line) LIMIT ?",
                    (top,),
                )
            ]
        state = meta.get("state", "new")
        running_here = state == "running" and _process_alive(meta)
        if state == "running" and not running_here:
            state = "interrupted"  # a run that died without saying so (kill -9, power loss)
        elapsed = float(meta.get("active_s", 0.0))
        run_started = meta.get("run_started_at")
        if run_started is not None:
            run_end = now if running_here else float(meta.get("last_activity_at") or now)
            elapsed += run_end - float(run_started)
        finished = counts["done"] + counts["failed"]
        return JobStats(
            **counts,
            started_at=meta.get("started_at"),
            elapsed_s=max(elapsed, 0.0),
            throughput_per_min=finished / elapsed * 60 if elapsed > 0 else 0.0,
            top_errors=top_errors,
            state=state,
        )

    # -- internals ---------------------------------------------------------------------------

    def _insert_all(self, items: Iterable[InputItem]) -> IngestReport:
        total = invalid = 0
        batch: list[tuple[Any, ...]] = []
        for item in items:
            total += 1
            invalid += item.request is None
            batch.append(_item_row(item))
            if len(batch) >= _BATCH_ROWS:
                self._insert_batch(batch)
                batch = []
        if batch:
            self._insert_batch(batch)
        return IngestReport(total=total, valid=total - invalid, invalid=invalid)

    def _insert_batch(self, batch: list[tuple[Any, ...]]) -> None:
        with self._transaction():
            before = self._conn.total_changes
            self._conn.executemany(
                "INSERT INTO items (line, id, status, output_fields, result, error_type, error_key,"
                " error_message, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                batch,
            )
            if self._conn.total_changes - before == len(batch):
                return
            # Some ids were taken already: note which lines lost, to report them all at the end.
            first, last = batch[0][0], batch[-1][0]
            stored = {line for (line,) in self._conn.execute(
                "SELECT line FROM items WHERE line BETWEEN ? AND ?", (first, last))}  # fmt: skip
            self._conn.executemany(
                "INSERT INTO temp.duplicates (id, line) VALUES (?, ?)",
                [(row[1], row[0]) for row in batch if row[0] not in stored],
            )

    def _duplicate_error(self) -> DuplicateIdError | None:
        ids, lines = self._conn.execute(
            "SELECT count(DISTINCT id), count(*) FROM temp.duplicates"
        ).fetchone()
        if not lines:
            return None
        examples: list[tuple[str, list[int]]] = []
        for (id,) in self._conn.execute(
            "SELECT id FROM temp.duplicates GROUP BY id ORDER BY min(line) LIMIT 10"
        ).fetchall():
            found = self._conn.execute(
                "SELECT line FROM items WHERE id = ? UNION ALL"
                " SELECT * FROM (SELECT line FROM temp.duplicates WHERE id = ? ORDER BY line LIMIT 9)",
                (id, id),
            ).fetchall()
            examples.append((id, [line for (line,) in found]))
        return DuplicateIdError(examples, ids=ids, lines=lines + ids)

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

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE), never implicit.
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


def _item_row(item: InputItem) -> tuple[Any, ...]:
    fields = orjson.dumps(item.output_fields) if item.output_fields else None
    if item.request is not None:
        return (item.line, item.id, "pending", fields, None, None, None, None, None)
    message = item.error or "invalid input line"
    result = Result(
        id=item.id, status="error", error=ErrorInfo(type=INVALID_INPUT, message=message)
    )
    key = _LOCATION.sub("", message, count=1)[:_ERROR_PREFIX_CHARS]
    # A bad line without an id of its own is never sent: its line number, the id its output
    # line shows, must not collide with another line's real id and refuse the whole file.
    id = None if item.id == str(item.line) else item.id
    return (
        item.line,
        id,
        "error",
        fields,
        orjson.dumps(result.to_dict()),
        INVALID_INPUT,
        key,
        message,
        time.time(),
    )


_LOCATION = re.compile(r"^.+?:\d+: ")


def _result_row(id: str, result: Result, now: float) -> tuple[Any, ...]:
    data = result.to_dict()
    data["id"] = id
    usage = result.usage
    error = result.error
    status = "ok" if result.status == "ok" else "error"
    if status == "error" and error is None:
        error = ErrorInfo(type="Error", message="failed without an error description")
    return (
        status,
        orjson.dumps(data),
        result.attempts,
        usage.input_tokens if usage else 0,
        usage.output_tokens if usage else 0,
        error.type if error else None,
        error.message[:_ERROR_PREFIX_CHARS] if error else None,
        error.message if error else None,
        now,
        id,
    )


def _merge(output_fields: bytes | None, result: bytes) -> bytes:
    if output_fields is None:
        return result + b"\n"
    merged = orjson.loads(output_fields)
    merged.update(orjson.loads(result))
    return orjson.dumps(merged) + b"\n"


def _report_dict(report: IngestReport) -> dict[str, int]:
    return {"total": report.total, "valid": report.valid, "invalid": report.invalid}


def _output_name(store_path: str) -> str:
    suffix = store_path_for("")
    return store_path[: -len(suffix)] if store_path.endswith(suffix) else store_path


# -- job identity and liveness ----------------------------------------------------------------

_SECRET_NAME = re.compile(r"key|secret|passw|credential|auth|bearer|token(?!s)", re.IGNORECASE)
_SECRET_VALUE = re.compile(r"^(sk-|sk_|AIza|xai-|Bearer\s)|://[^/@\s]+@", re.IGNORECASE)


def _describe_changes(meta: dict[str, Any], fingerprint: str, params: dict[str, Any]) -> list[str]:
    changes = []
    old_fp = meta.get("fingerprint")
    if old_fp != fingerprint:
        changes.append(f"input file changed (sha256 {str(old_fp)[:12]}… now {fingerprint[:12]}…)")
    old_params = meta.get("params") or {}
    for key in sorted(set(old_params) | set(params)):
        before, after = old_params.get(key), params.get(key)
        if before != after:
            changes.append(
                f"parameter {key!r} was {_show_param(key, before)} now {_show_param(key, after)}"
            )
    return changes


def _show_param(key: str, value: Any) -> str:
    if value is None:
        return "unset"
    if _SECRET_NAME.search(key) or (isinstance(value, str) and _SECRET_VALUE.search(value)):
        return "(hidden)"
    text = orjson.dumps(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."


def _process_alive(meta: dict[str, Any]) -> bool:
    """Whether the process that marked the job running may still exist.

    Only a process on this host can be checked; one on another host is assumed alive.
    """
    pid, host = meta.get("pid"), meta.get("host")
    if pid is None:
        return False
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running(now: float) -> dict[str, Any]:
    """The meta fields that say this process runs the job, from `now`."""
    return {
        "state": "running",
        "run_started_at": now,
        "last_activity_at": now,
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }


def _check_not_busy(meta: dict[str, Any]) -> None:
    if meta.get("state") == "running" and meta.get("pid") != os.getpid() and _process_alive(meta):
        raise JobBusyError(
            f"another llmgather process (pid {meta.get('pid')} on {meta.get('host')}) is running this job; "
            "wait for it to finish or stop it, or use a different -o"
        )


def _unclosed_run_s(meta: dict[str, Any], now: float) -> float:
    """Running time of the current or last unclosed run, up to its last sign of life."""
    started = meta.get("run_started_at")
    if started is None:
        return 0.0
    end = now if meta.get("pid") == os.getpid() else float(meta.get("last_activity_at") or started)
    return max(end - float(started), 0.0)
