"""A capped job's `SpendLedger` on its store: each send's reservation is committed before the
send, settlements as they come, in group commits, so thousands of sends a second do not each
pay a commit of their own.

A send awaits only its reservation's commit: one writer task takes everything queued while the
last commit ran and commits it in one transaction (on a thread), then answers every send that
waited for it. Settlements ride along; one lost to a crash counts at its reservation, the safe
side.
"""

from __future__ import annotations

import asyncio
import uuid

from llmgather.jobs.store import JobStore

__all__ = ["StoreLedger"]


class StoreLedger:
    """Records a run's reservations and settlements in `store` (see `store.spend`)."""

    def __init__(self, store: JobStore) -> None:
        self._store = store
        self._run = uuid.uuid4().hex[:12]  # attempts are counted afresh by each run
        self._reserved: list[tuple[str, int]] = []
        self._settled: list[tuple[str, int]] = []
        self._waiting: list[asyncio.Future[None]] = []
        self._writer: asyncio.Task[None] | None = None

    async def reserved(self, attempt: str, nano_usd: int) -> None:
        future = asyncio.get_running_loop().create_future()
        self._reserved.append((f"{self._run}:{attempt}", nano_usd))
        self._waiting.append(future)
        self._kick()
        await future

    def settled(self, attempt: str, nano_usd: int) -> None:
        self._settled.append((f"{self._run}:{attempt}", nano_usd))
        self._kick()

    async def aclose(self) -> None:
        """Wait until everything recorded so far is committed."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait((self._writer,))

    def _kick(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="llmgather-spend-ledger")

    async def _write(self) -> None:
        while self._reserved or self._settled:
            reserved, self._reserved = self._reserved, []
            settled, self._settled = self._settled, []
            waiting, self._waiting = self._waiting, []
            try:
                await asyncio.to_thread(self._store.record_spend, reserved, settled)
            except BaseException as error:
                # Those sends are not made: a send never goes out without its reservation.
                # Nor are those queued while the commit ran: this writer ends here, and a
                # future left unanswered would hold its send (and its permit) for good.
                waiting += self._waiting
                self._reserved, self._settled, self._waiting = [], [], []
                for future in waiting:
                    if not future.done():
                        future.set_exception(error)
                if not isinstance(error, Exception):
                    raise
                return
            for future in waiting:
                if not future.done():
                    future.set_result(None)
