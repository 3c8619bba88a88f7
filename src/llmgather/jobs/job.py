"""A durable `run`: input file in, one committed result per input out, resumable after any stop.

    read (pass 1) ─▶ store.ingest: every id and line, invalid lines recorded as errors
    read (pass 2) ─▶ only items still pending ─▶ Client.map ─▶ sink ─▶ store.record (a thread)
                                                                   └─▶ output JSONL (appended)
    end or stop  ─▶ store.export_jsonl: the output rewritten from the store, one line per id

The store is the truth; the output file is a projection of it, rebuilt at every start and end,
so a torn or duplicated line left by a killed run never survives the next run.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import orjson

from llmgather._client import Client
from llmgather._config import DEFAULT_CONCURRENCY, Timeouts
from llmgather._engine import EngineStats
from llmgather._errors import InvalidInputError
from llmgather._retry import RetryPolicy
from llmgather._types import Request, Result
from llmgather.jobs.inputs import InputItem, detect_format, read_inputs
from llmgather.jobs.store.rows import with_output_fields
from llmgather.jobs.store.sqlite import JobStore, fingerprint_file, store_path_for
from llmgather.providers.registry import Target, redact_url

MAX_PENDING_WRITES = 10_000  # finished results waiting for the disk before the pipeline waits
# At most one commit per this many seconds: a transaction costs far more than a row, and at
# thousands of answers a second one commit per answer would cost more CPU than sending them.
# What a kill can lose beyond the requests in flight is what arrives in this window.
MIN_COMMIT_INTERVAL_S = 0.002
# Input items read ahead per trip to the reading thread: enough that the trips cost nothing.
READ_PAGE_ITEMS = 256


@dataclass(frozen=True, kw_only=True)
class JobOptions:
    input_path: str
    output_path: str
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    concurrency: int = DEFAULT_CONCURRENCY
    rpm: float | None = None
    tpm: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: float = 120.0
    max_tokens: int | None = None
    temperature: float | None = None
    system: str | None = None
    stream: bool = False
    fmt: str | None = None
    column: str | None = None
    id_column: str | None = None
    max_line_bytes: int = 1_048_576
    strict: bool = False
    restart: bool = False
    retry_failed: bool = False
    grace_s: float = 30.0
    simulator: Any = None  # SimConfig for the embedded simulator, when one starts

    def params(self, target: Target) -> dict[str, Any]:
        """What decides each answer: a resumed job must not change these. Limits may change.

        The model as resolved, not as typed: `gpt-4o-mini` that meant the simulator must not
        resume against the real API once a key is set, and `sim:gpt-4o-mini` typed out is the
        same job as the default.
        """
        return {
            "provider": target.provider,
            "model": target.model,
            "simulated": target.simulated,
            "base_url": redact_url(target.base_url),
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "system": self.system,
            "stream": self.stream,
            "format": detect_format(self.input_path, self.fmt),
            "column": self.column,
            "id_column": self.id_column,
            "max_line_bytes": self.max_line_bytes,
        }


@dataclass(frozen=True, kw_only=True)
class JobSummary:
    output: str
    target: str
    simulated: bool
    resumed: bool
    interrupted: bool
    total: int
    ok: int
    failed: int
    invalid: int
    pending: int
    sent: int
    retries: int
    http_429: int
    input_tokens: int
    output_tokens: int
    elapsed_s: float
    top_errors: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class StrictInputError(InvalidInputError):
    """`--strict` refused a file with invalid lines; nothing was sent."""


ProgressHook = Callable[[Callable[[], EngineStats], int, bool], None]


class Job:
    """One `llmgather run`. `stop` (set by a signal handler) ends it gracefully."""

    def __init__(self, options: JobOptions, *, on_start: ProgressHook | None = None) -> None:
        self.options = options
        self._on_start = on_start
        self.stop = asyncio.Event()
        self.sending = False  # True once requests may have gone out: an error then loses nothing
        # The output fields (a Batch API `custom_id`, an integer id) of the items sent and not
        # yet written, by id, so the live output lines carry them as the final export does.
        self._output_fields: dict[str, dict[str, Any]] = {}

    async def run(self) -> JobSummary:
        options = self.options
        started = time.monotonic()
        # Resolve the provider before touching any file: a wrong model fails fast.
        client = Client(
            options.model,
            concurrency=options.concurrency,
            rpm=options.rpm,
            tpm=options.tpm,
            retry=options.retry,
            timeouts=Timeouts(read=options.timeout_s),
            defaults={"max_tokens": options.max_tokens, "temperature": options.temperature},
            api_key=options.api_key,
            base_url=options.base_url,
            stream=options.stream,
            simulator=options.simulator,
        )
        input_path, spooled = await asyncio.to_thread(_materialise, options)
        store = await asyncio.to_thread(JobStore.open, store_path_for(options.output_path))
        try:
            if options.strict:  # before the store is touched: a refusal keeps the last job
                await asyncio.to_thread(_refuse_invalid, self._read(input_path))
            resumed = await self._prepare(store, input_path, client.target)
            try:
                await asyncio.to_thread(store.ingest, self._read(input_path))
                if options.retry_failed:
                    await asyncio.to_thread(store.reset_failed)
                await asyncio.to_thread(store.export_jsonl, options.output_path)
                await asyncio.to_thread(store.mark_state, "running")
                stats = await asyncio.to_thread(store.stats)
                async with client:
                    engine = client.engine  # its statistics outlive the client's block
                    if self._on_start is not None:
                        self._on_start(engine.statistics, stats.pending, client.simulated)
                    self.sending = True
                    stopped = await self._send_pending(client, store, input_path)
                engine_stats = engine.statistics()
                final = await asyncio.to_thread(store.stats)
            except BaseException:
                # Release the claim `prepare` made, so the job does not look running.
                await asyncio.to_thread(store.mark_state, "interrupted")
                raise
            # A stop that came when everything left was already in flight, and finished within
            # the grace period, cut nothing short: the job is complete.
            interrupted = stopped and final.pending > 0
            await asyncio.to_thread(store.mark_state, "interrupted" if interrupted else "complete")
            await asyncio.to_thread(store.export_jsonl, options.output_path)
        finally:
            await asyncio.to_thread(store.close)
            if spooled:
                os.unlink(input_path)
        return JobSummary(
            output=options.output_path,
            target=client.target.describe(),
            simulated=client.simulated,
            resumed=resumed,
            interrupted=interrupted,
            total=final.total,
            ok=final.done,
            failed=final.failed,
            invalid=final.invalid,
            pending=final.pending,
            sent=engine_stats.submitted,
            retries=engine_stats.retries,
            http_429=engine_stats.http_429,
            input_tokens=final.input_tokens,
            output_tokens=final.output_tokens,
            elapsed_s=round(time.monotonic() - started, 3),
            top_errors=[
                {"type": kind, "message": message, "count": count}
                for kind, message, count in final.top_errors
            ],
        )

    async def _prepare(self, store: JobStore, input_path: str, target: Target) -> bool:
        fingerprint = await asyncio.to_thread(fingerprint_file, input_path)
        return await asyncio.to_thread(
            lambda: store.prepare(
                input_fingerprint=fingerprint,
                params=self.options.params(target),
                restart=self.options.restart,
            )
        )

    def _read(self, path: str) -> Iterator[InputItem]:
        options = self.options
        return read_inputs(
            path,
            fmt=options.fmt,
            column=options.column,
            id_column=options.id_column,
            system=options.system,
            max_line_bytes=options.max_line_bytes,
            display_name=options.input_path,
        )

    async def _send_pending(self, client: Client, store: JobStore, input_path: str) -> bool:
        """Send what is still pending; True if a stop signal cut the run short."""
        # Read on a thread (see `_requests`): `is_set` only reads a flag, safe from there.
        pending = store.pending_items(self._read(input_path), should_stop=self.stop.is_set)
        sink = _Sink(store, self.options.output_path, self._output_fields)
        consume = asyncio.create_task(self._consume(client, pending, sink))
        stopped = asyncio.create_task(self.stop.wait())
        try:
            await asyncio.wait({consume, stopped}, return_when=asyncio.FIRST_COMPLETED)
            interrupted = not consume.done()
            if interrupted:
                # No new work is fed once `stop` is set; requests in flight get the grace period.
                try:
                    await asyncio.wait_for(consume, self.options.grace_s)
                except TimeoutError:
                    pass
            else:
                consume.result()
        finally:
            stopped.cancel()
            if not consume.done():
                consume.cancel()
            await asyncio.gather(consume, stopped, return_exceptions=True)
            await sink.close()
        return interrupted

    async def _consume(self, client: Client, pending: Iterator[InputItem], sink: _Sink) -> None:
        requests = self._requests(pending, client.target.provider)
        async for result in client.map(requests, stop=self.stop):
            await sink.add(result)

    async def _requests(
        self, pending: Iterator[InputItem], provider: str
    ) -> AsyncIterator[Request]:
        # Reading and parsing the input and paging the store block: they run on a thread, a
        # page at a time, so a long stretch of lines finished in an earlier run (skipped
        # without a yield) never stalls the event loop, its signals or its progress bar.
        while not self.stop.is_set():
            page = await asyncio.to_thread(_take, pending, READ_PAGE_ITEMS)
            if not page:
                return
            for item in page:
                if self.stop.is_set():
                    return
                request = item.request
                assert request is not None  # pending_items yields only sendable items
                if item.output_fields:
                    self._output_fields[item.id] = item.output_fields
                if request.extra and provider != "openai":
                    # Only Batch API lines carry extra fields, and they are OpenAI's: Gemini
                    # and Anthropic refuse fields they do not know.
                    request = request.replace(extra=None)
                yield request.replace(id=item.id)


def _take(items: Iterator[InputItem], n: int) -> list[InputItem]:
    return list(itertools.islice(items, n))


class _Sink:
    """Commits results on its own writer thread, never on the event loop, as soon as they arrive.

    Group commit: while one transaction is being written, the results that arrive meanwhile
    gather into the next, so a kill loses only what was in flight. The event loop hands results
    over through a queue and is never woken per batch: a reply per commit (as `to_thread` would
    make) costs more than the commit itself at thousands of results a second.
    """

    def __init__(
        self, store: JobStore, output_path: str, output_fields: dict[str, dict[str, Any]]
    ) -> None:
        self._store = store
        self._output_path = output_path
        # Filled on the event loop, taken on the writer thread: single dict ops are atomic.
        self._output_fields = output_fields
        self._queue: queue.SimpleQueue[tuple[str, Result] | None] = queue.SimpleQueue()
        self._loop = asyncio.get_running_loop()
        self._drained: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._write_loop, name="llmgather-writer", daemon=True
        )
        self._thread.start()

    async def add(self, result: Result) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((result.id, result))
        if self._queue.qsize() >= MAX_PENDING_WRITES:
            # The disk is slower than the API: hold the pipeline rather than grow memory.
            drained = self._drained = asyncio.Event()
            if self._queue.qsize() >= MAX_PENDING_WRITES:  # the writer may have taken it already
                await drained.wait()

    async def close(self) -> None:
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)
        if self._error is not None:
            raise self._error

    def _write_loop(self) -> None:
        closing = False
        while not closing:
            batch = [self._queue.get()]
            time.sleep(MIN_COMMIT_INTERVAL_S)
            with suppress(queue.Empty):
                while len(batch) < MAX_PENDING_WRITES:
                    batch.append(self._queue.get_nowait())
            closing = batch[-1] is None
            results = [item for item in batch if item is not None]
            try:
                if results:
                    self._write(results)
            except BaseException as error:  # reported to the event loop by the next add/close
                self._error = error
                closing = True
            drained = self._drained
            if drained is not None:
                self._drained = None
                self._loop.call_soon_threadsafe(drained.set)

    def _write(self, batch: list[tuple[str, Result]]) -> None:
        self._store.record(batch)
        # A live view for `tail -f`; the store, not this file, is what the final output is built from.
        fields = self._output_fields
        lines = [
            orjson.dumps(with_output_fields(r.to_dict(), fields.pop(id, None))) + b"\n"
            for id, r in batch
        ]
        with open(self._output_path, "ab") as out:
            out.write(b"".join(lines))


def _materialise(options: JobOptions) -> tuple[str, bool]:
    """Standard input is spooled to a file beside the output, so it can be read twice."""
    directory = os.path.dirname(os.path.abspath(options.output_path))
    if not os.path.isdir(directory):
        raise InvalidInputError(
            f"cannot write {options.output_path}: the folder {directory} does not exist"
        )
    if options.input_path != "-":
        if not os.path.exists(options.input_path):
            raise InvalidInputError(f"{options.input_path}: no such file")
        output = os.path.realpath(options.output_path)
        if os.path.realpath(options.input_path) in (output, store_path_for(output)):
            raise InvalidInputError(
                f"{options.input_path} is both the input and the output (or its job store); "
                "give -o another file"
            )
        return options.input_path, False
    handle, path = tempfile.mkstemp(prefix=".llmgather-stdin-", dir=directory)
    with os.fdopen(handle, "wb") as spool:
        shutil.copyfileobj(sys.stdin.buffer, spool)
    return path, True


def _refuse_invalid(items: Iterator[InputItem]) -> None:
    errors: list[str] = []
    count = 0
    for item in items:
        if item.error is not None:
            count += 1
            if len(errors) < 20:
                errors.append(item.error)
    if count:
        more = f"\n  … and {count - len(errors)} more" if count > len(errors) else ""
        raise StrictInputError(
            f"--strict: {count} invalid input line(s), nothing was sent:\n  "
            + "\n  ".join(errors)
            + more
            + "\nFix these lines, or run without --strict to record them as failed items."
        )
