"""Where a job's requests go: this process's link to the provider, or the workers of a Redis
queue.

Either way the job reads its input, keeps its store and writes its output the same; only the
sending differs, behind `map(requests) -> results` and `statistics()`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from contextlib import AsyncExitStack
from typing import Any

from llmgather._engine import Engine, EngineStats
from llmgather._link import Link
from llmgather._redact import redact_url
from llmgather._types import Request, Result
from llmgather.jobs.queue import QueueCoordinator, job_key_for
from llmgather.jobs.store import store_path_for
from llmgather.providers.registry import Target


class LinkSender:
    """Send from this process, through a link of its own (entered with the sender); fills the
    job's `defaults` (`max_tokens`, `temperature`) into each request that sets none."""

    def __init__(self, link: Link, defaults: Mapping[str, Any] | None = None) -> None:
        self.link = link
        self.target = link.target
        self.simulated = link.simulated
        self.batch_body_fields = link.target.spec.accepts_batch_body_fields
        fills = {k: v for k, v in (defaults or {}).items() if v is not None}
        max_tokens = link.max_tokens(fills.get("max_tokens"))
        self._fills = fills if max_tokens is None else fills | {"max_tokens": max_tokens}
        self._stack = AsyncExitStack()
        self._engine: Engine | None = None

    def describe(self) -> str:
        return self.target.describe()

    async def prepared(self, identity: str, *, retry_failed: bool) -> None:
        pass

    def statistics(self) -> EngineStats:
        assert self._engine is not None
        return self._engine.statistics()  # the engine's counters outlive the link's block

    def map(
        self, requests: AsyncIterable[Request], *, stop: asyncio.Event
    ) -> AsyncIterator[Result]:
        return self.link.engine.map(filled(requests, self._fills), stop=stop)

    async def __aenter__(self) -> LinkSender:
        await self._stack.enter_async_context(self.link)
        self._engine = self.link.engine
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()


async def filled(
    requests: AsyncIterable[Request], fills: Mapping[str, Any]
) -> AsyncIterator[Request]:
    """Each request with `fills` where it leaves those fields unset."""
    async for request in requests:
        missing = {k: v for k, v in fills.items() if getattr(request, k) is None}
        yield request.replace(**missing) if missing else request


# What a queued job records as its target: the workers choose the provider and the model.
QUEUE_TARGET = Target(provider="queue", model="the workers' choice")


class QueueSender:
    """Send through the workers of a Redis queue (`llmgather worker`): they choose the model and
    hold the key and the limits; this side fills the job's defaults into each request."""

    simulated = False
    batch_body_fields = True  # each worker drops them if its provider does not take them
    target = QUEUE_TARGET

    def __init__(
        self,
        coordinator: QueueCoordinator,
        defaults: Mapping[str, Any],
        *,
        output_path: str,
    ) -> None:
        self.coordinator = coordinator
        self.output_path = output_path
        self._defaults = {k: v for k, v in defaults.items() if v is not None}
        self._started = time.monotonic()

    def describe(self) -> str:
        queue = self.coordinator
        return f"the workers of queue {queue.name!r} at {redact_url(queue.url)}"

    async def prepared(self, identity: str, *, retry_failed: bool) -> None:
        # Another input or parameters is another job in Redis; failed items sent again must
        # not meet the failed results an earlier run left there.
        store_path = store_path_for(self.output_path)
        await self.coordinator.for_job(
            job_key_for(store_path, identity), fresh_results=retry_failed
        )

    def statistics(self) -> EngineStats:
        counts = self.coordinator.counts
        outstanding = self.coordinator.outstanding
        return EngineStats(
            submitted=counts.enqueued,
            sent=counts.done + counts.failed + outstanding,
            done=counts.done,
            failed=counts.failed,
            in_flight=outstanding,
            waiting_retry=0,
            retries=counts.retries,
            http_429=counts.http_429,  # the workers met them, and told with their results
            input_tokens=counts.input_tokens,
            output_tokens=counts.output_tokens,
            elapsed_s=time.monotonic() - self._started,
            concurrency=self.coordinator.window,
            limits={},
            learned={},
            paused_s=0.0,
            waiting_on=None,
            unreachable_s=0.0,
            found={},
            cost_usd=counts.cost_usd,
            priced=counts.priced,
        )

    def map(
        self, requests: AsyncIterable[Request], *, stop: asyncio.Event
    ) -> AsyncIterator[Result]:
        return self.coordinator.map(filled(requests, self._defaults), stop=stop)

    async def __aenter__(self) -> QueueSender:
        self._started = time.monotonic()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pass  # the job closes the coordinator: it opened it, to check Redis before reading
