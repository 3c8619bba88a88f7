"""A capped job's spend ledger on its real SQLite store: each reservation is committed before
its send returns, many sends share one commit, and the job's spend (real costs, reservations
where none came) reads the same from a fresh connection, as after a kill."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

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


class StalledStore(SQLiteJobStore):
    """The real store, whose first spend commit waits until the test lets it go on."""

    def __init__(self, path: str, conn: sqlite3.Connection) -> None:
        super().__init__(path, conn)
        self.entered = threading.Event()
        self.go_on = threading.Event()

    def record_spend(
        self, reserved: Sequence[tuple[str, int]], settled: Sequence[tuple[str, int]]
    ) -> None:
        self.entered.set()
        self.go_on.wait()
        super().record_spend(reserved, settled)


async def test_a_failed_commit_fails_the_reservations_queued_while_it_ran(tmp_path: Path) -> None:
    store = StalledStore.open(str(tmp_path / "job.sqlite"))
    ledger = StoreLedger(store)
    first = asyncio.create_task(ledger.reserved("item1:1", 1000))
    await asyncio.to_thread(store.entered.wait)  # its commit is running
    queued = asyncio.create_task(ledger.reserved("item2:1", 1000))
    await asyncio.sleep(0)  # queued behind that commit
    store.close()  # the commit fails: the database is gone
    store.go_on.set()
    with pytest.raises(sqlite3.ProgrammingError):
        await first
    await ledger.aclose()
    await asyncio.sleep(0)
    # Answered too (not left waiting for good, its send and permit held): it is not sent.
    assert queued.done()
    with pytest.raises(sqlite3.ProgrammingError):
        await queued
