"""The service's durable jobs: every job (`POST /v1/jobs`) and every background `/generate` is
an `llmgather run` job on disk, sent through the service's one upstream, and resumed when the
service starts again.

    <jobs_dir>/<job id>/input.jsonl      the input, as received
                        job.json         id, created_at, parameters; its end once it has one
                        results.jsonl    one line per input (+ its SQLite store beside it), the
                                         same files `llmgather run` writes: `llmgather status` reads them
    <jobs_dir>/generate/<gen id>/…       a background `/generate`: a job of one line, removed
                                         once finished past its retention (`retention`)

    created ─▶ queued ─▶ running ─▶ done | failed
                 │          └─ DELETE: no more sends, in-flight ones finish ─▶ cancelled
                 │          └─ shutdown: the same, but left unfinished on disk ─▶ queued at the next start
                 └─ DELETE ─▶ cancelled

A job is acknowledged only once its folder is complete (written under a hidden name, then
renamed), so a crash never leaves half a job to resume. A few jobs run at a time; the rest wait
their turn. They all share the gateway's engine and limiter: one budget for every route.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from llmgather._engine import EngineStats
from llmgather._link import Link
from llmgather._types import Request, Result
from llmgather.jobs.encoding import render_stored
from llmgather.jobs.inputs import read_inputs
from llmgather.jobs.job import Job
from llmgather.jobs.options import InputOptions, JobFlags, JobOptions, SendOptions
from llmgather.jobs.senders import filled
from llmgather.jobs.store import JobStats, SQLiteJobStore, store_path_for
from llmgather.providers.registry import Target
from llmgather.service.errors import for_clients
from llmgather.service.retention import GenerationRetention
from llmgather.service.settings import DEFAULT_RETENTION_MAX, DEFAULT_RETENTION_S
from llmgather.service.upstream import Upstream

__all__ = ["InvalidJobInput", "JobManager", "JobParams", "JobRecord", "NotCancellable"]

logger = logging.getLogger("llmgather.service")

INPUT, RESULTS, RECORD = "input.jsonl", "results.jsonl", "job.json"
GENERATE_DIR = "generate"
MAX_RUNNING_JOBS = 2  # more would only split the same shared limits further
MAX_RUNNING_GENERATIONS = 32  # one request each: the limiter, not this, paces them
GRACE_S = 30.0  # how long requests in flight may take to finish after a stop
FINAL = frozenset({"done", "cancelled", "failed"})
_RESULT_PAGE_ROWS = 1_000


class InvalidJobInput(Exception):
    """The body cannot become a job (empty, no line a prompt, ids used twice): a 400."""


class NotCancellable(Exception):
    """The job has already ended: a 409."""


class ServiceStopping(Exception):
    """The service is shutting down and takes no new work: a 503."""


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
        }

    def saved(self) -> dict[str, Any]:
        """What job.json holds: an unfinished job keeps no status, so it is resumed."""
        return {
            **self.public(),
            "kind": self.kind,
            "status": self.status if self.status in FINAL else None,
            "params": asdict(self.params),
            "error": self.error,
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


class SharedSender:
    """A job's requests through the service's one link (its engine, its shared limiter),
    which belongs to the upstream: never opened or closed here. Fills the job's defaults into
    each request and counts each result into the record as it arrives."""

    def __init__(self, link: Link, target: Target, record: JobRecord) -> None:
        self.link = link
        # The target as the service resolved it, whatever URL the link reaches: the embedded
        # simulator's port changes at every start, and a job's identity must not.
        self.target = target
        self.simulated = target.simulated
        self.batch_body_fields = target.spec.accepts_batch_body_fields
        self._record = record
        params = record.params
        fills = {
            "max_tokens": link.max_tokens(params.max_tokens),
            "temperature": params.temperature,
        }
        self._fills = {k: v for k, v in fills.items() if v is not None}

    def describe(self) -> str:
        return self.target.describe()

    def statistics(self) -> EngineStats:
        return self.link.engine.statistics()

    async def prepared(self, identity: str, *, retry_failed: bool) -> None:
        pass

    async def map(
        self, requests: AsyncIterable[Request], *, stop: asyncio.Event
    ) -> AsyncIterator[Result]:
        async for result in self.link.engine.map(filled(requests, self._fills), stop=stop):
            self._record.count(result)
            yield for_clients(result, self.link.redactor)

    async def __aenter__(self) -> SharedSender:
        # Entered once the input is in the store: count on from what earlier runs finished.
        stats = await asyncio.to_thread(_store_stats, self._record.results_path)
        if stats is not None:
            self._record.count_from(stats)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pass


class JobManager:
    """Every job of the service: created, run a few at a time as tasks it owns, cancelled,
    stopped at shutdown (what is in flight finishes; the rest stays on disk for the next
    start), and resumed at startup."""

    def __init__(
        self,
        upstream: Upstream,
        jobs_dir: Path,
        *,
        max_running: int = MAX_RUNNING_JOBS,
        grace_s: float = GRACE_S,
        retention_s: float = DEFAULT_RETENTION_S,
        retention_max: int = DEFAULT_RETENTION_MAX,
    ) -> None:
        self._upstream = upstream
        self.root = Path(jobs_dir)
        self._grace_s = grace_s
        self._jobs: dict[str, JobRecord] = {}
        self._generations: dict[str, JobRecord] = {}
        # Finished background /generates leave it: `run` is a task of the app's.
        self.retention = GenerationRetention(
            self._generations, keep_s=retention_s, keep_most=retention_max
        )
        self._slots = {
            "job": asyncio.Semaphore(max_running),
            "generate": asyncio.Semaphore(MAX_RUNNING_GENERATIONS),
        }
        self._queue: asyncio.Queue[JobRecord | None] = asyncio.Queue()
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every job under the jobs folder and queue the unfinished ones again."""
        records = await asyncio.to_thread(_load_all, self.root)
        for record in records:
            self._registry(record.kind)[record.id] = record
            if record.status == "queued":
                self._queue.put_nowait(record)
        finished = [r for r in records if r.kind == "generate" and r.status in FINAL]
        for record in sorted(finished, key=lambda r: r.finished_at or r.created_at):
            self.retention.kept(record)
        await self.retention.prune()
        if self._queue.qsize():
            logger.info("resuming %d unfinished job(s) from %s", self._queue.qsize(), self.root)
        self._supervisor = asyncio.create_task(self._supervise(), name="llmgather-jobs")

    def stop_sending(self) -> None:
        """Start no job and send no new request any more (the service is stopping); what is
        in flight finishes. Called as soon as a shutdown begins, before uvicorn drains."""
        self._closing = True
        for record in (*self._jobs.values(), *self._generations.values()):
            if record.running is not None:
                record.running.stop.set()

    async def aclose(self) -> None:
        """Stop sending: requests in flight finish (within the grace period), queued jobs stay
        queued on disk, and every job task has ended when this returns."""
        self.stop_sending()
        self._queue.put_nowait(None)
        if self._supervisor is not None:
            await self._supervisor

    # -- creating -----------------------------------------------------------------------------

    async def create_job(
        self, write_input: Callable[[Path], Awaitable[None]], params: JobParams
    ) -> JobRecord:
        """A new job whose input `write_input(path)` writes; InvalidJobInput when it cannot
        become one (nothing of it is kept then)."""
        return await self._create("job", write_input, params)

    async def submit_generation(self, prompt: str, params: JobParams) -> JobRecord:
        """A background `/generate`: a job of one line, durable before it is acknowledged."""

        async def write(path: Path) -> None:
            await asyncio.to_thread(path.write_bytes, orjson.dumps({"prompt": prompt}) + b"\n")

        return await self._create("generate", write, params)

    async def _create(
        self, kind: str, write_input: Callable[[Path], Awaitable[None]], params: JobParams
    ) -> JobRecord:
        if self._closing:
            raise ServiceStopping("the service is stopping; send this again once it is back")
        id = f"{'job' if kind == 'job' else 'gen'}_{secrets.token_hex(12)}"
        parent = self.root / GENERATE_DIR if kind == "generate" else self.root
        staging = parent / f".new-{id}"
        await asyncio.to_thread(staging.mkdir, parents=True)
        try:
            await write_input(staging / INPUT)
            total = await asyncio.to_thread(_check_input, staging / INPUT, params.system)
            record = JobRecord(
                id=id,
                kind=kind,
                directory=parent / id,
                created_at=time.time(),
                params=params,
                total=total,
            )
            await asyncio.to_thread(_commit, staging, record)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)  # never acknowledged: nothing to keep
            raise
        self._registry(kind)[id] = record
        self._queue.put_nowait(record)
        return record

    # -- reading ------------------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        """Every job (not the background `/generate`s), newest first."""
        records = sorted(self._jobs.values(), key=lambda r: r.created_at, reverse=True)
        return [record.public() for record in records]

    def get(self, id: str) -> JobRecord | None:
        return self._jobs.get(id)

    def generation(self, id: str) -> JobRecord | None:
        return self._generations.get(id)

    async def generation_result(self, record: JobRecord) -> dict[str, Any] | None:
        """The output line of a finished background `/generate`."""
        return await asyncio.to_thread(_first_line, record.results_path)

    async def results(self, record: JobRecord) -> AsyncIterator[bytes]:
        """The job's output lines finished so far, in input order, read from its store."""
        store = await asyncio.to_thread(_open_store, record.results_path)
        if store is None:  # not started yet: nothing is finished
            return
        rows = store.finished_rows()
        reading: asyncio.Future[list[tuple[bytes | None, bytes]]] | None = None
        try:
            while True:
                reading = asyncio.ensure_future(asyncio.to_thread(_take, rows, _RESULT_PAGE_ROWS))
                page = await asyncio.shield(reading)
                if not page:
                    return
                yield b"".join(render_stored(result, fields) for fields, result in page)
        finally:
            # A reader that went away may leave a page being read: the thread holds the cursor
            # until it is done, and only then may it be closed: by the page's own callback, as
            # a wait here could itself be cancelled (a server cancels a gone client's body).
            def close(page: asyncio.Future[Any] | None = None) -> None:
                if page is not None and not page.cancelled():
                    page.exception()  # retrieved: a failed read of a gone reader is no news
                rows.close()
                store.close()

            if reading is not None and not reading.done():
                reading.add_done_callback(close)
            else:
                close()

    # -- cancelling ---------------------------------------------------------------------------

    async def cancel(self, record: JobRecord) -> None:
        """Stop the job: nothing more is sent, what is in flight finishes, what finished is
        kept. Returns once it has stopped. NotCancellable if it had ended already."""
        if record.status == "cancelled":
            return
        if record.status in FINAL:
            raise NotCancellable(f"job {record.id} has already ended ({record.status})")
        record.cancelling = True
        job = record.running
        if job is None:  # still waiting for its turn: it never starts
            record.status, record.finished_at = "cancelled", time.time()
            await asyncio.to_thread(_save, record)
            return
        ended = record.ended
        job.stop.set()
        await ended.wait()

    # -- running ------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        async with asyncio.TaskGroup() as group:
            while (record := await self._queue.get()) is not None:
                group.create_task(self._run(record), name=f"llmgather-job-{record.id}")

    async def _run(self, record: JobRecord) -> None:
        async with self._slots[record.kind]:
            if self._closing or record.status != "queued":  # cancelled, or the service stops
                return
            record.ended = asyncio.Event()
            try:
                job = Job(
                    self._options(record),
                    sender=SharedSender(self._upstream.link, self._upstream.target, record),
                    on_warning=lambda message: logger.info("job %s: %s", record.id, message),
                )
                record.running, record.status = job, "running"
                await self._finish(record, job)
            except Exception as error:  # outside the job's own run (its files): still its own
                record.status, record.error = "failed", self._upstream.redactor.error(error)
                logger.warning("job %s failed: %s", record.id, record.error)
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(_save, record)
            finally:
                record.running = None
                record.ended.set()
            if record.kind == "generate" and record.status in FINAL:
                await self.retention.finished(record)

    async def _finish(self, record: JobRecord, job: Job) -> None:
        try:
            summary = await job.run()
        except Exception as error:  # this job's failure, never the others'
            record.status, record.error = "failed", self._upstream.redactor.error(error)
            logger.warning("job %s failed: %s", record.id, record.error)
        else:
            record.total, record.done = summary.total, summary.ok
            record.failed = summary.failed + summary.invalid
            if summary.pending == 0:
                record.status = "done"
            else:  # stopped: by DELETE, or by the shutdown (then resumed at the next start)
                record.status = "cancelled" if record.cancelling else "queued"
        if record.status in FINAL:
            record.finished_at = time.time()
            await asyncio.to_thread(_save, record)

    def _options(self, record: JobRecord) -> JobOptions:
        params = record.params
        return JobOptions(
            input=InputOptions(path=str(record.input_path), fmt="jsonl", system=params.system),
            output_path=str(record.results_path),
            # Sent through the service's link: only the request defaults apply (the job's identity).
            send=SendOptions(max_tokens=params.max_tokens, temperature=params.temperature),
            flags=JobFlags(grace_s=self._grace_s),
        )

    def _registry(self, kind: str) -> dict[str, JobRecord]:
        return self._generations if kind == "generate" else self._jobs


# -- on disk (each called on a thread) ---------------------------------------------------------


def _check_input(path: Path, system: str | None) -> int:
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
    for item in read_inputs(str(path), fmt="jsonl", system=system, display_name="body"):
        total += 1
        if item.request is None:
            first_error = first_error or item.error
            continue
        sendable = True
        if item.id in seen:
            raise InvalidJobInput(
                f"body lines {seen[item.id]} and {item.line} both have the id {item.id!r}; "
                "give every line its own id (or none, to be known by its line number)"
            )
        seen[item.id] = item.line
    if not sendable:
        raise InvalidJobInput(
            "no line of the body is a request; send JSONL: one JSON object per line, such as "
            f'{{"prompt": "..."}} or an OpenAI Batch API line (first problem: {first_error})'
        )
    return total


def _commit(staging: Path, record: JobRecord) -> None:
    """Make the job durable, then visible: its files synced, its folder renamed into place."""
    _write_synced(staging / RECORD, orjson.dumps(record.saved()))
    with open(staging / INPUT, "rb") as f:
        os.fsync(f.fileno())
    os.rename(staging, record.directory)
    _sync_dir(record.directory.parent)


def _save(record: JobRecord) -> None:
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


def _load_all(root: Path) -> list[JobRecord]:
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
                stats = _store_stats(record.results_path)
                if stats is not None:
                    record.count_from(stats)
            records.append(record)
    records.sort(key=lambda r: r.created_at)
    return records


def _open_store(results_path: Path) -> SQLiteJobStore | None:
    try:
        return SQLiteJobStore.open(store_path_for(str(results_path)), create=False)
    except FileNotFoundError:
        return None


def _store_stats(results_path: Path) -> JobStats | None:
    store = _open_store(results_path)
    if store is None:
        return None
    with store:
        return store.stats()


def _take(rows: Iterator[tuple[bytes | None, bytes]], n: int) -> list[tuple[bytes | None, bytes]]:
    return list(itertools.islice(rows, n))


def _first_line(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            line = f.readline()
    except FileNotFoundError:
        return None
    return orjson.loads(line) if line.strip() else None
