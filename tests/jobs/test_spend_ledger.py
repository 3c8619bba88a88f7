"""A capped job's spend ledger on its real SQLite store: each reservation is committed before
its send returns, many sends share one commit, and the job's spend (real costs, reservations
where none came) reads the same from a fresh connection, as after a kill."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from llmgather.jobs.spend_ledger import StoreLedger
from llmgather.jobs.store import SQLiteJobStore


class CountingStore(SQLiteJobStore):
    """The real store, counting its spend commits."""

    commits = 0

    def record_spend(
        self, reserved: Sequence[tuple[str, int]], settled: Sequence[tuple[str, int]]
    ) -> None:
        self.commits += 1
        super().record_spend(reserved, settled)


async def test_reservations_are_durable_before_the_send_and_share_commits(tmp_path: Path) -> None:
    path = str(tmp_path / "job.sqlite")
    store = CountingStore.open(path)
    ledger = StoreLedger(store)
    durable: list[int] = []

    async def send(n: int) -> None:
        await ledger.reserved(f"item{n}:1", 1000)
        with SQLiteJobStore.open(path, create=False) as reader:  # as a resumed run reads it
            durable.append(reader.spent_nanos())
        if n % 2 == 0:
            ledger.settled(f"item{n}:1", 250)  # its answer came; the odd ones' never did

    await asyncio.gather(*(send(n) for n in range(500)))
    await ledger.aclose()
    assert all(spent >= 1000 for spent in durable)  # its own reservation, at least
    assert store.commits < 100, store.commits  # group commits, not one per send
    store.close()
    with SQLiteJobStore.open(path, create=False) as reopened:
        assert reopened.spent_nanos() == 250 * 250 + 250 * 1000
