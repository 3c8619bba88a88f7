"""The JobStore protocol: what a job needs of the place its items and results live.

`SQLiteJobStore` (`jobs.store.sqlite`) is the one implementation; a store shared by workers on
several machines would implement the same.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import Any, Protocol

from llmgather._types import Result
from llmgather.jobs.inputs import InputItem
from llmgather.jobs.store.ingest import IngestReport
from llmgather.jobs.store.stats import JobStats


class JobStore(Protocol):
    """One job's durable state: its items, their results, and what is still pending.

    Every method may be called from any thread (the job calls them off the event loop).
    """

    # -- the job's lifecycle ---------------------------------------------------------------

    def prepare(self, *, input_fingerprint: str, params: dict[str, Any], restart: bool) -> bool:
        """Bind the store to these parameters and claim the job; True when resuming.

        Raises JobBusyError when another live process runs the job, and JobMismatchError when
        a job with other parameters owns the store (unless `restart`).
        """
        ...

    def ingest(
        self,
        items: Iterable[InputItem],
        *,
        input_fingerprint: str | None = None,
        route: dict[str, Any] | None = None,
        resend_changed: bool = False,
        source: str = "the input",
    ) -> IngestReport:
        """Take the input's items (invalid ones as failed): all of them for a new job; on a
        resumed job, what changed since the last run, item by item by id and content.

        Raises DuplicateIdError, storing nothing, when several items share an id, and
        ChangedItemsError, changing nothing, when items with results changed and
        `resend_changed` is not set.
        """
        ...

    def epoch(self) -> str:
        """What tells this job's requests from another job's on the same output, or from an
        earlier run's that changed them: changes whenever a sent request may differ."""
        ...

    def mark_state(self, state: str) -> None:
        """Record the job's state: new, running (by this process), interrupted or complete."""
        ...

    def recorded_state(self) -> str:
        """The job's state as recorded, without counting its items."""
        ...

    def close(self) -> None: ...

    # -- what is pending ---------------------------------------------------------------------

    def reset_failed(self) -> int:
        """Put failed items (not invalid input lines) back to pending; returns how many."""
        ...

    def reset_unsent(self) -> int:
        """Put the items a spent cost cap left unsent back to pending; returns how many."""
        ...

    def record_spend(
        self, reserved: Sequence[tuple[str, int]], settled: Sequence[tuple[str, int]]
    ) -> None:
        """Commit a cost cap's reservations and settlements, by attempt, in nano-dollars."""
        ...

    def spent_nanos(self) -> int:
        """What the job spent under its cost cap over all its runs, in nano-dollars (an
        attempt whose real cost never came counts at its reservation)."""
        ...

    def pending_items(
        self, items: Iterable[InputItem], *, should_stop: Callable[[], bool] | None = None
    ) -> Iterator[InputItem]:
        """The items of `items` (a fresh read of the same input, in line order) still to send."""
        ...

    # -- record and read results -------------------------------------------------------------

    def record(
        self, results: Sequence[tuple[str, Result]], encoded: Sequence[bytes] | None = None
    ) -> int:
        """Commit a batch of finished results by input id; returns how many ids matched.

        Recording an id again replaces its earlier result. `encoded`, when given, holds each
        result's `jobs.encoding.encode_result` (made once for the store and the output line).
        """
        ...

    def finished_rows(self) -> Generator[tuple[bytes | None, bytes], None, None]:
        """Every finished item's (output fields, result object) as JSON, in input order.

        The result object is `jobs.encoding.result_object` of the recorded result. The iterator
        may hold resources: run it to its end or close it.
        """
        ...

    def stats(self, *, top: int = 5) -> JobStats:
        """Counts, tokens, running time, state and the `top` commonest errors."""
        ...
