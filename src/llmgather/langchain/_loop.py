"""A limiter's home: the one event loop, on a thread of its own, that drives a llmgather limiter
and the clients that share it, whoever calls from whichever loop or thread.

A `LocalLimiter` serves callers in one event loop (its lock and wake-ups belong to the loop that
first waits on them), and a client's connection pool belongs to the loop that opened it. LangChain
calls from anywhere: `invoke` from plain threads with no loop (its sync `batch` runs them on a
thread pool), `ainvoke` from whatever loop the caller runs, a new one per test or per request.
So every call is handed to the limiter's home loop and its answer handed back: one thread hop per
call, and one budget for the whole process whatever mix of loops and threads calls.

    home = home_of(limiter)              # the same LoopThread for the same limiter, always
    answer = await home.run(coroutine)   # from any loop (or from the home loop itself)
    answer = home.run_sync(coroutine)    # from a thread with no running loop
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

# The homes of the limiters in use, one per limiter: the process-wide fact that a limiter
# lives in one loop. Weak keys, so a limiter's home ends (its thread stops) with the limiter.
_HOMES: weakref.WeakKeyDictionary[Any, LoopThread] = weakref.WeakKeyDictionary()
_HOMES_LOCK = threading.Lock()


def home_of(limiter: Any) -> LoopThread:
    """The loop thread that drives `limiter`, started on first use."""
    with _HOMES_LOCK:
        home = _HOMES.get(limiter)
        if home is None or home.stopped:
            home = LoopThread(f"llmgather-home-{id(limiter):x}")
            _HOMES[limiter] = home
            # Stops the thread when the limiter is collected (or at exit): not a bound method
            # of anything that holds the limiter, so the limiter can be collected.
            weakref.finalize(limiter, home.stop)
        return home


class _End:
    """Marks the end of a bridged stream."""


_END = _End()


class LoopThread:
    """An event loop running forever on a daemon thread, started at construction."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self.stopped = False
        # Tasks started from the loop's own thread, held until they end: the loop keeps only
        # a weak reference to a task, so one nobody holds may be collected half-way.
        self._background: set[asyncio.Task[Any]] = set()
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def here(self) -> bool:
        """Whether the caller runs on this loop's thread."""
        return threading.current_thread() is self._thread

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self.stopped:
            coroutine.close()
            raise RuntimeError("this llmgather loop thread is stopped (its model was closed)")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def start_soon(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Start `coroutine` on this loop without waiting for it, from the loop's own thread."""
        task = self._loop.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Await `coroutine` on the home loop from any loop; cancelling the caller cancels it."""
        if self.here():
            return await coroutine
        return await asyncio.wrap_future(self.submit(coroutine))

    def run_sync(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the home loop and wait for it, from a thread outside it."""
        if self.here():
            coroutine.close()
            raise RuntimeError(
                "a sync LangChain call (invoke, stream, batch) was made from inside an async "
                "one on the same model; use ainvoke/astream/abatch there"
            )
        return self.submit(coroutine).result()

    async def aiterate(self, items: Callable[[], AsyncIterator[T]]) -> AsyncIterator[T]:
        """The items of `items()`, produced on the home loop, as they come, in the caller's loop."""
        if self.here():
            async for item in items():
                yield item
            return
        caller = asyncio.get_running_loop()
        inbox: asyncio.Queue[Any] = asyncio.Queue()

        def deliver(item: Any) -> None:
            caller.call_soon_threadsafe(inbox.put_nowait, item)

        producer = self.submit(_produce(items, deliver))
        try:
            while (item := await inbox.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            producer.cancel()  # the consumer stopped early: stop reading the answer

    def iterate(self, items: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
        """The items of `items()`, produced on the home loop, for a thread with no loop."""
        if self.here():
            raise RuntimeError("a sync stream was read from inside the model's own loop")
        inbox: queue.Queue[Any] = queue.Queue()
        producer = self.submit(_produce(items, inbox.put))
        try:
            while (item := inbox.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            producer.cancel()

    def stop(self) -> None:
        """Stop the loop (what runs on it is dropped); safe to call twice or from the thread."""
        if self.stopped:
            return
        self.stopped = True
        with contextlib.suppress(RuntimeError):  # the loop was closed already (at exit)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if not self.here():
            self._thread.join(timeout=5)


async def _produce(items: Callable[[], AsyncIterator[Any]], deliver: Callable[[Any], None]) -> None:
    try:
        stream = items()
        try:
            async for item in stream:
                deliver(item)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # handed to the consumer, who raises it in its own frame
        deliver(exc)
        return
    deliver(_END)


def call_soon(home: LoopThread, make: Callable[[], Awaitable[None]], timeout: float) -> None:
    """Run `make()` on `home` and wait at most `timeout` seconds (for closing at exit or GC)."""
    if home.stopped:
        return

    async def run() -> None:
        await make()

    if home.here():
        home.start_soon(run())  # it cannot wait for itself
        return
    with contextlib.suppress(Exception):
        home.submit(run()).result(timeout=timeout)
