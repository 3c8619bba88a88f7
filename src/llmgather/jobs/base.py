"""What a job sends through: the `Sender` protocol, met by this process's link
(`senders.LinkSender`), the workers of a Redis queue (`senders.QueueSender`) and the service's
shared upstream (`service.job_sender.SharedSender`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol

from llmgather._engine import EngineStats
from llmgather._types import Request, Result
from llmgather.providers.registry import Target


class Sender(Protocol):
    target: Target
    simulated: bool
    batch_body_fields: bool  # Batch API body fields may go as they are

    def describe(self) -> str: ...

    def statistics(self) -> EngineStats: ...

    async def prepared(self, identity: str, *, retry_failed: bool) -> None:
        """The job is prepared: `identity` names its input and parameters."""
        ...

    def map(
        self, requests: AsyncIterable[Request], *, stop: asyncio.Event
    ) -> AsyncIterator[Result]: ...

    async def __aenter__(self) -> Sender: ...

    async def __aexit__(self, *exc_info: object) -> None: ...
