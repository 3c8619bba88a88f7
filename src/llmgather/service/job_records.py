"""The service's jobs on disk: each job's folder, its record (job.json), its input checked.

    <jobs_dir>/<job id>/input.jsonl      the input, as received
                        job.json         id, created_at, parameters; its end once it has one
                        results.jsonl    one line per input (+ its SQLite store beside it), the
                                         same files `llmgather run` writes: `llmgather status` reads them
    <jobs_dir>/generate/<gen id>/…       a background `/generate`: a job of one line, removed
                                         once finished past its retention (`retention`)

A job is acknowledged only once its folder is complete (written under a hidden name, synced,
then renamed: `commit_new`), so a crash never leaves half a job to resume. Every function here
blocks: the manager (`service.job_manager`) calls them on a thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from llmgather._errors import ONE_ID_EACH, InvalidInputError, numbered_line_note
from llmgather._types import Result
from llmgather.jobs.inputs import InputItem, read_inputs
from llmgather.jobs.store import JobStats, SQLiteJobStore, store_path_for

if TYPE_CHECKING:
    from llmgather.jobs.job import Job

__all__ = [
    "FINAL",
    "GENERATE_DIR",
    "INPUT",
    "InvalidJobInput",
    "JobParams",
    "JobRecord",
    "check_input",
    "commit_new",
    "first_line",
    "load_all",
    "open_store",
    "save",
    "store_stats",
]

logger = logging.getLogger("llmgather.service")

INPUT, RESULTS, RECORD = "input.jsonl", "results.jsonl", "job.json"
GENERATE_DIR = "generate"
FINAL = frozenset({"done", "cancelled", "failed"})


class InvalidJobInput(Exception):
    """The body cannot become a job (empty, no line a prompt, ids used twice): a 400."""


@dataclass(frozen=True, kw_only=True, slots=True)
class JobParams:
    """What every line of a job gets unless it sets its own."""

    max_tokens: int | None = None
    temperature: float | None = None
    system: str | None = None


@dataclass(eq=False, kw_only=True)
class JobRecord:
    """One job as the service knows it: where it lives, its counts and its status."""

    id: str
    kind: str  # "job" or "generate"
    directory: Path
    created_at: float
    params: JobParams
    total: int = 0
    done: int = 0
    failed: int = 0  # failed requests and invalid input lines
    status: str = "queued"
    finished_at: float | None = None
    error: str | None = None  # why the job itself failed
    running: Job | None = None
    cancelling: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # set when a run ends

    def public(self) -> dict[str, Any]:
        """The job as `GET /v1/jobs` and the dashboard show it."""
        return {
            "id": self.id,
            "status": self.status,
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "error": self.error,  # why the job itself failed, secrets hidden; else null
        }

    def saved(self) -> dict[str, Any]:
        """What job.json holds: an unfinished job keeps no status, so it is resumed."""
        return {
            **self.public(),
            "kind": self.kind,
            "status": self.status if self.status in FINAL else None,
            "params": asdict(self.params),
        }

    @classmethod
    def loaded(cls, directory: Path, data: dict[str, Any]) -> JobRecord:
        return cls(
            id=data["id"],
            kind=data.get("kind", "job"),
            directory=directory,
            created_at=float(data["created_at"]),
            params=JobParams(**data.get("params") or {}),
            total=int(data.get("total") or 0),
            done=int(data.get("done") or 0),
            failed=int(data.get("failed") or 0),
            status=data.get("status") or "queued",
            finished_at=data.get("finished_at"),
            error=data.get("error"),
        )

    def count_from(self, stats: JobStats) -> None:
        self.total, self.done, self.failed = stats.total, stats.done, stats.failed + stats.invalid

    def count(self, result: Result) -> None:
        if result.ok:
            self.done += 1
        else:
            self.failed += 1

    @property
    def input_path(self) -> Path:
        return self.directory / INPUT

    @property
    def results_path(self) -> Path:
        return self.directory / RESULTS


# -- on disk (each blocks: called on a thread) -------------------------------------------------


def check_input(path: Path, system: str | None) -> int:
    """The number of input lines; InvalidJobInput when none of them can be sent, or when two
    use one id (the job would refuse to start)."""
    if path.stat().st_size == 0:
        raise InvalidJobInput(
            'the body is empty; send JSONL: one JSON object per line, such as {"prompt": "..."}, '
            '{"messages": [...]} or an OpenAI Batch API line'
        )
    total = 0
    first_error: str | None = None
    sendable = False
    seen: dict[str, int] = {}
    items = read_inputs(str(path), fmt="jsonl", system=system, display_name="body")
    for item in _whole_body_checked(items):
        total += 1
        if item.request is None:
            first_error = first_error or item.error
            continue
        sendable = True
        if item.id in seen:
            lines = [seen[item.id], item.line]
            raise InvalidJobInput(
                f"body lines {lines[0]} and {lines[1]} both have the id {item.id!r}"
                f"{numbered_line_note(item.id, lines)}; {ONE_ID_EACH}"
            )
        seen[item.id] = item.line
    if not sendable:
        raise InvalidJobInput(
            "no line of the body is a request; send JSONL: one JSON object per line, such as "
            f'{{"prompt": "..."}} or an OpenAI Batch API line (first problem: {first_error})'
        )
    return total


def _whole_body_checked(items: Iterator[InputItem]) -> Iterator[InputItem]:
    """`items`, with what is wrong with the whole body (UTF-16, say) as InvalidJobInput."""
    try:
        yield from items
    except InvalidInputError as error:
        raise InvalidJobInput(str(error)) from None


def commit_new(staging: Path, record: JobRecord) -> None:
    """Make the job durable, then visible: its files synced, its folder renamed into place."""
    _write_synced(staging / RECORD, orjson.dumps(record.saved()))
    with open(staging / INPUT, "rb") as f:
        os.fsync(f.fileno())
    os.rename(staging, record.directory)
    _sync_dir(record.directory.parent)


def save(record: JobRecord) -> None:
    tmp = record.directory / f".{RECORD}.tmp"
    _write_synced(tmp, orjson.dumps(record.saved()))
    os.replace(tmp, record.directory / RECORD)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_all(root: Path) -> list[JobRecord]:
    """Every acknowledged job under `root`, oldest first; unfinished ones with the counts of
    their store. Folders never acknowledged (a crash while one was received) are removed.
    The jobs folder itself is made by the first job, not by a start."""
    records = []
    for parent in (root, root / GENERATE_DIR):
        if not parent.is_dir():
            continue
        for entry in parent.iterdir():
            if entry.name.startswith(".new-"):
                shutil.rmtree(entry, ignore_errors=True)
                continue
            try:
                data = orjson.loads((entry / RECORD).read_bytes())
                record = JobRecord.loaded(entry, data)
            except FileNotFoundError:
                continue  # not a job's folder (the generations' folder, say)
            except (OSError, ValueError, KeyError, TypeError) as error:
                logger.warning("ignoring %s: not a readable job (%s)", entry, error)
                continue
            if record.status not in FINAL:
                record.status = "queued"
                stats = store_stats(record.results_path)
                if stats is not None:
                    record.count_from(stats)
            records.append(record)
    records.sort(key=lambda r: r.created_at)
    return records


def open_store(results_path: Path) -> SQLiteJobStore | None:
    try:
        return SQLiteJobStore.open(store_path_for(str(results_path)), create=False)
    except FileNotFoundError:
        return None


def store_stats(results_path: Path) -> JobStats | None:
    store = open_store(results_path)
    if store is None:
        return None
    with store:
        return store.stats()


def first_line(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            line = f.readline()
    except FileNotFoundError:
        return None
    return orjson.loads(line) if line.strip() else None
