"""One ChatLLMGather's link to its provider: built and entered on its limiter's home loop at
first use, closed by `close()`, or when the model is collected, or at exit."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from llmgather._exchange import LiveStream
from llmgather._link import Link
from llmgather._types import Completion, Request
from llmgather.langchain._loop import LoopThread, call_soon, home_of
from llmgather.limits import Limiter
from llmgather.providers.registry import Target

_CLOSE_TIMEOUT_S = 10.0


class Session:
    """The link of one model to `target`, on `home` (the loop thread of `limiter`)."""

    def __init__(self, target: Target, limiter: Limiter, build: Callable[[], Link]) -> None:
        self.target = target
        self.home: LoopThread = home_of(limiter)
        self._build = build
        self._box: list[tuple[Link, AsyncExitStack]] = []  # the entered link, once there is one
        self._lock: asyncio.Lock | None = None
        # Not a method of self: the finalizer must not keep the session alive.
        self._finalizer = weakref.finalize(self, _close, self.home, self._box)

    async def link(self) -> Link:
        """The entered link (on the home loop only: both the lock and the link live there)."""
        if self._box:
            return self._box[0][0]
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._box:
                stack = AsyncExitStack()
                link = await stack.enter_async_context(self._build())
                self._box.append((link, stack))
        return self._box[0][0]

    def close(self) -> None:
        """Close the link (its connections, its embedded simulator); a later call reopens."""
        _close(self.home, self._box)

    async def aclose(self) -> None:
        if self._box:
            _, stack = self._box.pop()
            await self.home.run(stack.aclose())


def _close(home: LoopThread, box: list[tuple[Link, AsyncExitStack]]) -> None:
    if box:
        _, stack = box.pop()
        call_soon(home, stack.aclose, _CLOSE_TIMEOUT_S)


class StreamWithEnding:
    """A live stream whose text pieces are followed by its whole Completion (tool calls and
    usage included), so the engine's retried stream hands both to the model."""

    def __init__(self, live: LiveStream) -> None:
        self._live = live

    async def __aiter__(self) -> AsyncIterator[str | Completion]:
        async for piece in self._live:
            yield piece
        yield self._live.outcome().completion

    def outcome(self) -> Any:
        return self._live.outcome()


def opener(link: Link) -> Callable[[Request], AbstractAsyncContextManager[StreamWithEnding]]:
    """What `Engine.stream` opens for each attempt: the link's stream, with its ending."""

    @asynccontextmanager
    async def open_stream(request: Request) -> AsyncIterator[StreamWithEnding]:
        async with link.open_stream(request) as live:
            yield StreamWithEnding(live)

    return open_stream
