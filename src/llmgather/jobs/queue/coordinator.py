"""The coordinator's side of the queue (`llmgather run --queue`): enqueue a job's items, collect
the workers' results. See `llmgather.jobs.queue`."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from llmgather._redis import connect, retried
from llmgather._types import Request, Result
from llmgather.jobs.queue.scripts import ACCOUNTED_FOR, WITHDRAW
from llmgather.jobs.queue.wire import (
    GROUP,
    READ_BLOCK_MS,
    call_retried,
    decode,
    ensure_group,
    queue_keys,
    request_to_wire,
    result_from_wire,
)

logger = logging.getLogger("llmgather")
T = TypeVar("T")

DEFAULT_WINDOW = 1000
FINISHED_KEYS_TTL_S = 3600
# How often the outstanding items are looked for in Redis (see `_reconcile`). An item found
# nowhere twice in a row is enqueued again: a worker answering a task whose entry Redis lost
# has had that long to write its result back.
RECONCILE_EVERY_S = 5.0


def job_key_for(store_path: str, identity: str) -> str:
    """A job's name in the queue: the same for reruns of the same command on one machine, and
    another for another input or parameters (`identity`), so a job started over never reads
    the answers its predecessor left in Redis."""
    where = f"{socket.gethostname()}:{os.path.abspath(store_path)}:{identity}"
    return hashlib.sha256(where.encode()).hexdigest()[:16]


@dataclass(slots=True)
class QueueCounts:
    enqueued: int = 0
    done: int = 0
    failed: int = 0
    retries: int = 0
    http_429: int = 0  # the 429s the workers met for the results collected
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)  # what the workers priced the ok results at
    priced: int = 0
    resent_after_loss: int = 0
    withdrawn: int = 0  # tasks taken back from the queue at a stop, before any worker read them


class QueueCoordinator:
    """The coordinator's side: `map(requests)` enqueues them and yields the workers' results,
    in the order they finish, like `Client.map`."""

    def __init__(
        self,
        url: str,
        *,
        name: str,
        window: int = DEFAULT_WINDOW,
        reconcile_every: float = RECONCILE_EVERY_S,
    ) -> None:
        self.url = url
        self.name = name
        self.window = window
        self.reconcile_every = reconcile_every
        self._prefix, self._tasks = queue_keys(name)
        self.job = ""
        self._results = self._marker = self._enqueued = ""
        self._redis: Any = connect(url, what="--queue")
        self.counts = QueueCounts()
        self.started = time.monotonic()
        self._outstanding: dict[str, Request] = {}
        # Results of ids not fed yet (a rerun's first reads), with the 429s met for them.
        self._early: dict[str, tuple[Result, int]] = {}
        self._batch: list[Request] = []  # outstanding, not enqueued yet
        self._room = asyncio.Event()
        self._fed_all = False
        self._last_read = "0-0"
        self._reconciled_at = time.monotonic()
        self._missing: set[str] = set()  # outstanding items Redis held nowhere at the last look
        self._scripts: dict[str, Any] = {}

    async def for_job(self, job: str, *, fresh_results: bool) -> None:
        """Name the job (`job_key_for`); `fresh_results` forgets the results an earlier run of
        it left in Redis (its failed items are being sent again)."""
        self.job = job
        self._results = f"{self._prefix}:results:{job}"
        self._marker = f"{self._prefix}:job:{job}"
        self._enqueued = f"{self._prefix}:enqueued:{job}"
        if fresh_results:
            await self._call(self._redis.delete, self._results, self._enqueued)

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
        """Once `stop` is set, nothing more is enqueued, the job's tasks no worker has read
        yet are taken back from the queue (they stay pending in the job store, and a rerun
        enqueues them again), and the results of the items workers had taken by then are
        still collected."""
        stop = stop or asyncio.Event()
        awaited: set[str] | None = None  # once stopped: the items workers had taken
        await self._call(self._start)
        feeder = asyncio.create_task(self._feed(requests, stop))
        try:
            while True:
                while self._early and (ready := self._take_early()) is not None:
                    yield ready
                if stop.is_set():
                    if awaited is None:
                        # Nothing is enqueued after the withdrawal: the feeder ends first.
                        feeder.cancel()
                        await asyncio.gather(feeder, return_exceptions=True)
                        awaited = await self._call(self._withdraw)
                    awaited.intersection_update(self._outstanding)
                    if not awaited:
                        break
                if feeder.done():
                    if not feeder.cancelled():  # cancelled by the stop above: nothing to raise
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
        await ensure_group(self._redis, self._tasks)
        await self._redis.hset(self._marker, mapping={"started": time.time()})
        for key in (self._results, self._marker, self._enqueued):
            await self._redis.persist(key)  # a finished run's expiry must not end this one

    async def _feed(self, requests: AsyncIterable[Request], stop: asyncio.Event) -> None:
        batch = self._batch
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
                    batch.clear()
                    continue  # results may have come meanwhile: look again before waiting
                self._room.clear()  # no await between the look and the wait: no wake-up lost
                await self._room.wait()
            self._outstanding[request.id] = request
            batch.append(request)
            if len(batch) >= 100:
                await self._call(self._enqueue, batch)
                batch.clear()
        if batch:
            await self._call(self._enqueue, batch)
            batch.clear()
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

    async def _withdraw(self) -> set[str]:
        """Take the job's tasks no worker has read yet out of the queue, so that no worker
        sends them after the stop (a rerun enqueues them again: they leave the set of ids
        enqueued too). What is left outstanding, and returned: the items workers had taken
        (their answers may be on the way) or answered (their results not read yet); the
        rest stay pending in the job store."""
        keys = [self._tasks, self._enqueued, self._results]
        reply = await self._script(WITHDRAW)(keys=keys, args=[self.job, GROUP, self._last_read])
        withdrawn = {decode(item) for item in reply[0]}
        taken = {decode(item) for item in reply[1]}
        self._outstanding = {k: v for k, v in self._outstanding.items() if k in taken}
        self.counts.withdrawn += len(withdrawn)
        if withdrawn:
            logger.info(
                "llmgather: %d tasks no worker had read taken back from the queue", len(withdrawn)
            )
        return set(self._outstanding)

    async def _reconcile(self) -> None:
        """Enqueue again the outstanding items Redis holds nowhere: not as a task (a task
        taken and not yet answered stays in the stream, on the group's pending list, until its
        result is written), not as a result not read yet. That is a partial loss the job's
        marker does not show: Redis restarted from an older snapshot, or evicted a key. An item
        found missing twice in a row, `reconcile_every` apart, is enqueued again."""
        self._reconciled_at = time.monotonic()
        reply = await self._script(ACCOUNTED_FOR)(
            keys=[self._tasks, self._results], args=[self.job, self._last_read]
        )
        held = {decode(item) for item in reply}
        unsent = {r.id for r in self._batch}
        missing = set(self._outstanding) - held - unsent - set(self._early)
        lost = [self._outstanding[item] for item in missing & self._missing]
        self._missing = missing - {r.id for r in lost}
        if not lost:
            return
        logger.warning(
            "llmgather: Redis at the queue lost %d of this job's tasks (restarted from an older "
            "snapshot, or a key evicted); enqueuing them again",
            len(lost),
        )
        await ensure_group(self._redis, self._tasks)
        for start in range(0, len(lost), 100):
            await self._enqueue(lost[start : start + 100], again=True)
        self.counts.resent_after_loss += len(lost)

    def _script(self, source: str) -> Any:
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self._redis.register_script(source)
        return script

    async def _read_results(self) -> list[Result]:
        if not await self._redis.exists(self._marker):
            await self._recover_lost_data()
        elif time.monotonic() - self._reconciled_at >= self.reconcile_every:
            await self._reconcile()
        replies = await self._redis.xread(
            {self._results: self._last_read}, count=500, block=READ_BLOCK_MS
        )
        found = []
        for _, entries in replies or ():
            for entry_id, fields in entries:
                self._last_read = entry_id
                item_id = fields[b"id"].decode()
                result = result_from_wire(fields[b"result"], id=item_id)
                met_429 = int(fields.get(b"http_429", b"0"))  # a worker of before: none told
                if self._outstanding.pop(item_id, None) is not None:
                    found.append(self._counted(result, met_429))
                elif item_id not in self._early:
                    # enqueued by an earlier run, not fed yet
                    self._early[item_id] = (result, met_429)
        if found:
            self._room.set()
        return found

    def _take_early(self) -> Result | None:
        for item_id in self._early:
            if item_id in self._outstanding:
                del self._outstanding[item_id]
                self._room.set()
                return self._counted(*self._early.pop(item_id))
        if self._fed_all:
            self._early.clear()  # results of ids this run does not need (done before)
        return None

    def _counted(self, result: Result, met_429: int) -> Result:
        counts = self.counts
        counts.http_429 += met_429
        if result.ok:
            counts.done += 1
        else:
            counts.failed += 1
        counts.retries += max(0, result.attempts - 1)
        if result.usage is not None:
            counts.input_tokens += result.usage.input_tokens
            counts.output_tokens += result.usage.output_tokens
        if result.ok and result.cost is not None:
            counts.cost_usd += result.cost
            counts.priced += 1
        return result

    async def _recover_lost_data(self) -> None:
        """Redis lost the job (restarted without its data): enqueue again what is outstanding."""
        outstanding = list(self._outstanding.values())
        logger.warning(
            "llmgather: Redis at the queue lost its data; enqueuing the %d items outstanding again",
            len(outstanding),
        )
        await ensure_group(self._redis, self._tasks)
        self._last_read = "0-0"
        self._missing.clear()
        for start in range(0, len(outstanding), 100):
            await self._enqueue(outstanding[start : start + 100], again=True)
        # The marker last: if this fails midway, the next read finds it missing and starts over.
        await self._start()
        self.counts.resent_after_loss += len(outstanding)

    async def _finish(self) -> None:
        """Done: the job's keys go in a while, not now. The last results may not be on disk
        yet (the job store commits on its own thread); a rerun within the hour still finds
        them. An interrupted job keeps its keys."""
        if not self._outstanding:
            for key in (self._results, self._marker, self._enqueued):
                await self._redis.expire(key, FINISHED_KEYS_TTL_S)

    async def _call(self, step: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        return await call_retried(self.url, step, *args, **kwargs)
