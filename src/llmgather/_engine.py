"""The one engine: a bounded pipeline of workers that sends requests through the limiter and
the retry layer and turns every input into exactly one Result.

    inputs ─▶ feeder ─▶ work queue ─▶ N workers ─▶ limiter ─▶ send ─▶ results
                 ▲                       │ transient error
                 │ window (backpressure) └─▶ sleeps in its own task, holding no worker
                 │                             and no slot, then rejoins the work queue
                 └── released when the caller takes a result

Memory is bounded by the window (admitted but not yet consumed), never by the input's size.
The engine is the only caller of the limiter, and talks to it only through the `Limiter`
protocol: it reserves each request's cost, settles it with the real usage, reports outages,
and 429s while most answers are 429s (`penalise`: see `limits.refusals`), cut-off streams
(the release's outcome) and the limits an answer announced (`observe`). The limiter may be shared with other engines and other processes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from llmgather._clock import Clock, SystemClock
from llmgather._config import DEFAULT_CONCURRENCY
from llmgather._errors import (
    APIError,
    AuthenticationError,
    ConnectError,
    RateLimitError,
    TruncatedStreamError,
)
from llmgather._redact import Redactor
from llmgather._retry import Outage, RetryPolicy, gave_up, is_outage
from llmgather._stop import StoppableWaits
from llmgather._types import ErrorInfo, Outcome, Request, Result, Usage
from llmgather.limits.base import Cost, Ending, Limiter, Permit
from llmgather.limits.refusals import RecentRefusals
from llmgather.limits.tokens import request_cost

Send = Callable[[Request], Awaitable[Outcome]]
"""Sends one request and returns its outcome, raising an APIError on failure."""

# What a request the server did not take costs in tokens: a 429, or a send cancelled by a stop.
_NOTHING_USED = Usage(0, 0)


Piece = TypeVar("Piece", covariant=True)


class LiveText(Protocol[Piece]):
    """What `open_stream` yields: pieces (text, or the raw bytes a gateway relays), then
    `outcome()` once exhausted."""

    def __aiter__(self) -> AsyncIterator[Piece]: ...

    def outcome(self) -> Outcome: ...


OpenStream = Callable[[Request], AbstractAsyncContextManager[LiveText[Piece]]]


@dataclass(frozen=True, slots=True)
class EngineStats:
    """A snapshot of the engine's counters, for progress bars and summaries.

    `sent` counts items sent at least once; `resent` the requests the transport sent again at
    once on a fresh connection, when a pooled one closed before any answer (in no item's
    `attempts`: the server may or may not have received the first copy). `concurrency`, `limits` (by budget name, limit per
    window), `learned` (those a provider announced or its 429s taught), `found` (those its 429s
    taught, where nothing was announced), `paused_s` and `waiting_on` (what the next
    send waits for: "pause", "concurrency", a budget name, or None) are the limiter's, which
    other engines may share. `unreachable_s` is how long the server has been down (0.0 while
    it answers).
    """

    submitted: int
    sent: int
    done: int
    failed: int
    in_flight: int
    waiting_retry: int
    retries: int
    http_429: int
    input_tokens: int
    output_tokens: int
    elapsed_s: float
    concurrency: int
    limits: Mapping[str, float]
    learned: Mapping[str, float]
    paused_s: float
    waiting_on: str | None
    unreachable_s: float
    found: Mapping[str, float]
    resent: int = 0
    lowered: Mapping[str, float] = field(default_factory=dict)  # see `LimiterStats.lowered`
    # The 429s that held every send on the key (most answers were 429s then): the others held
    # only their own retry.
    http_429_holds: int = 0


@dataclass(slots=True)
class _Counters:
    submitted: int = 0
    sent: int = 0
    done: int = 0
    failed: int = 0
    in_flight: int = 0
    waiting_retry: int = 0
    retries: int = 0
    http_429: int = 0
    http_429_holds: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class _Job:
    request: Request
    index: int
    attempts: int = 0  # sends made, as the Result reports them
    charged: int = 0  # failures that count against max_attempts (an outage's do not)
    reached: int = 0  # failed sends that went out (all but a connection never made)


_END = object()


class Engine:
    """Runs requests through `limiter` with `workers` concurrent workers (the pool is the
    engine's own: a shared limiter's cap bounds the sends of every engine together)."""

    def __init__(
        self,
        send: Send,
        *,
        limiter: Limiter,
        workers: int = DEFAULT_CONCURRENCY,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        resent: Callable[[], int] | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        """`resent` reads how many requests the transport under `send` resent on its own;
        `redactor` hides the secrets its owner knows from every failure it reports (without
        one, the shapes of keys and tokens are hidden)."""
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._send = send
        self._limiter = limiter
        self._workers = workers
        self._retry = retry or RetryPolicy()
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._resent = resent
        self._redactor = redactor or Redactor()
        self._counters = _Counters()
        self._outage = Outage()
        self._refusals = RecentRefusals()
        # Set by the first 401: every later request would be refused the same way, until
        # `recheck_key` finds the key accepted again.
        self._key_refused: AuthenticationError | None = None
        self._key_refusal = asyncio.Event()

    @property
    def key_refused(self) -> bool:
        """The server refused the API key (a 401): nothing more is sent with it."""
        return self._key_refused is not None

    async def key_refusal(self) -> None:
        """Returns once the server has refused the key (at once while it stays refused)."""
        await self._key_refusal.wait()

    async def recheck_key(self, request: Request) -> bool:
        """After the key was refused, `request` sent anyway, once, through the limiter: True,
        and sending resumes, when the server answered without refusing the key.

        For a long-lived caller (a service) whose operator may fix the key where the server
        keeps it: a one-shot run stops at the refusal instead. An answer that proves nothing
        about the key (a 429, a 5xx, no answer) keeps it refused.
        """
        if self._key_refused is None:
            return True
        permit = await self._limiter.acquire(self._cost(request))
        usage: Usage | None = None
        ending: Ending = "failed"
        try:
            outcome = await self._send(request)
            usage, ending = outcome.completion.usage, "ok"
            await self._succeeded(outcome)
        except APIError as error:
            usage, ending = _spent(error, self._retry.max_retry_wait)
            if not _accepts_key(error):
                return False
        finally:
            await self._limiter.release(permit, usage, outcome=ending)
        self._key_refused = None
        self._key_refusal.clear()
        return True

    def statistics(self) -> EngineStats:
        c = self._counters
        limiter = self._limiter.statistics()
        now = self._clock.now()
        outage = self._outage
        return EngineStats(
            submitted=c.submitted,
            sent=c.sent,
            done=c.done,
            failed=c.failed,
            in_flight=c.in_flight,
            waiting_retry=c.waiting_retry,
            retries=c.retries,
            http_429=c.http_429,
            http_429_holds=c.http_429_holds,
            input_tokens=c.input_tokens,
            output_tokens=c.output_tokens,
            elapsed_s=time.monotonic() - c.started,
            concurrency=limiter.concurrency,
            limits=limiter.limits,
            learned=limiter.learned,
            paused_s=limiter.pause_remaining,
            waiting_on=limiter.waiting_on,
            unreachable_s=outage.lasted(now) if outage.confirmed else 0.0,
            found=limiter.found,
            lowered=limiter.lowered,
            resent=0 if self._resent is None else self._resent(),
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
        workers = self._workers
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

    async def stream(
        self, request: Request, open_stream: OpenStream[Piece]
    ) -> AsyncGenerator[Piece, None]:
        """Pieces of one streamed answer (text, or what `open_stream`'s stream yields), retried
        while nothing has reached the caller.

        Once a piece has been yielded a retry would repeat it, so a later failure is raised.
        """
        job = _Job(request, 0)
        self._counters.submitted += 1
        while True:
            permit = await self._limiter.acquire(self._cost(request))
            await self._departing(request, permit)
            self._sending(job)
            usage: Usage | None = None
            ending: Ending = "failed"
            yielded = False
            verdict: float | APIError
            try:
                async with open_stream(request) as live:
                    async for piece in live:
                        yielded = True
                        yield piece
                    outcome = live.outcome()
                usage, ending = outcome.completion.usage, "ok"
                await self._succeeded(outcome)
                self._counters.done += 1
                return
            except APIError as error:
                usage, ending = _spent(error, self._retry.max_retry_wait)
                verdict = await self._judge(job, error, may_retry=not yielded)
                if isinstance(verdict, APIError):
                    self._counters.failed += 1
                    self._redactor.error(verdict)
                    raise verdict from None
            finally:
                self._counters.in_flight -= 1
                await self._limiter.release(permit, usage, outcome=ending)
            await self._wait_retry(verdict)

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

        waits = StoppableWaits(stop)

        async def halt(feeder: asyncio.Task[None]) -> None:
            """Once `stop` is set: read no more input, even if it is waiting for its next item,
            and send nothing more, even what waits for the limiter."""
            await stop.wait()
            feeder.cancel()
            waits.halt()

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
                outcome = await self._attempt(job, waits)
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

    async def _attempt(
        self, job: _Job, waits: StoppableWaits | None = None
    ) -> Result | float | None:
        """One send: a Result when the job is finished, the delay before its next attempt, or
        None when the map's stop came while it waited for the limiter (it was not sent)."""
        if (refused := self._refused_unsent(job)) is not None:
            return refused
        cost = self._cost(job.request)
        if waits is None:
            permit = await self._limiter.acquire(cost)
        elif (stoppable := await waits.acquire(self._limiter, cost)) is not None:
            permit = stoppable
        else:
            return None
        if (refused := self._refused_unsent(job)) is not None:  # it went down while we waited
            await self._limiter.release(permit, _NOTHING_USED, outcome="failed")
            return refused
        await self._departing(job.request, permit)
        # While the server answers there is no outage to check on (the common case: no clock).
        probe = self._outage.streak > 0 and self._outage.given_up(
            self._clock.now(), self._retry.max_retry_wait
        )
        self._outage.probing |= probe
        self._sending(job)
        usage: Usage | None = None
        ending: Ending = "failed"
        started = time.perf_counter()
        try:
            outcome = await self._send(job.request)
            usage, ending = outcome.completion.usage, "ok"
            await self._succeeded(outcome)
            return self._ok(job, outcome, started)
        except APIError as error:
            usage, ending = _spent(error, self._retry.max_retry_wait)
            verdict = await self._judge(job, error)
            return verdict if isinstance(verdict, float) else self._failed(job, verdict)
        except Exception as error:  # a user-supplied callable's own failure: report, don't retry
            return self._failed(job, error)
        finally:
            self._counters.in_flight -= 1
            if probe:
                self._outage.probing = False
            await self._limiter.release(permit, usage, outcome=ending)

    def _refused_unsent(self, job: _Job) -> Result | None:
        """The job's failure without a send, when a send could only fail: the key was refused,
        or the server has been down past the ceiling and another request is checking on it."""
        if self._key_refused is not None:
            # Sending more with a key the server refused only piles up 401s: the item fails
            # unsent, and `--retry-failed` sends it once the key is fixed.
            refused = self._key_refused
            message = f"not sent: the API key was refused earlier ({refused.message})"
            return self._failed(job, AuthenticationError(message, status_code=refused.status_code))
        outage = self._outage
        if outage.probing and outage.last_error is not None:
            now = self._clock.now()
            if outage.given_up(now, self._retry.max_retry_wait):
                error = self._retry.unreachable_error(
                    outage.last_error, outage.lasted(now), sent=job.reached > 0
                )
                return self._failed(job, error)
        return None

    async def _departing(self, request: Request, permit: Permit) -> None:
        """A request that waited for its permit may no longer be wanted (a gateway's client
        that left): its `before_send` raises, and the permit goes back unspent, unsent."""
        before_send = getattr(request, "before_send", None)
        if before_send is None:
            return
        try:
            await before_send()
        except BaseException:
            await self._limiter.release(permit, _NOTHING_USED, outcome="failed")
            raise

    def _sending(self, job: _Job) -> None:
        job.attempts += 1
        self._counters.in_flight += 1
        if job.attempts == 1:
            self._counters.sent += 1

    def _cost(self, request: Request) -> Cost:
        """What the request reserves: its own `cost` if it carries one (a user's callable
        does), else one request, its prompt's tokens and its output budget."""
        cost = getattr(request, "cost", None)
        if isinstance(cost, Cost):
            return cost
        return request_cost(request.messages, request.max_tokens)

    async def _succeeded(self, outcome: Outcome) -> None:
        self._outage.answered()
        self._refusals.answered(limited=False)
        completion = outcome.completion
        if completion.announced:
            await self._limiter.observe(completion.announced)
        usage = completion.usage
        if usage is not None:
            self._counters.input_tokens += usage.input_tokens
            self._counters.output_tokens += usage.output_tokens

    async def _judge(
        self, job: _Job, error: APIError, *, may_retry: bool = True
    ) -> float | APIError:
        """After a failed send: the delay before the job's next attempt, or the error to
        report. Tells the limiter what the failure says about the whole key."""
        if error.announced:
            await self._limiter.observe(error.announced)
        if isinstance(error, AuthenticationError):
            self._key_refused = error
            self._key_refusal.set()
        if not isinstance(error, ConnectError):
            job.reached += 1
        now = self._clock.now()
        if not is_outage(error):
            self._outage.answered()
        elif self._outage.failed(error, now, job):
            # The server is down for everyone: the pool waits for it (the limiter's cool-down
            # probes it, doubling), and the wait spends no item's attempts, up to the ceiling.
            await self._limiter.penalise(self._retry.pause_for(error))
            lasted = self._outage.lasted(now)
            if lasted > self._retry.max_retry_wait:
                return self._retry.unreachable_error(error, lasted, sent=job.reached > 0)
            if not may_retry:
                return error
            self._counters.retries += 1
            return 0.0
        if isinstance(error, RateLimitError):
            self._counters.http_429 += 1
            # A 429 holds every send only while most answers are 429s (the key's budget is
            # empty); one among answers that succeed holds only its own retry.
            holds = self._refusals.holds_key()
            self._refusals.answered(limited=True)
            # A wait past the ceiling fails the item as a quota error: no one else waits for it.
            if holds and (
                error.retry_after is None or error.retry_after <= self._retry.max_retry_wait
            ):
                self._counters.http_429_holds += 1
                await self._limiter.penalise(error.retry_after)
        job.charged += 1
        delay = self._retry.next_delay(error, job.charged, self._rng) if may_retry else None
        if delay is None:
            return self._retry.final_error(gave_up(error, job.reached))
        self._counters.retries += 1
        return delay

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
            provider_finish_reason=completion.provider_finish_reason,
            tool_calls=completion.tool_calls,
            index=job.index,
            value=outcome.value,
        )

    def _failed(self, job: _Job, error: Exception) -> Result:
        self._counters.failed += 1
        return Result(
            id=job.request.id or str(job.index),
            status="error",
            attempts=job.attempts,
            error=error_info(error, self._redactor),
            metadata=job.request.metadata,
            index=job.index,
            exception=_detached(error),
        )


def _spent(error: APIError, max_retry_wait: float) -> tuple[Usage | None, Ending]:
    """What a failed send used (a 429's server took nothing; otherwise unknown: the
    reservation stands) and how it ended, for the limiter."""
    usage = _NOTHING_USED if isinstance(error, RateLimitError) else None
    if isinstance(error, RateLimitError):
        # A wait past the ceiling is a quota for the day, not a pace the limiter should learn.
        waits_long = error.retry_after is not None and error.retry_after > max_retry_wait
        return usage, "failed" if waits_long else "limited"
    return usage, "truncated" if isinstance(error, TruncatedStreamError) else "failed"


def _accepts_key(error: APIError) -> bool:
    """Whether a failed answer still shows the key accepted: a client error other than a
    refusal (401, 403) or a 429 (which says nothing certain about the key)."""
    status = error.status_code or 0
    refused = isinstance(error, AuthenticationError) or status in (401, 403, 429)
    return 400 <= status < 500 and not refused


def _detached(error: Exception) -> Exception:
    """The error without its traceback and chained exceptions: their frames hold the request
    (its auth header too), and a gather of many failures would keep every one of them alive."""
    error.__context__ = error.__cause__ = None
    return error.with_traceback(None)


def error_info(error: BaseException, redactor: Redactor) -> ErrorInfo:
    """A failure as data, every secret hidden: a server's echo in an adapter's or an SDK's
    message, or what a user's own callable's exception quotes (an HTTP library's error names
    the URL, and Gemini's REST URL may carry `?key=`)."""
    status = error.status_code if isinstance(error, APIError) else None
    return ErrorInfo(type(error).__name__, redactor.error(error), status)


async def _aiter(items: Iterable[Request] | AsyncIterable[Request]) -> AsyncIterator[Request]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
