"""The keep-alive pool: idle connections by origin, and a bound on those open at once."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from llmgather._errors import RequestTimeoutError

if TYPE_CHECKING:
    from llmgather.transport.http11.connection import Connection
    from llmgather.transport.http11.wire import Origin


class Pool:
    """Idle connections by origin, and a count of those open, bounded by `limit`."""

    def __init__(self, limit: int) -> None:
        self._limit = max(1, limit)
        self._idle: dict[Origin, deque[Connection]] = {}
        self._open = 0
        self._live: set[Connection] = set()  # every open connection, idle or busy
        self._waiters: deque[asyncio.Future[None]] = deque()

    def take_idle(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()  # the most recently used: the least likely to be closed
            if connection.reusable():
                return connection
            connection.close()
        return None

    async def idle_or_room(
        self, origin: Origin, deadline: float, *, fresh: bool
    ) -> Connection | None:
        """An idle connection to `origin` as soon as one is given back, or room for a new one
        (counted open from now: None), whichever comes first; waits at most until `deadline`."""
        loop = asyncio.get_running_loop()
        while True:
            connection = None if fresh else self.take_idle(origin)
            if connection is not None:
                return connection
            if self._open < self._limit:
                self._open += 1
                return None
            if self._evict_idle():  # idle to another origin (or, when `fresh`, to this one)
                continue
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, but leaving: the room or connection passes on
                if isinstance(exc, TimeoutError):
                    raise RequestTimeoutError(
                        f"no free connection within the timeout ({self._limit} all busy)"
                    ) from None
                raise
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def unreserve(self) -> None:
        self._open -= 1
        self._wake_one()

    def give_back(self, connection: Connection) -> None:
        self._idle.setdefault(connection.origin, deque()).append(connection)
        self._wake_one()

    def opened(self, connection: Connection) -> None:
        self._live.add(connection)

    def dropped(self, connection: Connection) -> None:
        """A connection closed (by either side): one fewer open."""
        self._live.discard(connection)
        self._open -= 1
        self._wake_one()

    def close_all(self) -> list[Connection]:
        """Close every open connection, busy or idle; returns them, to wait for their end."""
        self._idle.clear()
        closing = list(self._live)
        for connection in closing:
            connection.close()
        return closing

    def _evict_idle(self) -> bool:
        """Close an idle connection (to any origin) to make room for a new one."""
        for idle in self._idle.values():
            if idle:
                idle.popleft().close()
                return True
        return False

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
