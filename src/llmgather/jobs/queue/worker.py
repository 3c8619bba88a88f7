"""A worker's side of the queue (`llmgather worker`): take tasks, send them, write each result
back before acknowledging its task. See `llmgather.jobs.queue`."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from llmgather._errors import RedisUnavailableError
from llmgather._redis import connect, retried
from llmgather._types import Request, Result
from llmgather.jobs.queue.wire import (
    GROUP,
    READ_BLOCK_MS,
    call_retried,
    decode,
    ensure_group,
    queue_keys,
    request_from_wire,
    result_to_wire,
)

logger = logging.getLogger("llmgather")
T = TypeVar("T")

DEFAULT_RECLAIM_AFTER_S = 30.0


@dataclass(slots=True)
class WorkerCounts:
    done: int = 0
    failed: int = 0
    reclaimed: int = 0
    http_429: int = 0


class QueueWorker:
    """A worker's side: read tasks, send them through `client`, write each result back, then
    acknowledge the task. `run()` returns when `stop` is set (what is in flight finishes), or
    after `idle_exit` seconds with nothing to do."""

    def __init__(
        self,
        url: str,
        client: Any,
        *,
        name: str,
        consumer: str | None = None,
        capacity: int = 64,
        reclaim_after: float = DEFAULT_RECLAIM_AFTER_S,
        idle_exit: float | None = None,
    ) -> None:
        self.url = url
        self.name = name
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.capacity = capacity
        self.reclaim_after = reclaim_after
        self.idle_exit = idle_exit
        self.client = client
        self.counts = WorkerCounts()
        self.stop = asyncio.Event()
        self._prefix, self._tasks = queue_keys(name)
        self._redis: Any = connect(url, what="--queue")
        self._in_progress: dict[str, tuple[str, str]] = {}  # task id -> (job, item id)
        self._room = asyncio.Event()
        self._last_reclaim = 0.0
        self._claim_cursor = "0-0"

    async def check(self) -> None:
        await retried(self._redis.ping, self.url, attempts=3)

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def run(self) -> WorkerCounts:
        await self._call(ensure_group, self._redis, self._tasks)
        keeper = asyncio.create_task(self._keep_claims_fresh())
        try:
            async for result in self.client.map(self._requests(), stop=self.stop):
                job, item_id = self._in_progress.pop(result.id)
                self._room.set()
                if result.attempts == 0 and not result.ok and self.stop.is_set():
                    continue  # stopped before it was sent: left pending for another worker
                # Reported as any item's end, an unsent failure too (a key refused: the item
                # fails as in a local run, and `run --retry-failed` sends it again).
                await self._call(self._report, result, job, item_id)
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        return self.counts

    async def _requests(self) -> AsyncIterator[Request]:
        idle_since = time.monotonic()
        while not self.stop.is_set():
            free = self.capacity - len(self._in_progress)
            if free <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            entries = await self._call(self._take, free)
            if not entries:
                if not self._in_progress and self.idle_exit is not None:
                    if time.monotonic() - idle_since >= self.idle_exit:
                        return
                continue
            batch_body_fields = self.client.target.spec.accepts_batch_body_fields
            for task_id, fields in entries:
                job, item_id = fields[b"job"].decode(), fields[b"id"].decode()
                self._in_progress[task_id] = (job, item_id)
                request = request_from_wire(fields[b"request"], id=task_id)
                if request.extra and not batch_body_fields:
                    request = request.replace(extra=None)  # as a local run does (see Job)
                yield request
            idle_since = time.monotonic()

    async def _take(self, free: int) -> list[tuple[str, dict[bytes, bytes]]]:
        """Tasks a dead worker left (once idle long enough), else new ones."""
        import redis.exceptions

        try:
            return await self._take_from_group(free)
        except redis.exceptions.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            # Redis restarted without its data: the coordinator enqueues again what it lost.
            await ensure_group(self._redis, self._tasks)
            return []

    async def _take_from_group(self, free: int) -> list[tuple[str, dict[bytes, bytes]]]:
        entries: list[tuple[str, dict[bytes, bytes]]] = []
        now = time.monotonic()
        if now - self._last_reclaim >= self.reclaim_after / 4:
            self._last_reclaim = now
            idle_ms = int(self.reclaim_after * 1000)
            reply = await self._redis.xautoclaim(
                self._tasks, GROUP, self.consumer, idle_ms, self._claim_cursor, count=free
            )
            # Where to go on next time: a dead worker's tasks far down the pending list are
            # reached in turn, not only the first `free` entries every time.
            self._claim_cursor = decode(reply[0])
            claimed = [(decode(i), f) for i, f in reply[1] if f]  # f empty: deleted meanwhile
            self.counts.reclaimed += len(claimed)
            entries += claimed
        if len(entries) < free:
            replies = await self._redis.xreadgroup(
                GROUP,
                self.consumer,
                {self._tasks: ">"},
                count=free - len(entries),
                block=READ_BLOCK_MS,
            )
            for _, found in replies or ():
                entries += [(decode(i), f) for i, f in found]
        return entries

    async def _report(self, result: Result, job: str, item_id: str) -> None:
        """The result into the job's results stream, then the task acknowledged and deleted,
        in one transaction: a task is never acknowledged without its result stored."""
        results = f"{self._prefix}:results:{job}"
        fields: dict[str, str | bytes] = {"id": item_id, "result": result_to_wire(result)}
        # The 429s this worker met since its last report travel with this result, so the
        # coordinator's summary counts them (which request met each is not known here).
        seen = self.client.statistics().http_429
        if seen > self.counts.http_429:
            fields["http_429"] = str(seen - self.counts.http_429)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(results, fields)
            pipe.xack(self._tasks, GROUP, result.id)
            pipe.xdel(self._tasks, result.id)
            await pipe.execute()
        self.counts.http_429 = seen
        if result.ok:
            self.counts.done += 1
        else:
            self.counts.failed += 1

    async def _keep_claims_fresh(self) -> None:
        """Reset the idle time of the tasks this worker holds, so nobody reclaims them while
        it lives (a slow answer is not a dead worker)."""
        while True:
            await asyncio.sleep(self.reclaim_after / 3)
            if not self._in_progress:
                continue
            ids = list(self._in_progress)
            try:
                await self._call(
                    self._redis.xclaim, self._tasks, GROUP, self.consumer, 0, ids, justid=True
                )
            except RedisUnavailableError as error:
                # Keep going: the main loop meets the same outage and decides; a keeper that
                # died here would let a live worker's slow tasks be taken over and sent twice.
                logger.warning("llmgather: %s; the tasks held were not kept fresh", error)

    async def _call(self, step: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        return await call_retried(self.url, step, *args, **kwargs)
