"""One ChatLLMGather's llmgather `Client`: built and entered on its limiter's home loop at first
use, closed by `close()`, or when the model is collected, or at exit."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from llmgather._client import Client
from llmgather._exchange import LiveStream
from llmgather._types import Completion, Request
from llmgather.langchain._loop import LoopThread, call_soon, home_of
from llmgather.limits import Limiter

_CLOSE_TIMEOUT_S = 10.0


class Session:
    """The client of one model, on `home` (the loop thread of `limiter`)."""

    def __init__(self, build: Callable[[], Client], limiter: Limiter) -> None:
        self.home: LoopThread = home_of(limiter)
        self._build = build
        self._box: list[Client] = []  # the entered client, once there is one
        self._lock: asyncio.Lock | None = None
        # Not a method of self: the finalizer must not keep the session alive.
        self._finalizer = weakref.finalize(self, _close, self.home, self._box)

    async def client(self) -> Client:
        """The entered client (on the home loop only: both the lock and the client live there)."""
        if self._box:
            return self._box[0]
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._box:
                client = self._build()
                await client.__aenter__()
                self._box.append(client)
        return self._box[0]

    def close(self) -> None:
        """Close the client (its connections, its embedded simulator); a later call reopens."""
        _close(self.home, self._box)

    async def aclose(self) -> None:
        if self._box:
            client = self._box.pop()
            await self.home.run(client.__aexit__())


def _close(home: LoopThread, box: list[Client]) -> None:
    if box:
        client = box.pop()
        call_soon(home, client.__aexit__, _CLOSE_TIMEOUT_S)


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


def opener(client: Client) -> Callable[[Request], AbstractAsyncContextManager[StreamWithEnding]]:
    """What `Engine.stream` opens for each attempt: the client's stream, with its ending."""

    @asynccontextmanager
    async def open_stream(request: Request) -> AsyncIterator[StreamWithEnding]:
        async with client._open_stream(request) as live:
            yield StreamWithEnding(live)

    return open_stream
