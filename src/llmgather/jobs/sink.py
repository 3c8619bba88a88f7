"""A job's writer: results committed to its store and appended to its output on a thread.

event loop ─▶ Sink.add ─▶ queue ─▶ writer thread ─▶ store.record (one transaction a batch)
                                               └─▶ output JSONL (appended, for `tail -f`)
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from contextlib import suppress
from typing import Any

from llmgather._types import Result
from llmgather.jobs.encoding import encode_result, render_result
from llmgather.jobs.output import append_lines
from llmgather.jobs.store import JobStore

__all__ = ["Sink"]

MAX_PENDING_WRITES = 10_000  # finished results waiting for the disk before the pipeline waits
# At most one commit per this many seconds: a transaction costs far more than a row, and at
# thousands of answers a second one commit per answer would cost more CPU than sending them.
# What a kill can lose beyond the requests in flight is what arrives in this window, so it
# stays short.
MIN_COMMIT_INTERVAL_S = 0.002


class Sink:
    """Commits results on its own writer thread, never on the event loop, as soon as they arrive.

    Group commit: while one transaction is being written, the results that arrive meanwhile
    gather into the next, so a kill loses only what was in flight. The event loop hands results
    over through a queue and is never woken per batch: a reply per commit (as `to_thread` would
    make) costs more than the commit itself at thousands of results a second.

    The writer thread is owned: `async with` starts it, and leaving the block, by any way
    (an error, a cancellation), commits what was handed over and joins it.
    """

    def __init__(
        self, store: JobStore, output_path: str, output_fields: dict[str, dict[str, Any]]
    ) -> None:
        self._store = store
        self._output_path = output_path
        # Filled on the event loop, taken on the writer thread: single dict ops are atomic.
        self._output_fields = output_fields
        self._queue: queue.SimpleQueue[tuple[str, Result] | None] = queue.SimpleQueue()
        self._loop = asyncio.get_running_loop()
        self._drained: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._finished: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(target=self._write_loop, name="llmgather-writer")

    async def __aenter__(self) -> Sink:
        self._thread.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._close()

    async def add(self, result: Result) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((result.id, result))
        if self._queue.qsize() >= MAX_PENDING_WRITES:
            # The disk is slower than the API: hold the pipeline rather than grow memory.
            drained = self._drained = asyncio.Event()
            if self._queue.qsize() >= MAX_PENDING_WRITES:  # the writer may have taken it already
                await drained.wait()

    async def _close(self) -> None:
        """Let the writer commit what it holds and end, join it, and raise what it failed with.

        A cancellation meanwhile still waits for the writer (what is left is at most one
        batch), then goes on: a result handed over is never left uncommitted by a live thread.
        """
        self._queue.put(None)
        cancelled: asyncio.CancelledError | None = None
        while not self._finished.done():
            try:
                await asyncio.shield(self._finished)
            except asyncio.CancelledError as error:
                cancelled = error
        self._thread.join()  # at once: the thread signalled its last step
        if cancelled is not None:
            raise cancelled
        if self._error is not None:
            raise self._error

    def _write_loop(self) -> None:
        try:
            closing = False
            while not closing:
                batch = [self._queue.get()]
                time.sleep(MIN_COMMIT_INTERVAL_S)
                with suppress(queue.Empty):
                    while len(batch) < MAX_PENDING_WRITES:
                        batch.append(self._queue.get_nowait())
                closing = batch[-1] is None
                results = [item for item in batch if item is not None]
                try:
                    if results:
                        self._write(results)
                except BaseException as error:  # reported to the event loop by add or close
                    self._error = error
                    closing = True
                drained = self._drained
                if drained is not None:
                    self._drained = None
                    self._loop.call_soon_threadsafe(drained.set)
        finally:
            with suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                self._loop.call_soon_threadsafe(self._set_finished)

    def _set_finished(self) -> None:
        if not self._finished.done():
            self._finished.set_result(None)

    def _write(self, batch: list[tuple[str, Result]]) -> None:
        # Each result serialised once: the store's row and the output line share the bytes.
        # This thread holds the GIL while it works, so its per-result work delays the loop.
        encoded = [encode_result(id, r) for id, r in batch]
        self._store.record(batch, encoded)
        # A live view for `tail -f`; the store, not this file, is what the final output is built from.
        fields = self._output_fields
        append_lines(
            self._output_path,
            [
                render_result(id, r, fields.pop(id, None), data)
                for (id, r), data in zip(batch, encoded, strict=True)
            ],
        )
