"""A durable `run`: input file in, one committed result per input out, resumable after any stop.

    read (pass 1) ─▶ store.ingest: every id and line, invalid lines recorded as errors
    read (pass 2) ─▶ only items still pending ─▶ sender.map ─▶ sink ─▶ store.record (a thread)
                                                                   └─▶ output JSONL (appended)
    end or stop  ─▶ output.rewrite_output: the output rewritten from the store, one line per id

The store is the truth; the output file is a projection of it, rebuilt at every start and end,
so a torn or duplicated line left by a killed run never survives the next run.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from contextlib import AsyncExitStack, closing, suppress
from dataclasses import dataclass, field
from typing import Any

from llmgather._config import DEFAULT_CONCURRENCY, DEFAULT_TIMEOUT_S, Limits, Timeouts
from llmgather._engine import EngineStats
from llmgather._errors import (
    ConfigurationError,
    InputChangedError,
    InvalidInputError,
    StrictInputError,
)
from llmgather._link import link_options, open_link
from llmgather._redact import redact_url
from llmgather._retry import RetryPolicy
from llmgather._types import Request, Result
from llmgather.jobs.inputs import InputItem, detect_format, read_inputs
from llmgather.jobs.output import (
    append_lines,
    check_output_path,
    encode_result,
    real_output_path,
    refuse_foreign_output,
    render_result,
    rewrite_output,
)
from llmgather.jobs.queue import QueueCoordinator
from llmgather.jobs.senders import ClientSender, QueueSender, Sender
from llmgather.jobs.store import JobStore, SQLiteJobStore, fingerprint_file, store_path_for
from llmgather.providers.registry import Target, resolve_target

logger = logging.getLogger("llmgather")

MAX_PENDING_WRITES = 10_000  # finished results waiting for the disk before the pipeline waits
# At most one commit per this many seconds: a transaction costs far more than a row, and at
# thousands of answers a second one commit per answer would cost more CPU than sending them.
# What a kill can lose beyond the requests in flight is what arrives in this window. (At 0 ms
# latency the writer waits for the busy event loop's GIL far longer than this, so its batches
# hold ~50 results already; 20 ms cut its CPU by a quarter more, but a kill then lost more
# than the kill-and-resume test allows.)
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
    rpd: float | None = None
    tpm: float | None = None
    itpm: float | None = None
    otpm: float | None = None
    limiter: str | None = None  # a Redis URL: limits shared with every process that names it
    limiter_key: str | None = None  # the shared budgets' name (default: per provider key)
    queue: str | None = None  # a Redis URL: `llmgather worker`s send the items, not this process
    queue_name: str = "default"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: float = DEFAULT_TIMEOUT_S
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
    # Write over an output file no job store claims (a run of another tool, an old job whose
    # store was removed); without it (or `restart`) such a file is refused, left as it is.
    force: bool = False
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

    def read(
        self, path: str, warn: Callable[[str], None] | None = None
    ) -> Generator[InputItem, None, None]:
        """The items of the input at `path` (`input_path`, or standard input spooled to a file);
        `warn` hears what the input has that is ignored."""
        return read_inputs(
            path,
            fmt=self.fmt,
            column=self.column,
            id_column=self.id_column,
            system=self.system,
            max_line_bytes=self.max_line_bytes,
            display_name=self.input_path,
            warn=warn,
        )


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
    input: str = ""
    hint: str | None = None  # what to do next, when anything is left to do
    # Limits the provider announced in its answers' headers, or that its 429s taught where it
    # announced none, which paced the run where the user gave none (or gave a higher one), by
    # budget name ("rpm", "tpm", "itpm", "otpm"…); `learned_from` says which ("headers" or
    # "429s"). `overruled_limits`: the user's own limits a lower announced one replaced.
    learned_limits: dict[str, float] = field(default_factory=dict)
    learned_from: str | None = None
    overruled_limits: dict[str, float] = field(default_factory=dict)
    # Requests sent again at once on a fresh connection after a pooled one closed before any
    # answer: in no item's `attempts`, and the server may have received both copies.
    resent: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The --json summary, with each learned limit also as `learned_rpm`, `learned_tpm`…,
        to pass as `--rpm`, `--tpm`… next time."""
        flat = {f"learned_{name}": round(limit) for name, limit in self.learned_limits.items()}
        return {**self.__dict__, **flat}


ProgressHook = Callable[[Callable[[], EngineStats], int, bool], None]
ERROR_KEY_CHARS = 80  # the store groups errors by their message cut to this length


class Job:
    """One `llmgather run`. `stop` (set by a signal handler) ends it gracefully."""

    def __init__(
        self,
        options: JobOptions,
        *,
        on_start: ProgressHook | None = None,
        on_warning: Callable[[str], None] | None = None,
        sender: Sender | None = None,
    ) -> None:
        """`on_warning` hears what the input has that is ignored (an unknown field), once each.

        `sender`: where the requests go instead of a client of the job's own (a service's one
        client, so its jobs share its limits); the options' provider and limits are then unused.
        """
        self.options = options
        self._given_sender = sender
        self._on_start = on_start
        self._on_warning = on_warning or logger.warning
        self._sent = 0  # items this run actually sent (at least one attempt)
        self.stop = asyncio.Event()
        self.sending = False  # True once requests may have gone out: an error then loses nothing
        # The output fields (a Batch API `custom_id`, an integer id) of the items sent and not
        # yet written, by id, so the live output lines carry them as the final export does.
        self._output_fields: dict[str, dict[str, Any]] = {}

    async def run(self) -> JobSummary:
        options = self.options
        started = time.monotonic()
        if self._given_sender is not None:
            return await self._run(self._given_sender, started)
        # Resolve the provider before touching any file: a wrong model fails fast.
        limits = Limits(
            concurrency=options.concurrency,
            rpm=options.rpm,
            rpd=options.rpd,
            tpm=options.tpm,
            itpm=options.itpm,
            otpm=options.otpm,
        )
        if options.queue is not None:
            # The workers choose the provider and hold the keys: no target is resolved here,
            # so a key in this environment, or none, changes nothing.
            _refuse_worker_options(options)
            target = None
        else:
            target = resolve_target(
                options.model, base_url=options.base_url, api_key=options.api_key, env=os.environ
            )
        async with AsyncExitStack() as stack:
            sender = await self._sender(target, limits, stack)
            return await self._run(sender, started)

    async def _sender(self, target: Target | None, limits: Limits, stack: AsyncExitStack) -> Sender:
        """This process's client (to `target`), or the workers of `--queue` (no target); a
        Redis that does not answer fails here, before anything is sent."""
        options = self.options
        defaults = {"max_tokens": options.max_tokens, "temperature": options.temperature}
        if options.queue is not None:
            coordinator = QueueCoordinator(options.queue, name=options.queue_name)
            stack.push_async_callback(coordinator.aclose)
            await coordinator.check()
            return QueueSender(coordinator, defaults, output_path=options.output_path)
        assert target is not None  # resolved for every job that sends from this process
        link_settings = link_options(
            target,
            os.environ,
            api_key=options.api_key,
            base_url=options.base_url,
            workers=options.concurrency,
            retry=options.retry,
            timeouts=Timeouts(read=options.timeout_s),
            stream=options.stream,
            simulator=options.simulator,
        )
        link = await open_link(
            stack,
            target,
            limits,
            link_settings,
            limiter_url=options.limiter,
            limiter_key=options.limiter_key,
        )
        return ClientSender(link, defaults)

    async def _run(self, sender: Sender, started: float) -> JobSummary:
        options = self.options
        # `output`: the file written, resolved once (a link's target, which a rename would
        # otherwise replace the link with), so every write and the store agree on it.
        input_path, spooled, output = await asyncio.to_thread(_materialise, options)
        if await self._nothing_to_do(input_path, spooled, output):
            return self._empty_summary(sender, started)
        store: JobStore = await asyncio.to_thread(SQLiteJobStore.open, store_path_for(output))
        try:
            if options.strict:  # before the store is touched: a refusal keeps the last job
                await asyncio.to_thread(_refuse_invalid, self._read(input_path))
            resumed = await self._prepare(store, input_path, sender)
            try:
                await asyncio.to_thread(store.ingest, self._read(input_path, self._on_warning))
                if options.retry_failed:
                    await asyncio.to_thread(store.reset_failed)
                await asyncio.to_thread(rewrite_output, store, output)
                await asyncio.to_thread(store.mark_state, "running")
                stats = await asyncio.to_thread(store.stats)
                async with sender:
                    if self._on_start is not None:
                        self._on_start(sender.statistics, stats.pending, sender.simulated)
                    self.sending = True
                    stopped = await self._send_pending(sender, store, input_path, output)
                engine_stats = sender.statistics()
                final = await asyncio.to_thread(store.stats)
            except BaseException:
                # Release the claim `prepare` made, so the job does not look running.
                await asyncio.to_thread(store.mark_state, "interrupted")
                raise
            # A stop that came when everything left was already in flight, and finished within
            # the grace period, cut nothing short: the job is complete. A job with anything
            # pending is never complete, whatever ended the run.
            interrupted = stopped and final.pending > 0
            state = "interrupted" if final.pending else "complete"
            await asyncio.to_thread(store.mark_state, state)
            await asyncio.to_thread(rewrite_output, store, output)
        finally:
            await asyncio.to_thread(store.close)
            if spooled:
                os.unlink(input_path)
        return JobSummary(
            output=options.output_path,
            target=sender.describe(),
            simulated=sender.simulated,
            resumed=resumed,
            interrupted=interrupted,
            total=final.total,
            ok=final.done,
            failed=final.failed,
            invalid=final.invalid,
            pending=final.pending,
            sent=self._sent,
            retries=engine_stats.retries,
            http_429=engine_stats.http_429,
            input_tokens=final.input_tokens,
            output_tokens=final.output_tokens,
            elapsed_s=round(time.monotonic() - started, 3),
            top_errors=[
                {"type": kind, "message": shown_error(message), "count": count}
                for kind, message, count in final.top_errors
            ],
            input=_shown_input(options.input_path),
            hint=_hint(final.pending, final.failed),
            learned_limits=dict(engine_stats.learned),
            learned_from=_learned_from(engine_stats),
            overruled_limits=dict(engine_stats.lowered),
            resent=engine_stats.resent,
        )

    async def _nothing_to_do(self, input_path: str, spooled: bool, output: str) -> bool:
        """True when the input holds no item and no job exists for the output: then no job
        store is made and the output is written empty. A CSV without the column fails here,
        before any store is made."""
        try:
            nothing = await asyncio.to_thread(self._empty_without_job, input_path, output)
        except BaseException:
            if spooled:
                os.unlink(input_path)
            raise
        if nothing and spooled:
            os.unlink(input_path)
        return nothing

    def _empty_without_job(self, input_path: str, output: str) -> bool:
        if os.path.exists(store_path_for(output)) or _has_items(self._read(input_path)):
            return False
        _write_empty(output)
        return True

    def _empty_summary(self, sender: Sender, started: float) -> JobSummary:
        return JobSummary(
            output=self.options.output_path,
            target=sender.describe(),
            simulated=sender.simulated,
            resumed=False,
            interrupted=False,
            total=0, ok=0, failed=0, invalid=0, pending=0, sent=0, retries=0, http_429=0,
            input_tokens=0, output_tokens=0,
            elapsed_s=round(time.monotonic() - started, 3),
            top_errors=[],
            input=_shown_input(self.options.input_path),
        )  # fmt: skip

    async def _prepare(self, store: JobStore, input_path: str, sender: Sender) -> bool:
        fingerprint = await asyncio.to_thread(fingerprint_file, input_path)
        params = self.options.params(sender.target)
        resumed = await asyncio.to_thread(
            lambda: store.prepare(
                input_fingerprint=fingerprint, params=params, restart=self.options.restart
            )
        )
        identity = f"{fingerprint}:{sorted(params.items())}"
        await sender.prepared(identity, retry_failed=self.options.retry_failed)
        return resumed

    def _read(
        self, path: str, warn: Callable[[str], None] | None = None
    ) -> Generator[InputItem, None, None]:
        return self.options.read(path, warn)

    def _pending(self, store: JobStore, input_path: str) -> Iterator[InputItem]:
        """The items still to send; InputChangedError when the input no longer matches the store."""
        # Read on a thread (see `_requests`): `is_set` only reads a flag, safe from there.
        items = store.pending_items(self._read(input_path), should_stop=self.stop.is_set)
        try:
            yield from items
        except InvalidInputError as error:
            raise InputChangedError(_shown_input(self.options.input_path), str(error)) from None

    async def _send_pending(
        self, sender: Sender, store: JobStore, input_path: str, output: str
    ) -> bool:
        """Send what is still pending; True if a stop signal cut the run short."""
        pending = self._pending(store, input_path)
        async with _Sink(store, output, self._output_fields) as sink:
            consume = asyncio.create_task(self._consume(sender, pending, sink))
            stopped = asyncio.create_task(self.stop.wait())
            try:
                await asyncio.wait({consume, stopped}, return_when=asyncio.FIRST_COMPLETED)
                interrupted = not consume.done()
                if interrupted:
                    # No new work is fed once `stop` is set; requests in flight get the grace
                    # period.
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
        return interrupted

    async def _consume(self, sender: Sender, pending: Iterator[InputItem], sink: _Sink) -> None:
        requests = self._requests(pending, sender.batch_body_fields)
        async for result in sender.map(requests, stop=self.stop):
            # An item failed unsent (a stop, a refused key) went nowhere: only attempts count.
            self._sent += result.attempts > 0
            await sink.add(result)

    async def _requests(
        self, pending: Iterator[InputItem], batch_body_fields: bool
    ) -> AsyncIterator[Request]:
        """The requests of the pending items; `batch_body_fields`: the provider takes the body
        fields of an OpenAI Batch API line as they are (the registry says which do)."""
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
                if request.extra and not batch_body_fields:
                    # Only Batch API lines carry extra fields, written for the API that defined
                    # the format: the registry says which providers take them as they are.
                    request = request.replace(extra=None)
                # The reader gives a request its item's id already: a copy per item is not free.
                yield request if request.id == item.id else request.replace(id=item.id)


# What a worker decides when the items go through a queue, by JobOptions field and flag.
WORKER_OPTIONS = {
    "model": "--model",
    "base_url": "--base-url",
    "api_key": "--api-key",
    "rpm": "--rpm",
    "rpd": "--rpd",
    "tpm": "--tpm",
    "itpm": "--itpm",
    "otpm": "--otpm",
    "limiter": "--limiter",
    "limiter_key": "--limiter-key",
}


def _refuse_worker_options(options: JobOptions) -> None:
    given = [flag for name, flag in WORKER_OPTIONS.items() if getattr(options, name)]
    if options.stream:
        given.append("--stream")
    if given:
        raise ConfigurationError(
            f"with --queue the workers send the requests: give {', '.join(given)} to "
            "`llmgather worker`, not to run"
        )


def _take(items: Iterator[InputItem], n: int) -> list[InputItem]:
    return list(itertools.islice(items, n))


class _Sink:
    """Commits results on its own writer thread, never on the event loop, as soon as they arrive.

    Group commit: while one transaction is being written, the results that arrive meanwhile
    gather into the next, so a kill loses only what was in flight. The event loop hands results
    over through a queue and is never woken per batch: a reply per commit (as `to_thread` would
    make) costs more than the commit itself at thousands of results a second.

    The writer thread is owned: `async with` starts it, and leaving the block, by any way
    (an error, a cancellation), commits what was handed over and joins it.
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
        self._finished: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(target=self._write_loop, name="llmgather-writer")

    async def __aenter__(self) -> _Sink:
        self._thread.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._close()

    async def add(self, result: Result) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((result.id, result))
        if self._queue.qsize() >= MAX_PENDING_WRITES:
            # The disk is slower than the API: hold the pipeline rather than grow memory.
            drained = self._drained = asyncio.Event()
            if self._queue.qsize() >= MAX_PENDING_WRITES:  # the writer may have taken it already
                await drained.wait()

    async def _close(self) -> None:
        """Let the writer commit what it holds and end, join it, and raise what it failed with.

        A cancellation meanwhile still waits for the writer (what is left is at most one
        batch), then goes on: a result handed over is never left uncommitted by a live thread.
        """
        self._queue.put(None)
        cancelled: asyncio.CancelledError | None = None
        while not self._finished.done():
            try:
                await asyncio.shield(self._finished)
            except asyncio.CancelledError as error:
                cancelled = error
        self._thread.join()  # at once: the thread signalled its last step
        if cancelled is not None:
            raise cancelled
        if self._error is not None:
            raise self._error

    def _write_loop(self) -> None:
        try:
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
                except BaseException as error:  # reported to the event loop by add or close
                    self._error = error
                    closing = True
                drained = self._drained
                if drained is not None:
                    self._drained = None
                    self._loop.call_soon_threadsafe(drained.set)
        finally:
            with suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                self._loop.call_soon_threadsafe(self._set_finished)

    def _set_finished(self) -> None:
        if not self._finished.done():
            self._finished.set_result(None)

    def _write(self, batch: list[tuple[str, Result]]) -> None:
        # Each result serialised once: the store's row and the output line share the bytes.
        # This thread holds the GIL while it works, so its per-result work delays the loop.
        encoded = [encode_result(id, r) for id, r in batch]
        self._store.record(batch, encoded)
        # A live view for `tail -f`; the store, not this file, is what the final output is built from.
        fields = self._output_fields
        append_lines(
            self._output_path,
            [
                render_result(id, r, fields.pop(id, None), data)
                for (id, r), data in zip(batch, encoded, strict=True)
            ],
        )


def _materialise(options: JobOptions) -> tuple[str, bool, str]:
    """The input's path, whether it is standard input spooled to a file beside the output (so
    it can be read twice), and the output's `real_output_path`.

    Checks the output's path first: nothing (no spool, no job store) is made for a bad one,
    nor for a file there that no job store claims (unless `restart` or `force`).
    """
    check_output_path(options.output_path)
    output = real_output_path(options.output_path)
    resolved = os.path.realpath(output)
    if options.input_path != "-":
        if not os.path.exists(options.input_path):
            raise InvalidInputError(f"{options.input_path}: no such file")
        if os.path.realpath(options.input_path) in (resolved, store_path_for(resolved)):
            raise InvalidInputError(
                f"{options.input_path} is both the input and the output (or its job store); "
                "give -o another file"
            )
    if not (options.restart or options.force):
        refuse_foreign_output(options.output_path, store_path_for(output))
    if options.input_path != "-":
        return options.input_path, False, output
    handle, path = tempfile.mkstemp(prefix=".llmgather-stdin-", dir=os.path.dirname(resolved))
    with os.fdopen(handle, "wb") as spool:
        shutil.copyfileobj(sys.stdin.buffer, spool)
    return path, True, output


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


def _has_items(items: Generator[InputItem, None, None]) -> bool:
    """Whether the input yields at least one item; reads no further than the first."""
    with closing(items):
        return next(items, None) is not None


def _write_empty(output_path: str) -> None:
    with open(output_path, "wb"):
        pass


def _shown_input(input_path: str) -> str:
    return "<stdin>" if input_path == "-" else input_path


def _hint(pending: int, failed: int) -> str | None:
    """What to do next: resume what is pending, send the failed items again."""
    hints = []
    if pending:
        hints.append("Rerun the same command to resume.")
    if failed:
        them = "them" if failed != 1 else "it"
        hints.append(
            f"{failed} item{'s' if failed != 1 else ''} failed: once the cause is fixed, "
            f"rerun with --retry-failed to send {them} again."
        )
    return " ".join(hints) or None


def shown_error(message: str) -> str:
    """An error message as the store groups it, cut at a word boundary if it was cut at all."""
    if len(message) < ERROR_KEY_CHARS:
        return message
    head, space, _ = message.rpartition(" ")
    if not space or len(head) < ERROR_KEY_CHARS // 2:  # one long word: cut it where it is
        head = message
    return head.rstrip(" ,;") + "…"


def _learned_from(stats: EngineStats) -> str | None:
    if stats.found:
        return "429s"
    return "headers" if stats.learned else None
