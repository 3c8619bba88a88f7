"""A durable `run`: input file in, one committed result per input out, resumable after any stop.

    read (pass 1) ─▶ store.ingest: every id and line, invalid lines recorded as errors;
                     on a rerun with an edited input, merged by id and content (store.merge)
    read (pass 2) ─▶ only items still pending ─▶ the sender's map ─▶ sink ─▶ store.record (a thread)
                                                                   └─▶ output JSONL (appended)
    end or stop  ─▶ output.rewrite_output: the output rewritten from the store, one line per id

The store is the truth; the output file is a projection of it, rebuilt at every start and end,
so a torn or duplicated line left by a killed run never survives the next run. What a job is
told is in `jobs.options`, what it reports in `jobs.summary`, its writer thread in `jobs.sink`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterator, Mapping
from contextlib import AsyncExitStack, closing, suppress
from typing import Any

from llmgather._engine import EngineStats
from llmgather._errors import (
    InputChangedError,
    InvalidInputError,
    QuotaExhaustedError,
    StrictInputError,
)
from llmgather._link import link_options, open_link
from llmgather._types import Request, Result
from llmgather.cache.open import open_cache
from llmgather.jobs.base import Sender
from llmgather.jobs.inputs import InputItem
from llmgather.jobs.options import JobOptions, JobSpec
from llmgather.jobs.output import (
    check_output_path,
    real_output_path,
    refuse_foreign_output,
    rewrite_output,
)
from llmgather.jobs.queue import QueueCoordinator
from llmgather.jobs.senders import LinkSender, QueueSender
from llmgather.jobs.sink import Sink
from llmgather.jobs.spend_ledger import StoreLedger
from llmgather.jobs.store import (
    JobStats,
    JobStore,
    SQLiteJobStore,
    fingerprint_file,
    store_path_for,
)
from llmgather.jobs.summary import JobSummary, empty_summary, summarise
from llmgather.limits.job_cap import JobCap
from llmgather.limits.local import LocalLimiter
from llmgather.providers.registry import Target, resolve_target

__all__ = ["Job", "ProgressHook"]

logger = logging.getLogger("llmgather")

# Input items read ahead per trip to the reading thread: enough that the trips cost nothing.
READ_PAGE_ITEMS = 256

ProgressHook = Callable[[Callable[[], EngineStats], int, bool], None]


class Job:
    """One durable run of `options` (a `JobOptions`, or a call job's). `stop` (set by a signal
    handler, or by the caller) ends it gracefully."""

    def __init__(
        self,
        options: JobSpec,
        *,
        on_start: ProgressHook | None = None,
        on_warning: Callable[[str], None] | None = None,
        sender: Sender | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`on_warning` hears what the input has that is ignored (an unknown field), once each.

        `sender`: where the requests go instead of a sender of the job's own built from
        `options.send` (a service's one client, so its jobs share its limits; a call job's
        engine). `env`: where the provider keys and proxy variables are read, given by the
        caller's edge (the CLI passes `os.environ`); none by default.
        """
        self.options = options
        self._given_sender = sender
        self._env: Mapping[str, str] = {} if env is None else env
        self._on_start = on_start
        self._on_warning = on_warning or logger.warning
        self._sent = 0  # items whose result came back sent (at least one attempt)
        # What `end_now` reads: the run's start and sender, its store while open, a resumption.
        self._started = time.monotonic()
        self._sent_through: Sender | None = None
        self._store: JobStore | None = None
        self._resumed = False
        self.stop = asyncio.Event()
        self.sending = False  # True once requests may have gone out: an error then loses nothing
        # What changed since the last run (where requests go, which items), for the summary.
        self.changes: list[str] = []
        self._fingerprint = ""
        self._state_before = "new"
        # The first quota error's message, once one stopped the run (see `_quota_spent`).
        self.quota_spent: str | None = None
        # The output fields (a Batch API `custom_id`, an integer id) of the items sent and not
        # yet written, by id, so the live output lines carry them as the final export does.
        self._output_fields: dict[str, dict[str, Any]] = {}
        # Under a cost cap of this process's own: what the job spent over all its runs.
        self._spent_nanos: int | None = None

    async def run(self) -> JobSummary:
        started = time.monotonic()
        if self._given_sender is not None:
            return await self._run(self._given_sender, started)
        options = self.options
        if not isinstance(options, JobOptions):
            raise TypeError(f"a job of {type(options).__name__} sends through the sender given it")
        send = options.send
        if send.queue is not None:
            # The workers choose the provider and hold the keys: no target is resolved here,
            # so a key in this environment, or none, changes nothing.
            send.refuse_workers_choices()
            target = None
        else:
            # Resolved before any file is touched: a wrong model fails fast.
            target = resolve_target(
                send.model, base_url=send.base_url, api_key=send.api_key, env=self._env
            )
        async with AsyncExitStack() as stack:
            sender = await self._sender(options, target, stack)
            return await self._run(sender, started)

    async def _sender(
        self, options: JobOptions, target: Target | None, stack: AsyncExitStack
    ) -> Sender:
        """This process's link (to `target`), or the workers of a queue (no target); a Redis
        that does not answer fails here, before anything is sent."""
        send = options.send
        if send.queue is not None:
            coordinator = QueueCoordinator(send.queue, name=send.queue_name)
            stack.push_async_callback(coordinator.aclose)
            await coordinator.check()
            return QueueSender(coordinator, send.defaults(), output_path=options.output_path)
        assert target is not None  # resolved for every job that sends from this process
        cache = None
        if send.cache is not None:
            beside = _store_folder(options.output_path)
            cache = await open_cache(send.cache, beside=beside, warn=self._on_warning)
            stack.push_async_callback(cache.aclose)
        link_settings = link_options(
            target,
            self._env,
            api_key=send.api_key,
            base_url=send.base_url,
            workers=send.limits.concurrency,
            retry=send.retry,
            timeouts=send.timeouts,
            stream=send.stream,
            simulator=send.simulator,
            prices=send.prices,
            warn=self._on_warning,
            cache=cache,
        )
        link = await open_link(
            stack,
            target,
            send.limits,
            link_settings,
            limiter_url=send.limiter,
            limiter_key=send.limiter_key,
            job_cap=True,  # the cap is this job's, over its runs, whoever shares its rates
        )
        return LinkSender(link, send.defaults())

    async def _run(self, sender: Sender, started: float) -> JobSummary:
        options = self.options
        self._started, self._sent_through = started, sender
        # `output`: the file written, resolved once (a link's target, which a rename would
        # otherwise replace the link with), so every write and the store agree on it.
        input_path, spooled, output = await asyncio.to_thread(_materialise, options)
        if await self._nothing_to_do(input_path, spooled, output):
            return empty_summary(
                output=options.output_path,
                input=options.input.shown,
                target=sender.describe(),
                simulated=sender.simulated,
                elapsed_s=time.monotonic() - started,
            )
        try:
            # Before any store is opened: a refusal keeps the last job, and makes none.
            if options.input.strict:
                await asyncio.to_thread(_refuse_invalid, self._read(input_path))
            store: JobStore = await asyncio.to_thread(SQLiteJobStore.open, store_path_for(output))
        except BaseException:
            if spooled:
                os.unlink(input_path)
            raise
        self._store = store
        try:
            self._resumed = await self._prepare(store, input_path, sender)
            stopped, final, engine = await self._run_prepared(store, input_path, output, sender)
        finally:
            self._store = None  # `end_now` reads a closed store afresh
            await asyncio.to_thread(store.close)
            if spooled:
                os.unlink(input_path)
        # A stop that came when everything left was already in flight, and finished within
        # the grace period, cut nothing short: the job is complete.
        return self._summary(sender, final, engine, interrupted=stopped and final.pending > 0)

    def end_now(self) -> JobSummary | None:
        """What the job reports when it ends short of its own end: quit at once (a second
        Ctrl-C, which exits without unwinding) or stopped by an error once sending began.

        A run still sending is marked interrupted in its store first, so its running time
        counts to now. The counts are the store's, read afresh; None when no run began or the
        store cannot be read. Blocks briefly: the store's writer may hold it for one batch.
        """
        sender = self._sent_through
        if sender is None:
            return None
        store = self._store
        with suppress(sqlite3.Error):
            # Only once sending began: ingesting holds the store for as long as the input is.
            if self.sending and store is not None and store.stats(top=0).state == "running":
                store.mark_state("interrupted")
        path = store_path_for(self.options.output_path)
        try:
            with SQLiteJobStore.open(path, create=False) as reader:
                final = reader.stats()
        except (OSError, sqlite3.Error):
            return None
        engine = sender.statistics() if self.sending else _NOTHING_SENT
        return self._summary(sender, final, engine, interrupted=True)

    def _summary(
        self, sender: Sender, final: JobStats, engine: EngineStats, *, interrupted: bool
    ) -> JobSummary:
        return summarise(
            output=self.options.output_path,
            input=self.options.input.shown,
            target=sender.describe(),
            simulated=sender.simulated,
            resumed=self._resumed,
            interrupted=interrupted,
            sent=self._went_out(engine),
            final=final,
            engine=engine,
            elapsed_s=time.monotonic() - self._started,
            quota_spent=self.quota_spent,
            changes=self.changes,
            max_cost=self.options.send.limits.max_cost
            if isinstance(self.options, JobOptions)
            else None,
            spent_nanos=self._spent_nanos,
        )

    def _went_out(self, engine: EngineStats) -> int:
        """The requests this run sent. Its own sender's engine counts each as it goes out,
        those a stop cut off on the wire too; a sender shared with others (the service's
        one link) counts theirs too, so there only the items whose result came back sent."""
        return self._sent if self._given_sender is not None else max(self._sent, engine.sent)

    async def _run_prepared(
        self, store: JobStore, input_path: str, output: str, sender: Sender
    ) -> tuple[bool, JobStats, EngineStats]:
        """Ingest the input, send what is pending, and mark how the job ended; whether a stop
        cut it short, the store's final stats and the engine's."""
        await self._ingest(store, input_path, sender)
        try:
            if self.options.flags.retry_failed:
                await asyncio.to_thread(store.reset_failed)
            await asyncio.to_thread(rewrite_output, store, output)
            await asyncio.to_thread(store.mark_state, "running")
            stats = await asyncio.to_thread(store.stats)
            ledger = await self._spend_ledger(store, sender)
            try:
                async with sender:
                    if self._on_start is not None:
                        self._on_start(sender.statistics, stats.pending, sender.simulated)
                    self.sending = True
                    stopped = await self._send_pending(sender, store, input_path, output)
            finally:
                if ledger is not None:
                    await ledger.aclose()
                    self._spent_nanos = await asyncio.to_thread(store.spent_nanos)
            engine = sender.statistics()
            final = await asyncio.to_thread(store.stats)
        except BaseException:
            # Release the claim `prepare` made, so the job does not look running.
            await asyncio.to_thread(store.mark_state, "interrupted")
            raise
        # A job with anything pending is never complete, whatever ended the run.
        await asyncio.to_thread(store.mark_state, "interrupted" if final.pending else "complete")
        await asyncio.to_thread(rewrite_output, store, output)
        return stopped, final, engine

    async def _spend_ledger(self, store: JobStore, sender: Sender) -> StoreLedger | None:
        """Under a cost cap of this process's own limiter, the ledger that records each send's
        reservation in the store before it goes, and the limiter told what earlier runs spent
        (the cap is the job's, over all its runs, kept in this process even where its rate
        limits are shared through Redis)."""
        if self._given_sender is not None or not isinstance(sender, LinkSender):
            return None
        link = sender.link
        if not link.capped:
            return None
        spent = await asyncio.to_thread(store.spent_nanos)
        if isinstance(link.limiter, LocalLimiter | JobCap):
            link.limiter.spent_before(spent)
        link.ledger = ledger = StoreLedger(store)
        return ledger

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

    async def _prepare(self, store: JobStore, input_path: str, sender: Sender) -> bool:
        self._fingerprint = await asyncio.to_thread(fingerprint_file, input_path)
        state = await asyncio.to_thread(store.recorded_state)
        params = self.options.params(sender.target)
        resumed = await asyncio.to_thread(
            lambda: store.prepare(
                input_fingerprint=self._fingerprint,
                params=params,
                restart=self.options.flags.restart,
            )
        )
        # What a refused ingest leaves the job as (`_ingest`): a resumed job as it was before
        # this claim; a job started anew (its store emptied) holds nothing yet.
        self._state_before = state if resumed else "new"
        return resumed

    async def _ingest(self, store: JobStore, input_path: str, sender: Sender) -> None:
        """Take the input into the store: a rerun on an edited input, line by line. A refused
        rerun (changed items, duplicate ids) leaves a resumed job as it was, its state too."""
        flags = self.options.flags
        try:
            report = await asyncio.to_thread(
                lambda: store.ingest(
                    self._read(input_path, self._on_warning),
                    input_fingerprint=self._fingerprint,
                    route=self.options.route(sender.target),
                    resend_changed=flags.resend_changed,
                    source=self.options.input.shown,
                )
            )
        except BaseException:
            await asyncio.to_thread(store.mark_state, self._state_before)  # claim released
            raise
        self.changes = [*report.route_changes, *report.changes]
        # The work queue keeps results by item id: another epoch is another job there, so
        # no result of an old request is taken for a new one.
        epoch = await asyncio.to_thread(store.epoch)
        identity = f"{sorted(self.options.params(sender.target).items())}:{epoch}"
        # What a spent cost cap left unsent was never sent: every rerun sends it (a queue's
        # results of it, kept in Redis, are forgotten as for the failed items sent again).
        unsent = await asyncio.to_thread(store.reset_unsent)
        await sender.prepared(identity, retry_failed=flags.retry_failed or unsent > 0)

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
            raise InputChangedError(self.options.input.shown, str(error)) from None

    async def _send_pending(
        self, sender: Sender, store: JobStore, input_path: str, output: str
    ) -> bool:
        """Send what is still pending; True if a stop signal cut the run short."""
        pending = self._pending(store, input_path)
        async with Sink(store, output, self._output_fields) as sink:
            # No new work is fed once `stop` is set; requests in flight get the grace period.
            return await _until_stopped(
                self._consume(sender, pending, sink), self.stop, self.options.flags.grace_s
            )

    async def _consume(self, sender: Sender, pending: Iterator[InputItem], sink: Sink) -> None:
        requests = self._requests(pending, sender.batch_body_fields)
        async for result in sender.map(requests, stop=self.stop):
            # An item failed unsent (a stop, a refused key) went nowhere: only attempts count.
            self._sent += result.attempts > 0
            if self._quota_spent(result, sender):
                continue  # left pending: a rerun once the quota is back sends it
            await sink.add(result)

    def _quota_spent(self, result: Result, sender: Sender) -> bool:
        """True for an item that failed on a spent quota (a day's, a spend limit, credit): it
        is not recorded, so it stays pending, and the first one stops the run, since every
        other item would meet the same answer. A queue's workers keep their results in Redis
        for a rerun to read back, so there such an item is recorded failed as before."""
        error = result.error
        if error is None or error.type != QuotaExhaustedError.__name__:
            return False
        if isinstance(sender, QueueSender):
            return False
        if self.quota_spent is None:
            self.quota_spent = error.message
            self._on_warning(
                f"the provider's quota is spent ({error.message}): stopping; the items not "
                "done stay pending"
            )
            self.stop.set()
        return True

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


async def _until_stopped(
    work: Coroutine[Any, Any, None], stop: asyncio.Event, grace_s: float
) -> bool:
    """Run `work` to its end; once `stop` is set, give it `grace_s` more, then cancel it.
    True if `stop` came before its end. What `work` raises is raised as it is."""
    try:
        async with asyncio.TaskGroup() as group:
            task = group.create_task(work, name="llmgather-job-send")
            stopped = group.create_task(stop.wait(), name="llmgather-job-stop")
            task.add_done_callback(lambda _: stopped.cancel())
            await asyncio.wait({stopped})
            if task.done():
                return False
            try:
                async with asyncio.timeout(grace_s):
                    await asyncio.wait({task})
            except TimeoutError:
                task.cancel()
            return True
    except BaseExceptionGroup as errors:
        # Only `work` can fail: its own exception, not a group of one, reaches the caller.
        raise errors.exceptions[0] from None


# The engine's counters when nothing was sent: a job ended before its sender began.
_NOTHING_SENT = EngineStats(
    submitted=0, sent=0, done=0, failed=0, in_flight=0, waiting_retry=0, retries=0,
    http_429=0, input_tokens=0, output_tokens=0, elapsed_s=0.0, concurrency=0, limits={},
    learned={}, paused_s=0.0, waiting_on=None, unreachable_s=0.0, found={},
)  # fmt: skip


def _take(items: Iterator[InputItem], n: int) -> list[InputItem]:
    return list(itertools.islice(items, n))


def _materialise(options: JobSpec) -> tuple[str, bool, str]:
    """The input's path, whether it is standard input spooled to a file beside the output (so
    it can be read twice), and the output's `real_output_path`.

    Checks the output's path first: nothing (no spool, no job store) is made for a bad one,
    nor for a file there that no job store claims (unless `restart` or `force`).
    """
    input_path = options.input.path
    check_output_path(options.output_path)
    output = real_output_path(options.output_path)
    resolved = os.path.realpath(output)
    if input_path != "-":
        if not os.path.exists(input_path):
            raise InvalidInputError(f"{input_path}: no such file")
        if os.path.realpath(input_path) in (resolved, store_path_for(resolved)):
            raise InvalidInputError(
                f"{input_path} is both the input and the output (or its job store); "
                "give the output another path"
            )
    if not (options.flags.restart or options.flags.force):
        refuse_foreign_output(options.output_path, store_path_for(output))
    if input_path != "-":
        return input_path, False, output
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
        raise StrictInputError(count, errors)


def _has_items(items: Generator[InputItem, None, None]) -> bool:
    """Whether the input yields at least one item; reads no further than the first."""
    with closing(items):
        return next(items, None) is not None


def _write_empty(output_path: str) -> None:
    with open(output_path, "wb"):
        pass


def _store_folder(output_path: str) -> str:
    """The folder of the job store of `output_path` (where the default cache file lives)."""
    return os.path.dirname(os.path.abspath(store_path_for(output_path)))
