"""The one engine: sends requests through the limiter and the retry layer and turns every
input into exactly one Result (`map`), or streams one answer (`stream`).

    inputs ─▶ feeder ─▶ work queue ─▶ N workers ─▶ limiter ─▶ send ─▶ results
                 ▲                       │ transient error
                 │ window (backpressure) └─▶ sleeps in its own task, holding no worker
                 │                             and no slot, then rejoins the work queue
                 └── released when the caller takes a result

    _pipeline.py    one map: the feeder, the workers, the retries waiting, the stop
    _attempt.py     one request in flight, the permit it holds, what an attempt comes to
    _engine.py      one attempt and its judgement, the key's and the server's state, statistics

Memory is bounded by the window (admitted but not yet consumed), never by the input's size.
The engine is the only caller of the limiter, and talks to it only through the `Limiter`
protocol: it reserves each request's cost, settles it with the real usage, reports outages,
and 429s while most answers are 429s (`penalise`: see `limits.refusals`), cut-off streams
(the release's outcome) and the limits an answer announced (`observe`). The limiter may be
shared with other engines and other processes.
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
from decimal import Decimal
from typing import Protocol, TypeVar

from llmgather._attempt import (
    UNSENT,
    Attempted,
    CallerFailure,
    GiveUp,
    InFlight,
    PermitHold,
    RetryIn,
    Verdict,
    accepts_key,
    cached_result,
    failed_result,
    ok_result,
    reserved,
)
from llmgather._clock import Clock, SystemClock
from llmgather._config import DEFAULT_CONCURRENCY
from llmgather._errors import (
    APIError,
    AuthenticationError,
    BudgetExhaustedError,
    ConfigurationError,
    ConnectError,
    RateLimitError,
)
from llmgather._pipeline import Pipeline
from llmgather._redact import Redactor
from llmgather._retry import Outage, RetryPolicy, gave_up, is_outage
from llmgather._stop import StoppableWaits
from llmgather._types import Completion, Outcome, Request, Result
from llmgather.limits.base import Limiter
from llmgather.limits.refusals import RecentRefusals
from llmgather.pricing import STANDARD, Pricer
from llmgather.pricing.reserve import SpendLedger, capped_cost

Send = Callable[[Request], Awaitable[Outcome]]
"""Sends one request and returns its outcome, raising an APIError on failure."""

Piece = TypeVar("Piece", covariant=True)

# Why a callable is not run under a cost cap when its cost names no worst case.
UNCAPPED_CALL = (
    "not run: a cost cap (max_cost) needs each call's worst case, and this call's cost names "
    "none (a callable's price is not known here); HINT: pass cost=Cost(nano_usd=..., "
    "priced=...) to call()/map_calls(), its worst case in nano-dollars"
)


class LiveText(Protocol[Piece]):
    """What `open_stream` yields: pieces (text, or the raw bytes a gateway relays), then
    `outcome()` once exhausted."""

    def __aiter__(self) -> AsyncIterator[Piece]: ...

    def outcome(self) -> Outcome: ...


OpenStream = Callable[[Request], AbstractAsyncContextManager[LiveText[Piece]]]


class AnswerCache(Protocol):
    """What the engine asks before the limiter (`cache.BoundCache`): a request's key (None:
    the cache may not answer it), the answer kept under a key, and an answer to keep.

    Neither `look_up` nor `keep` raises for its store: a store that fails misses and loses
    what it was given (`cache.guard`), so an answer paid for stands whatever the cache does."""

    def key(self, request: Request) -> str | None: ...

    def look_up(self, key: str) -> Awaitable[Completion | None]: ...

    def keep(self, key: str, completion: Completion) -> Awaitable[None]: ...


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
    cached: int = 0  # items answered from the response cache (in `done`, never in `sent`)
    # Items a cost cap left unsent (budget_exhausted): never sent, so not in `failed` either.
    unsent: int = 0
    # What the ok answers cost (USD, exact), how many of them had a price, and the cost by
    # the model each was priced as.
    cost_usd: Decimal = Decimal(0)
    priced: int = 0
    cost_by_model: Mapping[str, Decimal] = field(default_factory=dict)


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
    cached: int = 0
    unsent: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    priced: int = 0
    cost_by_model: dict[str, Decimal] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def spent(self, model: str, cost: Decimal) -> None:
        self.cost_usd += cost
        self.priced += 1
        self.cost_by_model[model] = self.cost_by_model.get(model, Decimal(0)) + cost


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
        pricer: Pricer | None = None,
        capped: bool = False,
        cache: AnswerCache | None = None,
        default_max_tokens: int | None = None,
    ) -> None:
        """`resent` reads how many requests the transport under `send` resent on its own;
        `redactor` hides the secrets its owner knows from every failure it reports (without
        one, the shapes of keys and tokens are hidden); `pricer` gives each ok answer its cost.
        `capped`: the limiter holds a cost cap, so each request reserves its worst-case cost
        (priced by `pricer`; a prompt without max tokens at `default_max_tokens`, the
        provider's, which its adapter sends). `cache` answers a request it has seen before any permit is
        asked, and keeps clean answers."""
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._send = send
        self._limiter = limiter
        self._workers = workers
        self._retry = retry or RetryPolicy()
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._resent = resent
        self._pricer = pricer
        self._cache = cache
        self._redactor = redactor or Redactor()
        self._counters = _Counters()
        self._outage = Outage()
        self._refusals = RecentRefusals()
        # Set by the first 401: every later request would be refused the same way, until
        # `recheck_key` finds the key accepted again.
        self._key_refused: AuthenticationError | None = None
        self._key_refusal = asyncio.Event()
        if capped and pricer is None:
            raise ValueError("a cost cap needs a pricer")
        self._capped = capped
        self._default_max_tokens = default_max_tokens
        # Set by the first request the cost cap refused: nothing more is sent (the cap never
        # refills), and every item left fails at once, without a wait for any other limit.
        self._cap_exhausted: BudgetExhaustedError | None = None
        # Under a cap, where each send's reservation is recorded before it goes (a job's store).
        self.ledger: SpendLedger | None = None

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
        async with PermitHold(self._limiter, reserved(request)) as hold:
            hold.sending()
            try:
                outcome = await request.sent_by(self._send)
                hold.settle(outcome.completion.usage, "ok")
                await self._succeeded(outcome)
            except APIError as error:
                hold.settle_failure(error, self._retry.max_retry_wait)
                if not accepts_key(error):
                    return False
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
            cached=c.cached,
            unsent=c.unsent,
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
            cost_usd=c.cost_usd,
            priced=c.priced,
            cost_by_model=dict(c.cost_by_model),
        )

    async def run_one(self, request: Request, index: int = 0) -> Result:
        """Send one request through the limiter and retries; errors come back as a Result."""
        item = self._admit(request, index)
        while True:
            outcome = await self._attempt(item)
            if isinstance(outcome, Result):
                return outcome
            assert isinstance(outcome, RetryIn)  # only a map's stop leaves an item unsent
            await self._wait_retry(outcome.delay)

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
        results: asyncio.Queue[Result | None] = asyncio.Queue()
        pipeline = Pipeline(
            requests,
            results,
            workers=self._workers,
            window=window or max(2 * self._workers, 64),
            stop=stop or asyncio.Event(),
            admit=self._admit,
            attempt=self._attempt,
            wait_retry=self._wait_retry,
        )
        # Owned here: cancelled and awaited however the consumer leaves (an async generator
        # cannot hold a TaskGroup open across its yields).
        runner = asyncio.create_task(pipeline.run())
        try:
            while (result := await results.get()) is not None:
                pipeline.admitted.release()
                yield result
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
        item = self._admit(request, 0)
        if (hit := await self._cached(item)) is not None:
            self._counters.done += 1
            yield hit.text  # type: ignore[misc]  # only a prompt's text stream is keyed
            return
        while True:
            # As for a plain request: nothing is sent with a key the server refused, or to a
            # server down past the ceiling, whether so before the wait for a permit or after it.
            if (refused := self._refused_unsent(item)) is not None:
                raise _raised(refused)
            async with PermitHold(self._limiter, item.cost) as hold:
                if (refused := self._refused_unsent(item)) is not None:
                    raise _raised(refused)  # the permit goes back unspent
                if (check := request.before_send) is not None:
                    await check()  # raising withdraws it: the permit goes back unspent
                self._sending(item, hold)
                yielded = False
                try:
                    async with open_stream(request) as live:
                        async for piece in live:
                            yielded = True
                            yield piece
                        outcome = live.outcome()
                    hold.settle(outcome.completion.usage, "ok")
                    await self._succeeded(outcome)
                    self._counters.done += 1
                    if item.cache_key is not None and self._cache is not None:
                        await self._cache.keep(item.cache_key, outcome.completion)
                    return
                except APIError as error:
                    hold.settle_failure(error, self._retry.max_retry_wait)
                    verdict = await self._judge(item, error, may_retry=not yielded)
                    if isinstance(verdict, GiveUp):
                        raise _raised(self._failed(item, verdict.error)) from None
                finally:
                    self._counters.in_flight -= 1
            await self._wait_retry(verdict.delay)

    # -- one attempt ------------------------------------------------------------------------

    def _admit(self, request: Request, index: int) -> InFlight:
        self._counters.submitted += 1
        item = InFlight(request, index)
        if self._capped and request.cost is None:  # a user's callable names its own cost
            assert self._pricer is not None
            capped = capped_cost(
                item.cost, request, self._pricer, default_max_tokens=self._default_max_tokens
            )
            item.cost = capped or item.cost
        return item

    async def _attempt(self, item: InFlight, waits: StoppableWaits | None = None) -> Attempted:
        """One send of `item`, through the limiter (a wait that `waits` may end); the first is
        answered from the cache, if it has the answer, without a permit."""
        if item.attempts == 0 and self._cache is not None:
            started = time.perf_counter()
            if (hit := await self._cached(item)) is not None:
                self._counters.done += 1
                return cached_result(item, hit, started)
        if (refused := self._refused_unsent(item)) is not None:
            return refused
        try:
            return await self._attempt_under_permit(item, waits)
        except BudgetExhaustedError as error:  # only the limiter's acquire raises it
            self._cap_exhausted = error
            return self._failed(item, error)

    async def _attempt_under_permit(
        self, item: InFlight, waits: StoppableWaits | None
    ) -> Attempted:
        async with PermitHold(self._limiter, item.cost, waits) as hold:
            if hold.permit is None:
                return UNSENT
            if (refused := self._refused_unsent(item)) is not None:
                return refused  # it went down while we waited: the permit goes back unspent
            if (check := item.request.before_send) is not None:
                await check()  # raising withdraws it: the permit goes back unspent
            ledger, attempt = self.ledger, ""
            if ledger is not None and item.cost.nano_usd:
                attempt = f"{item.request.id or item.index}:{item.attempts + 1}"
                await ledger.reserved(attempt, item.cost.nano_usd)  # durable before the send
            # While the server answers there is no outage to check on (the common case: no
            # clock).
            outage = self._outage
            probe = outage.streak > 0 and outage.given_up(
                self._clock.now(), self._retry.max_retry_wait
            )
            outage.probing |= probe
            self._sending(item, hold)
            started = time.perf_counter()
            try:
                outcome = await item.request.sent_by(self._send)
                hold.settle(outcome.completion.usage, "ok")
                if outcome.keep_permit is not None:
                    outcome.keep_permit(hold.hand_over())  # an answer still to be read
                await self._succeeded(outcome)
                self._counters.done += 1
                if item.cache_key is not None:
                    assert self._cache is not None
                    await self._cache.keep(item.cache_key, outcome.completion)
                result = ok_result(item, outcome, started)
                if self._pricer is not None:
                    model = item.request.model or self._pricer.model
                    result.cost = self._pricer.cost(model, result.usage)
                    result.cost_basis = None if result.cost is None else STANDARD
                    if result.cost is not None:
                        self._counters.spent(model, result.cost)
                return result
            except APIError as error:
                hold.settle_failure(error, self._retry.max_retry_wait)
                verdict = await self._judge(item, error)
                if isinstance(verdict, RetryIn):
                    return verdict
                return self._failed(item, verdict.error)
            except CallerFailure as failure:  # a user's callable's own: not retried
                return self._failed(item, failure.error, as_raised=True)
            except Exception as error:
                return self._failed(item, error)
            finally:
                self._counters.in_flight -= 1
                if probe:
                    outage.probing = False
                if attempt and (priced := item.cost.priced) is not None and hold.usage is not None:
                    assert ledger is not None
                    ledger.settled(attempt, priced(hold.usage))  # else charged as reserved

    async def _cached(self, item: InFlight) -> Completion | None:
        """The cache's answer to `item`, before any permit; its key noted for keeping the
        answer it gets otherwise."""
        cache = self._cache
        if cache is None or item.cache_key is not None:
            return None
        item.cache_key = key = cache.key(item.request)
        if key is None:
            return None
        hit = await cache.look_up(key)
        if hit is not None:
            self._counters.cached += 1
        return hit

    def _refused_unsent(self, item: InFlight) -> Result | None:
        """The item's failure without a send, when a send could only fail: the key was refused,
        or the server has been down past the ceiling and another request is checking on it,
        or the cost cap is exhausted (or cannot price it)."""
        if self._cap_exhausted is not None:
            return self._failed(item, self._cap_exhausted)
        if self._capped and item.cost.priced is None and item.request.cost is None:
            model = item.request.model or (self._pricer.model if self._pricer else "")
            message = (
                f"not sent: no price is known for {model}, and a cost cap (--max-cost) "
                "sends nothing it cannot price; HINT: give its prices with --prices FILE"
            )
            return self._failed(item, ConfigurationError(message))
        if self._capped and item.request.cost is not None and not item.cost.nano_usd:
            # A callable's cost names no worst case: it would reserve nothing of the cap.
            return self._failed(item, ConfigurationError(UNCAPPED_CALL))
        if self._key_refused is not None:
            # Sending more with a key the server refused only piles up 401s: the item fails
            # unsent, and `--retry-failed` sends it once the key is fixed.
            refused = self._key_refused
            message = f"not sent: the API key was refused earlier ({refused.message})"
            return self._failed(item, AuthenticationError(message, status_code=refused.status_code))
        outage = self._outage
        if outage.probing and outage.last_error is not None:
            now = self._clock.now()
            if outage.given_up(now, self._retry.max_retry_wait):
                error = self._retry.unreachable_error(
                    outage.last_error, outage.lasted(now), sent=item.reached > 0
                )
                return self._failed(item, error)
        return None

    def _sending(self, item: InFlight, hold: PermitHold) -> None:
        hold.sending()
        item.attempts += 1
        self._counters.in_flight += 1
        if item.attempts == 1:
            self._counters.sent += 1

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

    async def _judge(self, item: InFlight, error: APIError, *, may_retry: bool = True) -> Verdict:
        """After a failed send: whether and when to send the item again. Tells the limiter
        what the failure says about the whole key."""
        if error.announced:
            await self._limiter.observe(error.announced)
        if isinstance(error, AuthenticationError):
            self._key_refused = error
            self._key_refusal.set()
        if not isinstance(error, ConnectError):
            item.reached += 1
        now = self._clock.now()
        if not is_outage(error):
            self._outage.answered()
        elif self._outage.failed(error, now, item):
            # The server is down for everyone: the pool waits for it (the limiter's cool-down
            # probes it, doubling), and the wait spends no item's attempts, up to the ceiling.
            await self._limiter.penalise(self._retry.pause_for(error))
            lasted = self._outage.lasted(now)
            if lasted > self._retry.max_retry_wait:
                return GiveUp(self._retry.unreachable_error(error, lasted, sent=item.reached > 0))
            if not may_retry:
                return GiveUp(error)
            self._counters.retries += 1
            return RetryIn(0.0)
        if isinstance(error, RateLimitError):
            await self._judge_429(error)
        item.charged += 1
        delay = self._retry.next_delay(error, item.charged, self._rng) if may_retry else None
        if delay is None:
            return GiveUp(self._retry.final_error(gave_up(error, item.reached)))
        self._counters.retries += 1
        return RetryIn(delay)

    async def _judge_429(self, error: RateLimitError) -> None:
        self._counters.http_429 += 1
        # A 429 holds every send only while most answers are 429s (the key's budget is
        # empty); one among answers that succeed holds only its own retry.
        holds = self._refusals.holds_key()
        self._refusals.answered(limited=True)
        # A wait past the ceiling fails the item as a quota error: no one else waits for it.
        if holds and (error.retry_after is None or error.retry_after <= self._retry.max_retry_wait):
            self._counters.http_429_holds += 1
            await self._limiter.penalise(error.retry_after)

    async def _wait_retry(self, delay: float) -> None:
        self._counters.waiting_retry += 1
        try:
            await self._clock.sleep(delay)
        finally:
            self._counters.waiting_retry -= 1

    def _failed(self, item: InFlight, error: Exception, *, as_raised: bool = False) -> Result:
        if isinstance(error, BudgetExhaustedError):
            self._counters.unsent += 1  # the cap's: left for a rerun, not a failure
        else:
            self._counters.failed += 1
        return failed_result(item, error, self._redactor, as_raised=as_raised)


def _raised(failed: Result) -> BaseException:
    """The exception a failed Result carries, for a stream to raise (it has no Result)."""
    assert failed.exception is not None
    return failed.exception
