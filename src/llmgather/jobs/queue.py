"""A Redis work queue: `run --queue URL` spreads a job's items over `llmgather worker`s on any
number of machines and collects their results into the same job store and output as a local run.

    coordinator (run --queue)                   workers (llmgather worker --queue)
    pending items ─▶ XADD tasks ───────────────▶ XREADGROUP (group "workers") ─▶ Client.map
    job store + output ◀── XREAD results:JOB ◀── XADD results:JOB, then XACK + XDEL the task
                                                XAUTOCLAIM: a dead worker's tasks, once idle

- **At least once, recorded once.** A task is acknowledged only after its result is in the
  results stream; a worker that dies leaves its tasks pending, and another claims them once
  they have been idle for `reclaim_after` (a live worker keeps its own fresh). The coordinator
  keeps the first result per id: the output has exactly one line per input.
- **Bounded.** The coordinator keeps at most `window` items outstanding; a worker reads no more
  than it can send.
- **Resumable.** The coordinator's job store is the truth, as in a local run. A rerun reads the
  results that arrived while it was away and enqueues only what was never enqueued. If Redis
  loses its data (a restart without persistence), the coordinator notices its job's marker is
  gone and enqueues again what was outstanding: only the items in flight are sent twice.

Keys (the queue's name in braces: a Redis cluster keeps them in one slot):
`llmgather:q:{NAME}:tasks` (stream, group "workers"), `…:results:JOB` (stream),
`…:job:JOB` (the marker) and `…:enqueued:JOB` (set of ids).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from llmgather._redis import connect, retried
from llmgather._types import ErrorInfo, Request, Result, Usage

logger = logging.getLogger("llmgather")
T = TypeVar("T")

GROUP = "workers"
DEFAULT_WINDOW = 1000
DEFAULT_RECLAIM_AFTER_S = 30.0
# Long enough for Redis to restart under a supervisor; a worker or coordinator then goes on.
RECONNECT_ATTEMPTS = 10  # waits of 0.1, 0.2 … 2 s: about 13 s in all
READ_BLOCK_MS = 500


def queue_keys(name: str) -> tuple[str, str]:
    """The key prefix of a queue and its task stream."""
    prefix = f"llmgather:q:{{{name}}}"
    return prefix, f"{prefix}:tasks"


def job_key_for(store_path: str) -> str:
    """A job's name in the queue: stable across reruns of the same command on one machine."""
    where = f"{socket.gethostname()}:{os.path.abspath(store_path)}"
    return hashlib.sha256(where.encode()).hexdigest()[:16]


# -- requests and results on the wire -------------------------------------------------------


def request_to_wire(request: Request) -> bytes:
    return orjson.dumps(
        {
            "messages": list(request.messages),
            "model": request.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "metadata": request.metadata,
            "extra": request.extra,
        }
    )


def request_from_wire(data: bytes, *, id: str) -> Request:
    fields = orjson.loads(data)
    return Request(
        messages=tuple(fields["messages"]),
        id=id,
        model=fields["model"],
        max_tokens=fields["max_tokens"],
        temperature=fields["temperature"],
        metadata=fields["metadata"],
        extra=fields["extra"],
    )


def result_to_wire(result: Result) -> bytes:
    fields = result.to_dict()
    fields["latency_ms"] = result.latency_ms  # unrounded: the coordinator rounds as it writes
    fields["ttft_ms"] = result.ttft_ms
    return orjson.dumps(fields)


def result_from_wire(data: bytes, *, id: str) -> Result:
    fields = orjson.loads(data)
    usage = fields["usage"]
    error = fields["error"]
    return Result(
        id=id,
        status=fields["status"],
        text=fields["text"],
        usage=Usage(usage["input_tokens"], usage["output_tokens"]) if usage else None,
        attempts=fields["attempts"],
        latency_ms=fields["latency_ms"],
        ttft_ms=fields["ttft_ms"],
        error=ErrorInfo(error["type"], error["message"], error["status_code"]) if error else None,
        metadata=fields["metadata"],
        finish_reason=fields["finish_reason"],
        provider_finish_reason=fields["provider_finish_reason"],
    )


# -- the coordinator --------------------------------------------------------------------------


@dataclass(slots=True)
class QueueCounts:
    enqueued: int = 0
    done: int = 0
    failed: int = 0
    retries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    resent_after_loss: int = 0


class QueueCoordinator:
    """The coordinator's side: `map(requests)` enqueues them and yields the workers' results,
    in the order they finish, like `Client.map`."""

    def __init__(self, url: str, *, name: str, job: str, window: int = DEFAULT_WINDOW) -> None:
        self.url = url
        self.name = name
        self.job = job
        self.window = window
        prefix, self._tasks = queue_keys(name)
        self._results = f"{prefix}:results:{job}"
        self._marker = f"{prefix}:job:{job}"
        self._enqueued = f"{prefix}:enqueued:{job}"
        self._redis: Any = connect(url, what="--queue")
        self.counts = QueueCounts()
        self.started = time.monotonic()
        self._outstanding: dict[str, Request] = {}
        self._early: dict[str, Result] = {}  # results of ids not fed yet (a rerun's first reads)
        self._room = asyncio.Event()
        self._fed_all = False
        self._last_read = "0-0"

    @property
    def outstanding(self) -> int:
        """Items enqueued whose result has not come back yet."""
        return len(self._outstanding)

    async def check(self) -> None:
        """Raise `RedisUnavailableError` now if Redis does not answer (before anything is sent)."""
        await retried(self._redis.ping, self.url, attempts=3)

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def map(
        self, requests: AsyncIterable[Request], *, stop: asyncio.Event | None = None
    ) -> AsyncIterator[Result]:
        await self._call(self._start)
        feeder = asyncio.create_task(self._feed(requests, stop or asyncio.Event()))
        try:
            while True:
                while self._early and (ready := self._take_early()) is not None:
                    yield ready
                if feeder.done():
                    feeder.result()  # an error while feeding ends the run
                    if not self._outstanding and not self._early:
                        break
                for result in await self._call(self._read_results):
                    yield result
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
        await self._call(self._finish)

    # -- inside -------------------------------------------------------------------------------

    async def _start(self) -> None:
        await _ensure_group(self._redis, self._tasks)
        await self._redis.hset(self._marker, mapping={"started": time.time()})

    async def _feed(self, requests: AsyncIterable[Request], stop: asyncio.Event) -> None:
        batch: list[Request] = []
        async for request in requests:
            if stop.is_set():
                break
            if request.id in self._early:
                self._room.set()  # its result came before it: the reader yields it
                self._outstanding[request.id] = request
                continue
            while len(self._outstanding) >= self.window:
                if batch:
                    await self._call(self._enqueue, batch)
                    batch = []
                self._room.clear()
                await self._room.wait()
            self._outstanding[request.id] = request
            batch.append(request)
            if len(batch) >= 100:
                await self._call(self._enqueue, batch)
                batch = []
        if batch:
            await self._call(self._enqueue, batch)
        self._fed_all = True

    async def _enqueue(self, batch: list[Request], *, again: bool = False) -> None:
        """XADD the requests of `batch` that were never enqueued (a rerun's may have been)."""
        if again:
            fresh = batch
        else:
            known = await self._redis.smismember(self._enqueued, [r.id for r in batch])
            fresh = [r for r, seen in zip(batch, known, strict=True) if not seen]
        if not fresh:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            for request in fresh:
                fields = {"job": self.job, "id": request.id, "request": request_to_wire(request)}
                pipe.xadd(self._tasks, fields)
            pipe.sadd(self._enqueued, *[r.id for r in fresh])
            await pipe.execute()
        self.counts.enqueued += len(fresh)

    async def _read_results(self) -> list[Result]:
        if not await self._redis.exists(self._marker):
            await self._recover_lost_data()
        replies = await self._redis.xread(
            {self._results: self._last_read}, count=500, block=READ_BLOCK_MS
        )
        found = []
        for _, entries in replies or ():
            for entry_id, fields in entries:
                self._last_read = entry_id
                item_id = fields[b"id"].decode()
                result = result_from_wire(fields[b"result"], id=item_id)
                if self._outstanding.pop(item_id, None) is not None:
                    found.append(self._counted(result))
                elif item_id not in self._early:
                    self._early[item_id] = result  # enqueued by an earlier run, not fed yet
        if found:
            self._room.set()
        return found

    def _take_early(self) -> Result | None:
        for item_id in self._early:
            if item_id in self._outstanding:
                del self._outstanding[item_id]
                self._room.set()
                return self._counted(self._early.pop(item_id))
        if self._fed_all:
            self._early.clear()  # results of ids this run does not need (done before)
        return None

    def _counted(self, result: Result) -> Result:
        counts = self.counts
        if result.ok:
            counts.done += 1
        else:
            counts.failed += 1
        counts.retries += max(0, result.attempts - 1)
        if result.usage is not None:
            counts.input_tokens += result.usage.input_tokens
            counts.output_tokens += result.usage.output_tokens
        return result

    async def _recover_lost_data(self) -> None:
        """Redis lost the job (restarted without its data): enqueue again what is outstanding."""
        outstanding = list(self._outstanding.values())
        logger.warning(
            "llmgather: Redis at the queue lost its data; enqueuing the %d items outstanding again",
            len(outstanding),
        )
        await self._start()
        self._last_read = "0-0"
        for start in range(0, len(outstanding), 100):
            await self._enqueue(outstanding[start : start + 100], again=True)
        self.counts.resent_after_loss += len(outstanding)

    async def _finish(self) -> None:
        if not self._outstanding:  # done: the job's keys go; an interrupted job keeps them
            await self._redis.delete(self._results, self._marker, self._enqueued)

    async def _call(self, step: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """`step(*args, **kwargs)`, retried while Redis restarts."""
        return await retried(lambda: step(*args, **kwargs), self.url, attempts=RECONNECT_ATTEMPTS)


async def _ensure_group(redis_client: Any, tasks: str) -> None:
    import redis.exceptions

    try:
        await redis_client.xgroup_create(tasks, GROUP, id="0", mkstream=True)
    except redis.exceptions.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


# -- the worker --------------------------------------------------------------------------------


@dataclass(slots=True)
class WorkerCounts:
    done: int = 0
    failed: int = 0
    reclaimed: int = 0


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

    async def check(self) -> None:
        await retried(self._redis.ping, self.url, attempts=3)

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def run(self) -> WorkerCounts:
        await self._call(_ensure_group, self._redis, self._tasks)
        keeper = asyncio.create_task(self._keep_claims_fresh())
        try:
            async for result in self.client.map(self._requests(), stop=self.stop):
                job, item_id = self._in_progress[result.id]
                if result.attempts == 0 and not result.ok:
                    continue  # stopped before it was sent: left pending, another takes it
                await self._call(self._report, result, job, item_id)
                del self._in_progress[result.id]
                self._room.set()
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
            await _ensure_group(self._redis, self._tasks)
            return []

    async def _take_from_group(self, free: int) -> list[tuple[str, dict[bytes, bytes]]]:
        entries: list[tuple[str, dict[bytes, bytes]]] = []
        now = time.monotonic()
        if now - self._last_reclaim >= self.reclaim_after / 4:
            self._last_reclaim = now
            idle_ms = int(self.reclaim_after * 1000)
            reply = await self._redis.xautoclaim(
                self._tasks, GROUP, self.consumer, idle_ms, "0-0", count=free
            )
            claimed = [(_decode(i), f) for i, f in reply[1] if f]  # f empty: deleted meanwhile
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
                entries += [(_decode(i), f) for i, f in found]
        return entries

    async def _report(self, result: Result, job: str, item_id: str) -> None:
        """The result into the job's results stream, then the task acknowledged and deleted,
        in one transaction: a task is never acknowledged without its result stored."""
        results = f"{self._prefix}:results:{job}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(results, {"id": item_id, "result": result_to_wire(result)})
            pipe.xack(self._tasks, GROUP, result.id)
            pipe.xdel(self._tasks, result.id)
            await pipe.execute()
        if result.ok:
            self.counts.done += 1
        else:
            self.counts.failed += 1

    async def _keep_claims_fresh(self) -> None:
        """Reset the idle time of the tasks this worker holds, so nobody reclaims them while
        it lives (a slow answer is not a dead worker)."""
        while True:
            await asyncio.sleep(self.reclaim_after / 3)
            if self._in_progress:
                ids = list(self._in_progress)
                await self._call(
                    self._redis.xclaim, self._tasks, GROUP, self.consumer, 0, ids, justid=True
                )

    async def _call(self, step: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """`step(*args, **kwargs)`, retried while Redis restarts."""
        return await retried(lambda: step(*args, **kwargs), self.url, attempts=RECONNECT_ATTEMPTS)


def _decode(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
