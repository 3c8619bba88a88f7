"""timing: N requests at a fixed latency, a synchronous loop against the usual async patterns."""

from __future__ import annotations

from pathlib import Path

from llmgather.bench._config import BenchConfig
from llmgather.bench._procs import SimProcess, run_contender
from llmgather.bench._workload import MAX_TOKENS
from llmgather.bench.results import (
    Contender,
    Log,
    Row,
    ScenarioResult,
    failure_note,
    median_rows,
    pick,
    sim_log_path,
)

TIMING = (
    Contender("sync loop (openai)", "openai_loop"),
    Contender("gather (AsyncOpenAI)", "openai_gather", {"retries": 2}),
    Contender("gather + semaphore(10)", "openai_semaphore", {"concurrency": 10}),
    Contender("batches of 10", "openai_batches"),
    Contender("llmgather", "llmgather_client"),
)


def run_timing(
    config: BenchConfig, out: Path, log: Log, only: set[str] | None = None
) -> ScenarioResult:
    contenders = pick(TIMING, only)
    runs = []
    with SimProcess(latency_ms=config.timing_latency_ms, log=sim_log_path(out, "timing")) as sim:
        for repeat in range(config.repeat):
            rows: list[Row] = []
            for size in config.timing_sizes:
                size_rows: list[Row] = []
                for contender in contenders:
                    sim.reset()
                    spec = {
                        "base_url": sim.base_url,
                        "workload": "short",
                        "count": size,
                        "max_tokens": MAX_TOKENS,
                        **contender.options,
                    }
                    timeout = 30.0 + size * config.timing_latency_ms / 1000.0 * 2.5
                    run = run_contender(
                        contender.module,
                        spec,
                        timeout=timeout,
                        log_path=out / "logs" / f"timing-{contender.module}-{size}.log",
                    )
                    error = failure_note(run, log, contender.name)
                    report = run.report or {}
                    wall = float(report.get("wall_s", run.wall_s))
                    size_rows.append(
                        {
                            "name": contender.name,
                            "requests": size,
                            "wall_s": round(wall, 3),
                            "ok": int(report.get("ok", 0)),
                            "failed": size - int(report.get("ok", 0)),
                            "error": error,
                        }
                    )
                    log(
                        f"  timing {size:>4} × {contender.name}: {wall:.2f}s"
                        + (f" (run {repeat + 1})" if config.repeat > 1 else "")
                    )
                loop = next(
                    (
                        r["wall_s"]
                        for r in size_rows
                        if r["name"] == TIMING[0].name and not r["error"]
                    ),
                    None,
                )
                for row in size_rows:
                    row["speedup"] = (
                        round(loop / row["wall_s"], 2) if loop and row["wall_s"] else None
                    )
                rows += size_rows
            runs.append(rows)
    rows = median_rows(runs, key=lambda r: (r["name"], r["requests"]))
    return ScenarioResult("timing", rows, {"latency_ms": config.timing_latency_ms})
