"""The one engine: a bounded pipeline of workers that sends requests through the limiter and
the retry layer and turns every input into exactly one Result.

    inputs ─▶ feeder ─▶ work queue ─▶ N workers ─▶ limiter ─▶ send ─▶ results
                 ▲                       │ transient error
                 │ window (backpressure) └─▶ sleeps in its own task, holding no worker
                 │                             and no slot, then rejoins the work queue
                 └── released when the caller takes a result

Memory is bounded by the window (admitted but not yet consumed), never by the input's size.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from llmgather._clock import Clock, SystemClock
from llmgather._errors import APIError, AuthenticationError, RateLimitError
from llmgather._retry import RetryPolicy
from llmgather._types import ErrorInfo, Request, Result
from llmgather.limits.local import Limiter, Permit
from llmgather.limits.tokens import estimate_request_tokens
from llmgather.transport.aiohttp import Outcome

Send = Callable[[Request], Awaitable[Outcome]]
"""Sends one request and returns its outcome, raising an APIError on failure."""


class LiveText(Protocol):
    """What `open_stream` yields: text pieces, then `outcome()` once exhausted."""

    def __aiter__(self) -> AsyncIterator[str]: ...

    def outcome(self) -> Outcome: ...


OpenStream = Callable[[Request], AbstractAsyncContextManager[LiveText]]


@dataclass(frozen=True, slots=True)
class EngineStats:
    """A snapshot of the engine's counters, for progress bars and summaries."""

    submitted: int
    done: int
    failed: int
    in_flight: int
    waiting_retry: int
    retries: int
    http_429: int
    input_tokens: int
    output_tokens: int
    elapsed_s: float


@dataclass(slots=True)
class _Counters:
    submitted: int = 0
    done: int = 0
    failed: int = 0
    waiting_retry: int = 0
    retries: int = 0
    http_429: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class _Job:
    request: Request
    index: int
    attempts: int = 0


_END = object()


class Engine:
    def __init__(
        self,
        send: Send,
        *,
        limiter: Limiter,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._send = send
        self._limiter = limiter
        self._retry = retry or RetryPolicy()
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._counters = _Counters()
        # Set by the first 401: every later request would be refused the same way.
        self._key_refused: AuthenticationError | None = None

    def statistics(self) -> EngineStats:
        c = self._counters
        return EngineStats(
            submitted=c.submitted,
            done=c.done,
            failed=c.failed,
            in_flight=self._limiter.in_flight,
            waiting_retry=c.waiting_retry,
            retries=c.retries,
            http_429=c.http_429,
            input_tokens=c.input_tokens,
            output_tokens=c.output_tokens,
            elapsed_s=time.monotonic() - c.started,
        )

    async def run_one(self, request: Request, index: int = 0) -> Result:
        """Send one request through the limiter and retries; errors come back as a Result."""
        job = _Job(request, index)
        self._counters.submitted += 1
        while True:
            outcome = await self._attempt(job)
            if isinstance(outcome, Result):
                return outcome
            assert outcome is not None  # only a stop leaves a job unsent, and there is none
            await self._wait_retry(outcome)

    async def map(
        self,
        requests: Iterable[Request] | AsyncIterable[Request],
        *,
        window: int | None = None,
        stop: asyncio.Event | None = None,
    ) -> AsyncIterator[Result]:
        """Results in completion order, with at most `window` requests admitted at a time.

        Once `stop` is set, no request is sent any more (nor sent again after a failure), and
        those already on the wire finish: a graceful stop. The input is not read further, even
        if it is waiting for its next item, and the requests never sent get no Result. Break
        out of the loop early with `contextlib.aclosing` to stop at once.
        """
        workers = self._limiter.limits.concurrency
        admitted = asyncio.Semaphore(window or max(2 * workers, 64))
        results: asyncio.Queue[object] = asyncio.Queue()
        runner = asyncio.create_task(
            self._pipeline(requests, workers, admitted, results, stop or asyncio.Event())
        )
        try:
            while (item := await results.get()) is not _END:
                admitted.release()
                assert isinstance(item, Result)
                yield item
            await runner  # re-raises a failure of the input iterable
        finally:
            runner.cancel()
            # Waits without swallowing a cancellation aimed at the consumer itself.
            await asyncio.wait((runner,))
            if not runner.cancelled():
                runner.exception()  # retrieved: a failure after an early break is not logged

    async def stream(self, request: Request, open_stream: OpenStream) -> AsyncIterator[str]:
        """Text pieces of one streamed answer, retried while nothing has reached the caller.

        Once a piece has been yielded a retry would repeat it, so a later failure is raised.
        """
        job = _Job(request, 0)
        self._counters.submitted += 1
        while True:
            job.attempts += 1
            permit = await self._limiter.acquire(self._estimate(request))
            used: int | None = None
            yielded = False
            delay: float | None = None
            try:
                async with open_stream(request) as live:
                    async for piece in live:
                        yielded = True
                        yield piece
                    outcome = live.outcome()
                used = self._succeeded(outcome)
                self._counters.done += 1
                return
            except APIError as error:
                used = self._on_error(error)
                delay = None if yielded else self._retry.next_delay(error, job.attempts, self._rng)
                if delay is None:
                    self._counters.failed += 1
                    raise self._retry.final_error(error) from None
                self._counters.retries += 1
            finally:
                self._limiter.release(permit, used_tokens=used)
            await self._wait_retry(delay)

    # -- the pipeline ---------------------------------------------------------------------

    async def _pipeline(
        self,
        requests: Iterable[Request] | AsyncIterable[Request],
        workers: int,
        admitted: asyncio.Semaphore,
        results: asyncio.Queue[object],
        stop: asyncio.Event,
    ) -> None:
        work: asyncio.Queue[_Job | None] = asyncio.Queue()
        fed = 0
        finished = 0
        feeding = True
        all_done = asyncio.Event()

        def resolve(result: Result | None) -> None:
            """Count one job out: with its Result, or with none if `stop` kept it unsent."""
            nonlocal finished
            finished += 1
            if result is None:
                admitted.release()  # the consumer releases a slot per Result it takes
            else:
                results.put_nowait(result)
            if not feeding and finished == fed:
                all_done.set()

        input_error: Exception | None = None

        async def feed() -> None:
            nonlocal fed, feeding, input_error
            try:
                async for request in _aiter(requests):
                    await admitted.acquire()
                    if stop.is_set():
                        admitted.release()
                        break
                    self._counters.submitted += 1
                    work.put_nowait(_Job(request, fed))
                    fed += 1
            except Exception as error:  # finish what was sent, then re-raise
                input_error = error
            finally:  # also when `halt` cancelled it in the middle of waiting for the input
                feeding = False
                if finished == fed:
                    all_done.set()

        async def halt(feeder: asyncio.Task[None]) -> None:
            """Once `stop` is set: read no more input, even if it is waiting for its next item."""
            await stop.wait()
            feeder.cancel()

        async def retry_later(job: _Job, delay: float, halted: asyncio.Task[None]) -> None:
            waiting = asyncio.ensure_future(self._wait_retry(delay))
            try:
                await asyncio.wait((waiting, halted), return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()
            work.put_nowait(job)  # after a stop, a worker drops it unsent

        async def worker(group: asyncio.TaskGroup, halted: asyncio.Task[None]) -> None:
            while (job := await work.get()) is not None:
                if stop.is_set():
                    resolve(None)
                    continue
                outcome = await self._attempt(job, stop)
                if outcome is None or isinstance(outcome, Result):
                    resolve(outcome)
                else:
                    group.create_task(retry_later(job, outcome, halted))

        try:
            async with asyncio.TaskGroup() as group:
                halted = group.create_task(halt(group.create_task(feed())))
                for _ in range(workers):
                    group.create_task(worker(group, halted))
                await all_done.wait()
                halted.cancel()
                for _ in range(workers):
                    work.put_nowait(None)
            if input_error is not None:
                raise input_error
        except BaseExceptionGroup as group_error:
            # One failure (the input iterable raising, say) is re-raised as itself.
            if len(group_error.exceptions) == 1:
                raise group_error.exceptions[0] from None
            raise
        finally:
            results.put_nowait(_END)

    # -- one attempt ------------------------------------------------------------------------

    async def _attempt(self, job: _Job, stop: asyncio.Event | None = None) -> Result | float | None:
        """One send: a Result when the job is finished, the delay before its next attempt, or
        None when `stop` was set while it waited for the limiter (it was not sent)."""
        if self._key_refused is not None:
            # Sending more with a key the server refused only piles up 401s: the item fails
            # unsent (attempts 0), and `--retry-failed` sends it once the key is fixed.
            message = f"not sent: the API key was refused earlier ({self._key_refused.message})"
            return self._failed(job, AuthenticationError(message))
        job.attempts += 1
        permit: Permit = await self._limiter.acquire(self._estimate(job.request))
        if stop is not None and stop.is_set():
            self._limiter.release(permit, used_tokens=0)
            return None
        used: int | None = None
        started = time.perf_counter()
        try:
            outcome = await self._send(job.request)
            used = self._succeeded(outcome)
            return self._ok(job, outcome, started)
        except APIError as error:
            used = self._on_error(error)
            delay = self._retry.next_delay(error, job.attempts, self._rng)
            if delay is None:
                return self._failed(job, self._retry.final_error(error))
            self._counters.retries += 1
            return delay
        except Exception as error:  # a user-supplied callable's own failure: report, don't retry
            return self._failed(job, error)
        finally:
            self._limiter.release(permit, used_tokens=used)

    def _estimate(self, request: Request) -> int:
        return estimate_request_tokens(request.messages, request.max_tokens)

    def _succeeded(self, outcome: Outcome) -> int | None:
        self._limiter.succeeded()
        usage = outcome.completion.usage
        if usage is None:
            return None
        self._counters.input_tokens += usage.input_tokens
        self._counters.output_tokens += usage.output_tokens
        return usage.total_tokens

    def _on_error(self, error: APIError) -> int | None:
        """Count the error, note a refused key; return the tokens it used (0 for a 429: the
        server admitted nothing)."""
        if isinstance(error, AuthenticationError):
            self._key_refused = error
        if isinstance(error, RateLimitError):
            self._counters.http_429 += 1
            if error.retry_after is None:
                self._limiter.back_off(self._retry.base_delay, self._retry.max_delay)
            elif error.retry_after <= self._retry.max_retry_wait:
                # Longer than that, the item fails as a quota error: no one else waits for it.
                self._limiter.pause(error.retry_after)
            return 0
        return None

    async def _wait_retry(self, delay: float) -> None:
        self._counters.waiting_retry += 1
        try:
            await self._clock.sleep(delay)
        finally:
            self._counters.waiting_retry -= 1

    def _ok(self, job: _Job, outcome: Outcome, started: float) -> Result:
        self._counters.done += 1
        completion = outcome.completion
        return Result(
            id=job.request.id or str(job.index),
            status="ok",
            text=completion.text,
            usage=completion.usage,
            attempts=job.attempts,
            latency_ms=(time.perf_counter() - started) * 1000,
            ttft_ms=outcome.ttft_ms,
            metadata=job.request.metadata,
            finish_reason=completion.finish_reason,
            index=job.index,
        )

    def _failed(self, job: _Job, error: Exception) -> Result:
        self._counters.failed += 1
        return Result(
            id=job.request.id or str(job.index),
            status="error",
            attempts=job.attempts,
            error=error_info(error),
            metadata=job.request.metadata,
            index=job.index,
            exception=_detached(error),
        )


def _detached(error: Exception) -> Exception:
    """The error without its traceback and chained exceptions: their frames hold the request
    (its auth header too), and a gather of many failures would keep every one of them alive."""
    error.__context__ = error.__cause__ = None
    return error.with_traceback(None)


def error_info(error: BaseException) -> ErrorInfo:
    if isinstance(error, APIError):
        return ErrorInfo(type(error).__name__, error.message, error.status_code)
    return ErrorInfo(type(error).__name__, str(error) or type(error).__name__)


async def _aiter(items: Iterable[Request] | AsyncIterable[Request]) -> AsyncIterator[Request]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
