"""`llmgather bench cost`: what a job costs, in three parts, each against its own baseline in
the same run.

    cap       2,000 items with --max-cost at half of what the job needs, concurrency 64,
              random answer lengths: spent/cap, how far past the cap against one request's
              reservation, items left unsent and lost; one process, then 3 workers on Redis
    cache     a finished 10,000-item job rerun with one line changed: requests sent and wall
              time, with the response cache against without it and against the first run
    estimate  `run --dry-run`'s cost and token figures against a real run's measured ones

Each part lives in its own module (`cost_cap`, `cost_cache`, `cost_estimate`); this one sizes
them (full or `--quick`) and turns their figures into one table of rows.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from llmgather.bench._config import BenchConfig
from llmgather.bench.cost_cache import run_cost_cache
from llmgather.bench.cost_cap import run_cost_cap
from llmgather.bench.cost_estimate import estimate_against_run
from llmgather.bench.results import Log, Row, ScenarioResult

__all__ = ["run_cost"]

ESTIMATE_MAX_TOKENS = 64


def run_cost(
    config: BenchConfig, out: Path, log: Log, only: set[str] | None = None
) -> ScenarioResult:
    """The three parts at `config`'s sizes, in `out/work/cost`; `only` has no contenders
    to pick here (each row is a setup of llmgather's own)."""
    work = out / "work" / "cost"
    rows: list[Row] = []
    log(f"cost cap: {config.cost_cap_items:,} items at half of what they need")
    capped = run_cost_cap(work / "cap", items=config.cost_cap_items)
    for row in capped.rows:
        rows.append({"name": f"--max-cost, {row['setup']}", **row})
    log(f"cache: {config.cost_cache_items:,} items, rerun with one line changed")
    rerun = run_cost_cache(work / "cache", items=config.cost_cache_items)
    for run in (rerun.first, rerun.uncached, rerun.cached):
        rows.append(
            {
                "name": run.name,
                "sent": run.requests,
                "wall_s": run.wall_s,
                "vs_first": round(run.wall_s / rerun.first.wall_s, 4),
                "cached": run.cached_lines,
            }
        )
    log(f"estimate: --dry-run against a run of {config.cost_estimate_items:,} items")
    estimate = estimate_against_run(
        config.cost_estimate_items, work / "estimate", max_tokens=ESTIMATE_MAX_TOKENS
    )
    rows.append(
        {
            "name": "--dry-run estimate against the run",
            "estimated_usd": estimate.estimated_usd,
            "spent_usd": estimate.measured_usd,
            "error_pct": estimate.error_pct,
            "input_tokens": estimate.input_tokens_estimated,
            "input_tokens_measured": estimate.input_tokens_measured,
        }
    )
    meta = {
        "needed_usd": capped.needed_usd,
        "cache": rerun.to_dict(),
        "estimate": asdict(estimate),
    }
    return ScenarioResult("cost", rows, meta)
