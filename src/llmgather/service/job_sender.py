"""A service job's sender: its requests through the service's one link, counted into its record.

`jobs.job.Job` sends through a sender (`jobs.base.Sender`); the service's jobs share the
upstream's link, so its engine and its limiter: one budget for every route.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator

from llmgather._engine import EngineStats
from llmgather._link import Link
from llmgather._types import Request, Result
from llmgather.jobs.senders import filled
from llmgather.providers.registry import Target
from llmgather.service.errors import for_clients
from llmgather.service.job_records import JobRecord, store_stats

__all__ = ["SharedSender"]


class SharedSender:
    """A job's requests through the service's one link (its engine, its shared limiter),
    which belongs to the upstream: never opened or closed here. Fills the job's defaults into
    each request and counts each result into the record as it arrives."""

    def __init__(self, link: Link, target: Target, record: JobRecord) -> None:
        self.link = link
        # The target as the service resolved it, whatever URL the link reaches: the embedded
        # simulator's port changes at every start, and a job's identity must not.
        self.target = target
        self.simulated = target.simulated
        self.batch_body_fields = target.spec.accepts_batch_body_fields
        self._record = record
        params = record.params
        fills = {
            "max_tokens": link.max_tokens(params.max_tokens),
            "temperature": params.temperature,
        }
        self._fills = {k: v for k, v in fills.items() if v is not None}

    def describe(self) -> str:
        return self.target.describe()

    def statistics(self) -> EngineStats:
        return self.link.engine.statistics()

    async def prepared(self, identity: str, *, retry_failed: bool) -> None:
        pass

    async def map(
        self, requests: AsyncIterable[Request], *, stop: asyncio.Event
    ) -> AsyncIterator[Result]:
        async for result in self.link.engine.map(filled(requests, self._fills), stop=stop):
            self._record.count(result)
            yield for_clients(result, self.link.redactor)

    async def __aenter__(self) -> SharedSender:
        # Entered once the input is in the store: count on from what earlier runs finished.
        stats = await asyncio.to_thread(store_stats, self._record.results_path)
        if stats is not None:
            self._record.count_from(stats)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pass
