"""Job statistics: item counts, tokens, cost, the commonest errors, the job's state and running
time."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from llmgather._types import cost_number
from llmgather.jobs.liveness import process_alive
from llmgather.jobs.store.rows import INVALID_INPUT, UNSENT_FOR_COST
from llmgather.pricing.projection import projected_cost

__all__ = ["JobStats", "count_items", "job_stats"]


@dataclass(frozen=True, slots=True)
class JobStats:
    total: int
    done: int
    failed: int
    pending: int
    invalid: int
    input_tokens: int
    output_tokens: int
    started_at: float | None  # epoch seconds of the first run's start
    elapsed_s: float  # time spent running, summed over runs
    throughput_per_min: float  # finished items per minute of running
    top_errors: list[tuple[str, str, int]] = field(default_factory=list)
    state: str = "new"
    # The sum of the ok lines' costs, exactly; `unpriced`: the ok lines whose cost is null;
    # `priced`: those whose cost is known.
    cost_usd: Decimal = Decimal(0)
    unpriced: int = 0
    priced: int = 0
    # Items a spent cost cap left unsent (not in `failed`): a rerun with a higher cap sends them.
    unsent: int = 0

    @property
    def projected_usd(self) -> Decimal | None:
        """What the job will have cost once its pending items, and those a spent cost cap left
        unsent, are answered (`projected_cost`)."""
        return projected_cost(self.cost_usd, self.priced, self.pending + self.unsent)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total, "done": self.done, "failed": self.failed,
            "pending": self.pending, "invalid": self.invalid,
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "started_at": self.started_at, "elapsed_s": round(self.elapsed_s, 3),
            "throughput_per_min": round(self.throughput_per_min, 2),
            "top_errors": [{"type": t, "message": m, "count": c} for t, m, c in self.top_errors],
            "state": self.state,
            "cost_usd": float(self.cost_usd), "unpriced": self.unpriced,
            "unsent": self.unsent,
            "projected_usd": cost_number(self.projected_usd),
        }  # fmt: skip


def count_items(
    conn: sqlite3.Connection, top: int
) -> tuple[dict[str, int], list[tuple[str, str, int]]]:
    """Item counts, token and cost sums (`cost_nanos`: USD × 1e9), and the `top` commonest
    (error type, error key, count)."""
    counts = dict.fromkeys(
        (
            "total", "done", "failed", "pending", "invalid", "input_tokens", "output_tokens",
            "unsent",
        ),
        0,
    )  # fmt: skip
    # Each line's cost is a number of at most 9 decimals (`_types.cost_number`), kept beside it
    # as whole nano-dollars: their sum is exact, the sum of the lines to the last digit.
    names = (*counts, "cost_nanos", "unpriced", "priced")
    row = conn.execute(
        "SELECT count(*), sum(status = 'ok'),"
        " sum(status = 'error' AND error_type IS NOT ? AND error_type IS NOT ?),"
        " sum(status = 'pending'), sum(status = 'error' AND error_type IS ?),"
        " sum(input_tokens), sum(output_tokens), sum(status = 'error' AND error_type IS ?),"
        " sum(cost_nanos) FILTER (WHERE status = 'ok'),"
        " sum(status = 'ok' AND cost_nanos IS NULL), sum(status = 'ok' AND cost_nanos IS NOT NULL)"
        " FROM items",
        (INVALID_INPUT, UNSENT_FOR_COST, INVALID_INPUT, UNSENT_FOR_COST),
    ).fetchone()
    counts = {k: v or 0 for k, v in zip(names, row, strict=True)}
    top_errors = [
        (t, m, c)
        for t, m, c in conn.execute(
            "SELECT error_type, error_key, count(*) AS n FROM items WHERE status = 'error'"
            " GROUP BY error_type, error_key ORDER BY n DESC, min(line) LIMIT ?",
            (top,),
        )
    ]
    return counts, top_errors


def job_stats(
    meta: dict[str, Any],
    counts: dict[str, int],
    top_errors: list[tuple[str, str, int]],
    now: float,
) -> JobStats:
    """The statistics of a job from its meta and its `count_items`, as of `now`."""
    state = meta.get("state", "new")
    running_here = state == "running" and process_alive(meta)
    if state == "running" and not running_here:
        state = "interrupted"  # a run that died without saying so (kill -9, power loss)
    elif state == "complete" and counts["pending"]:
        state = "interrupted"  # as an older llmgather recorded a run whose results went missing
    elapsed = float(meta.get("active_s", 0.0))
    run_started = meta.get("run_started_at")
    if run_started is not None:
        run_end = now if running_here else float(meta.get("last_activity_at") or now)
        elapsed += run_end - float(run_started)
    finished = counts["done"] + counts["failed"]
    counts = dict(counts)
    cost = Decimal(counts.pop("cost_nanos", 0)).scaleb(-9)
    return JobStats(
        **counts,
        cost_usd=cost,
        started_at=meta.get("started_at"),
        elapsed_s=max(elapsed, 0.0),
        throughput_per_min=finished / elapsed * 60 if elapsed > 0 else 0.0,
        top_errors=top_errors,
        state=state,
    )
