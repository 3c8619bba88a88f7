"""The service's durable jobs: every job (`POST /v1/jobs`) and every background `/generate` is
an `llmgather run` job on disk (`service.job_records`), sent through the service's one upstream
(`service.job_sender`), and resumed when the service starts again.

    created ─▶ queued ─▶ running ─▶ done | failed
                 │          └─ DELETE: no more sends, in-flight ones finish ─▶ cancelled
                 │          └─ shutdown: the same, but left unfinished on disk ─▶ queued at the next start
                 └─ DELETE ─▶ cancelled

A job is acknowledged only once its folder is complete on disk. A few jobs run at a time; the
rest wait their turn. They all share the gateway's engine and limiter: one budget for every route.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from llmgather.jobs.encoding import render_stored
from llmgather.jobs.job import Job
from llmgather.jobs.options import InputOptions, JobFlags, JobOptions, SendOptions
from llmgather.service.job_records import (
    FINAL,
    GENERATE_DIR,
    INPUT,
    JobParams,
    JobRecord,
    check_input,
    commit_new,
    first_line,
    load_all,
    open_store,
    save,
)
from llmgather.service.job_sender import SharedSender
from llmgather.service.retention import GenerationRetention
from llmgather.service.settings import DEFAULT_RETENTION_MAX, DEFAULT_RETENTION_S
from llmgather.service.upstream import Upstream

__all__ = ["JobManager", "NotCancellable", "ServiceStopping"]

logger = logging.getLogger("llmgather.service")

MAX_RUNNING_JOBS = 2  # more would only split the same shared limits further
MAX_RUNNING_GENERATIONS = 32  # one request each: the limiter, not this, paces them
GRACE_S = 30.0  # how long requests in flight may take to finish after a stop
_RESULT_PAGE_ROWS = 1_000


class NotCancellable(Exception):
    """The job has already ended: a 409."""


class ServiceStopping(Exception):
    """The service is shutting down and takes no new work: a 503."""


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
        records = await asyncio.to_thread(load_all, self.root)
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
            total = await asyncio.to_thread(check_input, staging / INPUT, params.system)
            record = JobRecord(
                id=id,
                kind=kind,
                directory=parent / id,
                created_at=time.time(),
                params=params,
                total=total,
            )
            await asyncio.to_thread(commit_new, staging, record)
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
        return await asyncio.to_thread(first_line, record.results_path)

    async def results(self, record: JobRecord) -> AsyncIterator[bytes]:
        """The job's output lines finished so far, in input order, read from its store."""
        store = await asyncio.to_thread(open_store, record.results_path)
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
            await asyncio.to_thread(save, record)
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
                    await asyncio.to_thread(save, record)
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
            elif summary.quota_spent and not record.cancelling:
                # Nothing would run it again, and a restart would meet the same answer.
                record.status = "failed"
                record.error = self._upstream.redactor.text(
                    f"the provider's quota is spent ({summary.quota_spent}): "
                    f"{summary.pending} items were not done"
                )
            else:  # stopped: by DELETE, or by the shutdown (then resumed at the next start)
                record.status = "cancelled" if record.cancelling else "queued"
        if record.status in FINAL:
            record.finished_at = time.time()
            await asyncio.to_thread(save, record)

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


def _take(rows: Iterator[tuple[bytes | None, bytes]], n: int) -> list[tuple[bytes | None, bytes]]:
    return list(itertools.islice(rows, n))
