"""The engine on a fake clock with an in-memory send: concurrency, retries, order, memory."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing
from typing import Any

import pytest

from llmgather import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ConnectError,
    Cost,
    Limits,
    LocalLimiter,
    RateLimitError,
    Request,
    RetryPolicy,
    ServerError,
    TruncatedStreamError,
)
from llmgather._engine import Engine
from llmgather._types import Completion, Outcome, Usage
from tests.fakeclock import FakeClock

Send = Callable[[Request], Awaitable[Outcome]]


class SpySend:
    """Answers after `latency` virtual seconds; records the real maximum concurrency."""

    def __init__(
        self,
        clock: FakeClock,
        latency: float = 1.0,
        failures: dict[str, list[Exception]] | None = None,
    ) -> None:
        self.clock = clock
        self.latency = latency
        self.failures = failures or {}
        self.active = 0
        self.max_active = 0
        self.calls: list[tuple[str, float]] = []

    async def __call__(self, request: Request) -> Outcome:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.calls.append((request.id, self.clock.elapsed))
        try:
            await self.clock.sleep(self.latency)
            queued = self.failures.get(request.id)
            if queued:
                raise queued.pop(0)
            return Outcome(Completion(text=f"answer {request.id}", usage=Usage(5, 7)))
        finally:
            self.active -= 1


def make_engine(clock: FakeClock, send: Send, **limits: Any) -> Engine:
    limiter = LocalLimiter(Limits(**limits), clock=clock, cool_down=1.0, max_cool_down=8.0)
    return Engine(
        send,
        limiter=limiter,
        workers=limiter.limits.concurrency,
        retry=RetryPolicy(max_attempts=4, base_delay=1.0, max_delay=8.0),
        clock=clock,
        rng=random.Random(0),
    )


def requests(n: int) -> Iterator[Request]:
    for i in range(n):
        yield Request.from_prompt(f"prompt {i}", id=f"r{i}")


async def collect(engine: Engine, items: object, **kwargs: int) -> list:
    return [result async for result in engine.map(items, **kwargs)]  # type: ignore[arg-type]


async def test_the_real_concurrency_never_exceeds_the_cap() -> None:
    clock = FakeClock()
    send = SpySend(clock)
    engine = make_engine(clock, send, concurrency=7)
    results = await clock.run(collect(engine, requests(50)))
    assert send.max_active == 7
    assert len(results) == 50 and all(r.ok for r in results)
    assert clock.elapsed == 8.0  # ceil(50 / 7) rounds of one second


async def test_every_input_yields_exactly_one_result_with_its_id() -> None:
    clock = FakeClock()
    failures = {
        "r3": [BadRequestError("no", status_code=400)],
        "r5": [ServerError("x", status_code=500)],
    }
    send = SpySend(clock, failures=failures)
    engine = make_engine(clock, send, concurrency=4)
    results = await clock.run(collect(engine, requests(10)))
    assert sorted(r.id for r in results) == [f"r{i}" for i in range(10)]
    by_id = {r.id: r for r in results}
    assert by_id["r3"].status == "error" and by_id["r3"].attempts == 1
    assert by_id["r3"].error is not None and by_id["r3"].error.type == "BadRequestError"
    assert by_id["r3"].error.status_code == 400
    assert by_id["r5"].ok and by_id["r5"].attempts == 2
    stats = engine.statistics()
    assert (stats.done, stats.failed, stats.retries) == (9, 1, 1)


async def test_a_waiting_retry_holds_no_worker_and_no_slot() -> None:
    clock = FakeClock()
    send = SpySend(
        clock, failures={"r0": [RateLimitError("wait", status_code=429, retry_after=10)]}
    )
    limiter = LocalLimiter(Limits(concurrency=1), clock=clock)

    async def no_pause(retry_after: float | None) -> None:  # isolate the use of the one slot
        pass

    limiter.penalise = no_pause
    engine = Engine(
        send, limiter=limiter, workers=1, retry=RetryPolicy(), clock=clock, rng=random.Random(0)
    )
    results = await clock.run(collect(engine, requests(3)))
    order = [r.id for r in results]
    assert order == ["r1", "r2", "r0"]  # r1 and r2 ran while r0 waited its 10 s
    r0_calls = [t for rid, t in send.calls if rid == "r0"]
    assert r0_calls[1] - r0_calls[0] >= 11.0  # 1 s latency + at least the 10 s hint


async def test_a_429_pauses_everyone_for_its_retry_after() -> None:
    clock = FakeClock()
    send = SpySend(clock, failures={"r0": [RateLimitError("wait", status_code=429, retry_after=5)]})
    engine = make_engine(clock, send, concurrency=1)
    results = await clock.run(collect(engine, requests(2)))
    assert all(r.ok for r in results)
    start_of_r1 = next(t for rid, t in send.calls if rid == "r1")
    assert start_of_r1 >= 6.0  # r0 answered 429 at t=1, then nothing was sent for 5 s
    assert engine.statistics().http_429 == 1


async def test_retries_stop_at_max_attempts_with_the_last_error() -> None:
    clock = FakeClock()
    send = SpySend(clock, failures={"r0": [ServerError("boom", status_code=500) for _ in range(9)]})
    engine = make_engine(clock, send)
    (result,) = await clock.run(collect(engine, requests(1)))
    assert result.status == "error" and result.attempts == 4
    assert result.error is not None and result.error.type == "ServerError"


async def test_results_stream_with_bounded_memory() -> None:
    clock = FakeClock()
    send = SpySend(clock, latency=0.1)
    engine = make_engine(clock, send, concurrency=4)
    pulled = 0
    consumed = 0
    max_ahead = 0

    def source() -> Iterator[Request]:
        nonlocal pulled
        for request in requests(1000):
            pulled += 1
            yield request

    async def consume() -> None:
        nonlocal consumed, max_ahead
        async for _ in engine.map(source(), window=16):
            consumed += 1
            max_ahead = max(max_ahead, pulled - consumed)

    await clock.run(consume())
    assert consumed == 1000
    assert max_ahead <= 17  # the window, plus the one the feeder holds while it waits


async def test_breaking_out_early_stops_the_pipeline() -> None:
    clock = FakeClock()
    send = SpySend(clock)
    engine = make_engine(clock, send, concurrency=4)

    async def first_three() -> list[str]:
        seen = []
        async with aclosing(engine.map(requests(10_000))) as results:
            async for result in results:
                seen.append(result.id)
                if len(seen) == 3:
                    break
        return seen

    seen = await clock.run(first_three())
    assert len(seen) == 3
    await asyncio.sleep(0)
    assert send.active == 0 and len(send.calls) < 100


async def test_an_async_iterable_input_works() -> None:
    clock = FakeClock()
    engine = make_engine(clock, SpySend(clock), concurrency=3)

    async def source():  # type: ignore[no-untyped-def]
        for request in requests(5):
            yield request

    results = await clock.run(collect(engine, source()))
    assert sorted(r.id for r in results) == [f"r{i}" for i in range(5)]


async def test_a_failing_input_iterable_raises_its_own_error() -> None:
    clock = FakeClock()
    engine = make_engine(clock, SpySend(clock))

    def broken() -> Iterator[Request]:
        yield Request.from_prompt("fine", id="a")
        raise ValueError("the input broke")

    try:
        await clock.run(collect(engine, broken()))
    except ValueError as error:
        assert "the input broke" in str(error)
    else:
        raise AssertionError("expected the input's error")


async def test_run_one_retries_then_succeeds() -> None:
    clock = FakeClock()
    send = SpySend(clock, failures={"x": [ServerError("a", status_code=502)]})
    engine = make_engine(clock, send)
    result = await clock.run(engine.run_one(Request.from_prompt("p", id="x")))
    assert result.ok and result.attempts == 2 and result.text == "answer x"
    assert result.usage == Usage(5, 7)


async def map_with_stop_at(
    clock: FakeClock, engine: Engine, items: Iterator[Request], seconds: float
) -> list:
    """Every result of `engine.map(items)`, with its stop set at `seconds` of virtual time."""
    stop = asyncio.Event()

    async def stop_at() -> None:
        await clock.sleep(seconds)
        stop.set()

    stopper = asyncio.ensure_future(stop_at())
    results = [r async for r in engine.map(items, stop=stop)]
    await stopper
    return results


async def test_a_stop_sends_nothing_more_and_lets_what_is_on_the_wire_finish() -> None:
    clock = FakeClock()
    send = SpySend(clock)
    engine = make_engine(clock, send, concurrency=2)

    results = await clock.run(map_with_stop_at(clock, engine, requests(20), 1.5))
    # Two answered at t=1, two more were on the wire when the stop came at t=1.5.
    assert sorted(r.id for r in results) == ["r0", "r1", "r2", "r3"]
    assert len(send.calls) == 4 and clock.elapsed == 2.0


async def test_a_stop_does_not_wait_for_a_pending_retry() -> None:
    clock = FakeClock()
    send = SpySend(clock, failures={"r0": [ServerError("down", status_code=503, retry_after=50)]})
    engine = make_engine(clock, send, concurrency=4)
    stop = asyncio.Event()

    async def run() -> list:
        results = []
        async for result in engine.map(requests(2), stop=stop):
            results.append(result)
            stop.set()  # r1 is in; r0 waits 50 s for its retry
        return results

    results = await clock.run(run())
    assert [r.id for r in results] == ["r1"] and clock.elapsed < 2.0
    assert [rid for rid, _ in send.calls] == ["r0", "r1"]


async def test_a_429_that_asks_for_longer_than_the_retry_ceiling_pauses_no_one() -> None:
    clock = FakeClock()
    daily = RateLimitError("quota for the day", status_code=429, retry_after=3600)
    send = SpySend(clock, failures={"r0": [daily]})
    engine = make_engine(clock, send, concurrency=1)
    results = await clock.run(collect(engine, requests(2)))
    by_id = {r.id: r for r in results}
    assert by_id["r0"].error is not None and by_id["r0"].error.type == "QuotaExhaustedError"
    assert by_id["r1"].ok and clock.elapsed == 2.0  # r1 went at t=1, not an hour later


async def test_a_failing_input_iterable_first_delivers_what_was_sent() -> None:
    clock = FakeClock()
    send = SpySend(clock)
    engine = make_engine(clock, send)

    def broken() -> Iterator[Request]:
        yield Request.from_prompt("fine", id="a")
        yield Request.from_prompt("fine", id="b")
        raise ValueError("the input broke")

    async def run() -> tuple[list[str], BaseException | None]:
        seen: list[str] = []
        try:
            async for result in engine.map(broken()):
                seen.append(result.id)
        except ValueError as error:
            return seen, error
        return seen, None

    seen, error = await clock.run(run())
    assert sorted(seen) == ["a", "b"] and error is not None


async def test_a_429_without_a_hint_holds_everyone_for_a_cool_down() -> None:
    clock = FakeClock()
    bare = RateLimitError("slow down", status_code=429, retry_after=None)
    send = SpySend(clock, failures={"r0": [bare]})
    engine = make_engine(clock, send, concurrency=1)
    results = await clock.run(collect(engine, requests(2)))
    assert all(r.ok for r in results)
    start_of_r1 = next(t for rid, t in send.calls if rid == "r1")
    assert start_of_r1 >= 2.0  # r0's 429 at t=1, then the base delay (1 s) for everyone


async def test_a_stop_ends_the_map_even_while_the_input_waits_for_its_next_item() -> None:
    clock = FakeClock()
    engine = make_engine(clock, SpySend(clock))
    stop = asyncio.Event()

    async def live_source() -> AsyncIterator[Request]:
        yield Request.from_prompt("first", id="a")
        await asyncio.Event().wait()  # a producer with nothing more for now
        yield Request.from_prompt("never", id="b")  # pragma: no cover

    async def run() -> list[str]:
        seen = []
        async for result in engine.map(live_source(), stop=stop):
            seen.append(result.id)
            stop.set()
        return seen

    assert await clock.run(run()) == ["a"]


async def test_a_request_waiting_for_the_limiter_when_stop_comes_is_not_sent() -> None:
    clock = FakeClock()
    send = SpySend(clock)
    engine = make_engine(clock, send, concurrency=4)
    await engine._limiter.penalise(10.0)

    results = await clock.run(map_with_stop_at(clock, engine, requests(3), 1.0))
    assert results == [] and send.calls == []


async def test_after_a_401_nothing_more_is_sent_and_every_item_says_why() -> None:
    clock = FakeClock()
    refused = {f"r{i}": [AuthenticationError("bad key", status_code=401)] for i in range(2)}
    send = SpySend(clock, failures=refused)
    engine = make_engine(clock, send, concurrency=2)
    results = await clock.run(collect(engine, requests(10)))
    assert len(send.calls) == 2 and len(results) == 10
    assert all(r.error is not None and r.error.type == "AuthenticationError" for r in results)
    unsent = [r for r in results if r.attempts == 0]
    assert len(unsent) == 8 and all("not sent" in r.error.message for r in unsent if r.error)


async def test_after_a_401_a_stream_is_not_opened_either() -> None:
    clock = FakeClock()
    refused = {"r0": [AuthenticationError("bad key", status_code=401)]}
    engine = make_engine(clock, SpySend(clock, failures=refused), concurrency=1)
    await clock.run(collect(engine, requests(1)))
    opened: list[Request] = []

    @contextlib.asynccontextmanager
    async def open_stream(request: Request) -> AsyncIterator[Any]:
        opened.append(request)
        raise AssertionError("a stream was opened with a refused key")
        yield

    async def read() -> list[Any]:
        return [piece async for piece in engine.stream(next(requests(1)), open_stream)]

    with pytest.raises(AuthenticationError, match="not sent: the API key was refused"):
        await clock.run(read())
    assert opened == []


# -- a server that goes away (issue 9) ---------------------------------------------------------


class FlakyServer:
    """Answers after `latency`, except while it is down: then every request fails at once, the
    way `error()` says (connections refused, or 503s with no Retry-After)."""

    def __init__(
        self,
        clock: FakeClock,
        error: Callable[[], Exception],
        down_from: float = 0.0,
        down_until: float = float("inf"),
        latency: float = 1.0,
    ) -> None:
        self.clock = clock
        self.error = error
        self.down_from = down_from
        self.down_until = down_until
        self.latency = latency
        self.calls: list[tuple[str, float]] = []

    def down(self) -> bool:
        return self.down_from <= self.clock.elapsed < self.down_until

    async def __call__(self, request: Request) -> Outcome:
        self.calls.append((request.id, self.clock.elapsed))
        if self.down():
            await self.clock.sleep(0.01)
            raise self.error()
        await self.clock.sleep(self.latency)
        return Outcome(Completion(text=f"answer {request.id}", usage=Usage(5, 7)))


OUTAGES = {
    "refused": lambda: ConnectError("cannot connect to 127.0.0.1:8000 (Connection refused)"),
    "503": lambda: ServerError("Loading model", status_code=503),
}


def real_engine(clock: FakeClock, send: Send, concurrency: int = 4) -> Engine:
    """The defaults a user gets: 6 attempts, a 300 s retry ceiling, a 0.5-30 s cool-down."""
    limiter = LocalLimiter(Limits(concurrency=concurrency), clock=clock)
    return Engine(send, limiter=limiter, workers=concurrency, clock=clock, rng=random.Random(1))


@pytest.mark.parametrize("kind", OUTAGES)
async def test_a_server_restarted_within_two_minutes_loses_nothing(kind: str) -> None:
    clock = FakeClock()
    server = FlakyServer(clock, OUTAGES[kind], down_from=3.0, down_until=120.0)
    engine = real_engine(clock, server)
    results = await clock.run(collect(engine, requests(40)))
    assert sorted(r.id for r in results if r.ok) == sorted(f"r{i}" for i in range(40))
    # The pool waited for the server together: a few probes per cool-down, not every item
    # retrying on its own until its attempts ran out.
    during = [t for _, t in server.calls if 3.0 <= t < 120.0]
    assert len(during) <= 4 * 12
    stats = engine.statistics()
    assert stats.failed == 0 and stats.sent == 40 and stats.unreachable_s == 0.0


async def test_during_an_outage_the_statistics_say_so() -> None:
    clock = FakeClock()
    server = FlakyServer(clock, OUTAGES["refused"], down_from=0.0)
    engine = real_engine(clock, server)
    runner = asyncio.ensure_future(collect(engine, requests(8)))
    await clock.advance(60.0)
    stats = engine.statistics()
    assert 55.0 <= stats.unreachable_s <= 60.0 and stats.failed == 0
    assert stats.paused_s > 0.0
    runner.cancel()
    await asyncio.wait((runner,))


@pytest.mark.parametrize("kind", OUTAGES)
async def test_a_server_down_past_the_retry_ceiling_fails_the_items_saying_so(kind: str) -> None:
    clock = FakeClock()
    server = FlakyServer(clock, OUTAGES[kind])
    engine = real_engine(clock, server)
    results = await clock.run(collect(engine, requests(200)))
    assert len(results) == 200 and not any(r.ok for r in results)
    for result in results:
        assert result.error is not None
        assert result.error.type == ("ConnectError" if kind == "refused" else "ServerError")
        assert "unreachable for 3" in result.error.message  # 300 s and a little more
        assert "longer than the retry ceiling of 300s" in result.error.message
    # Past the ceiling, one request at a time checks on the server; the rest fail unsent.
    assert engine.statistics().sent < 200
    assert 300.0 < clock.elapsed < 300.0 + 2 * 30.0 + 5.0


async def test_one_item_failing_alone_still_spends_its_attempts() -> None:
    clock = FakeClock()
    refused = [OUTAGES["refused"]() for _ in range(10)]
    send = SpySend(clock, failures={"r0": refused})
    engine = make_engine(clock, send, concurrency=4)
    results = await clock.run(collect(engine, requests(10)))
    by_id = {r.id: r for r in results}
    assert by_id["r0"].error is not None and by_id["r0"].attempts == 4
    assert "unreachable" not in by_id["r0"].error.message
    assert sum(r.ok for r in results) == 9 and clock.elapsed < 60.0


def closed_after_the_request() -> Exception:
    return APIConnectionError("the server closed the connection without answering")


async def test_a_server_that_closes_each_connection_after_the_request_spends_attempts() -> None:
    """It received every request (and may bill them): each failure spends an attempt, so
    `max_attempts` bounds what is sent, and no one waits out the retry ceiling."""
    clock = FakeClock()
    server = FlakyServer(clock, closed_after_the_request)
    engine = real_engine(clock, server)
    results = await clock.run(collect(engine, requests(8)))
    assert len(server.calls) == 8 * 6 and all(r.attempts == 6 for r in results)
    for result in results:
        assert result.error is not None and result.error.type == "APIConnectionError"
        assert result.error.message == (
            "sent 6 times; the server closed the connection without answering"
        )
    assert engine.statistics().paused_s == 0.0 and engine._limiter.statistics().penalties == 0
    assert clock.elapsed < 0.5 + 1 + 2 + 4 + 8 + 1.0  # the backoff's caps, not 300 s


async def test_a_503_that_says_when_to_come_back_spends_attempts() -> None:
    clock = FakeClock()
    busy = FlakyServer(clock, lambda: ServerError("busy", status_code=503, retry_after=1.0))
    engine = real_engine(clock, busy)
    results = await clock.run(collect(engine, requests(8)))
    assert len(busy.calls) == 8 * 6 and all(r.attempts == 6 for r in results)
    assert all(r.error is not None and r.error.message == "busy" for r in results)
    assert clock.elapsed < 6 * 2.2


async def test_a_reset_now_and_then_pauses_no_one() -> None:
    clock = FakeClock()
    failures = {f"r{i}": [OUTAGES["refused"]()] for i in range(0, 40, 7)}
    send = SpySend(clock, failures=failures)
    engine = make_engine(clock, send, concurrency=4)
    results = await clock.run(collect(engine, requests(40)))
    assert all(r.ok for r in results)
    assert engine.statistics().paused_s == 0.0 and engine._limiter.statistics().penalties == 0


# -- a server that cuts the running stream when a new request arrives (issue 9) ------------


class CuttingServer:
    """llama-cpp-python's server: a new request cuts off every stream still running."""

    def __init__(self, clock: FakeClock, latency: float = 1.0) -> None:
        self.clock = clock
        self.latency = latency
        self.cutting = True
        self.running: set[int] = set()
        self.cut: set[int] = set()
        self.max_active = 0
        self._next = 0

    async def __call__(self, request: Request) -> Outcome:
        me = self._next
        self._next += 1
        if self.cutting:
            self.cut |= self.running
        self.running.add(me)
        self.max_active = max(self.max_active, len(self.running))
        try:
            await self.clock.sleep(self.latency)
        finally:
            self.running.discard(me)
        if me in self.cut:
            raise TruncatedStreamError("the stream ended before its finish_reason")
        return Outcome(Completion(text="ok", usage=Usage(5, 7)))


async def test_streams_cut_by_each_new_request_lower_the_concurrency_until_they_pass() -> None:
    clock = FakeClock()
    server = CuttingServer(clock)
    engine = real_engine(clock, server)
    results = await clock.run(collect(engine, requests(20)))
    assert sum(r.ok for r in results) == 20
    assert engine.statistics().concurrency < 4


async def test_the_concurrency_comes_back_once_streams_pass_again() -> None:
    clock = FakeClock()
    server = CuttingServer(clock)
    engine = real_engine(clock, server)
    await clock.run(collect(engine, requests(20)))
    assert engine.statistics().concurrency < 4
    server.cutting = False
    server.max_active = 0
    results = await clock.run(collect(engine, requests(200)))
    assert all(r.ok for r in results)
    assert engine.statistics().concurrency == 4 and server.max_active == 4


# -- the engine's side of the limiter protocol ---------------------------------------------


class Announcing(SpySend):
    """Answers with the limits its headers would announce, on answers and on errors."""

    async def __call__(self, request: Request) -> Outcome:
        self.calls.append((request.id, self.clock.elapsed))
        await self.clock.sleep(self.latency)
        if request.id == "r0":
            error = RateLimitError("slow down", status_code=429, retry_after=0.5)
            error.announced = {"tpm": 6000}
            raise error
        return Outcome(Completion(text="ok", usage=Usage(5, 7), announced={"rpm": 60}))


async def test_limits_announced_on_answers_and_errors_reach_the_limiter() -> None:
    clock = FakeClock()
    send = Announcing(clock, latency=0.1)
    engine = make_engine(clock, send, concurrency=4, burst_seconds=1)
    results = await clock.run(collect(engine, requests(6)))
    assert sum(r.ok for r in results) == 5  # r0 refused again and again, then given up
    stats = engine.statistics()
    assert stats.learned == {"rpm": 60, "tpm": 6000} and stats.limits == stats.learned
    # Once rpm=60 was announced (t = 0.1), the sends went one a second.
    later = sorted(t for _, t in send.calls if t > 0.1)
    assert all(b - a >= 1.0 - 1e-9 for a, b in itertools.pairwise(later))


async def test_the_engine_sizes_its_own_pool_whatever_the_limiters_cap() -> None:
    clock = FakeClock()
    send = SpySend(clock)
    limiter = LocalLimiter(Limits(concurrency=10), clock=clock)
    engine = Engine(send, limiter=limiter, workers=3, clock=clock, rng=random.Random(0))
    results = await clock.run(collect(engine, requests(12)))
    assert len(results) == 12 and send.max_active == 3 and clock.elapsed == 4.0


async def test_a_request_that_carries_its_cost_reserves_it() -> None:
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Priced(Request):
        cost: Cost

    clock = FakeClock()
    send = SpySend(clock, latency=0.0)
    engine = make_engine(clock, send, otpm=600, burst_seconds=1)  # 10 output tokens a second
    items = [Priced(messages=(), id=f"p{i}", cost=Cost(output_tokens=10)) for i in range(3)]
    results = await clock.run(collect(engine, items))
    # each reserves its 10 and uses 7 (the spy's usage): 0.7 s of refill between sends
    assert [t for _, t in send.calls] == pytest.approx([0.0, 0.7, 1.4])
    assert all(r.ok for r in results)


async def test_the_statistics_count_items_sent_not_items_submitted() -> None:
    clock = FakeClock()
    refused = {"r0": [AuthenticationError("bad key", status_code=401)]}
    engine = make_engine(clock, SpySend(clock, failures=refused), concurrency=1)
    await clock.run(collect(engine, requests(5)))
    stats = engine.statistics()
    assert (stats.submitted, stats.sent, stats.failed) == (5, 1, 5)
