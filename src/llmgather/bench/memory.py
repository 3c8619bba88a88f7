"""memory: peak RSS of `llmgather run` against plain `gather` as the number of inputs grows."""

from __future__ import annotations

from pathlib import Path

from llmgather.bench._cli_contender import run_cli, write_prompts
from llmgather.bench._config import BenchConfig
from llmgather.bench._procs import SimProcess, run_contender
from llmgather.bench._workload import MAX_TOKENS
from llmgather.bench.results import (
    Contender,
    Log,
    Row,
    ScenarioResult,
    failure_note,
    pick,
    sim_log_path,
)

MEMORY = (
    Contender("llmgather run (CLI)", "cli"),
    Contender("gather (aiohttp)", "gather_file"),
)


def run_memory(
    config: BenchConfig, out: Path, log: Log, only: set[str] | None = None
) -> ScenarioResult:
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    with SimProcess(latency_ms=0, log=sim_log_path(out, "memory")) as sim:
        for size in config.memory_sizes:
            prompts_path = work / f"memory-{size}.jsonl"
            write_prompts(prompts_path, count=size)
            timeout = max(300.0, size / 100.0)
            for contender in pick(MEMORY, only):
                sim.reset()
                log_path = out / "logs" / f"memory-{contender.module}-{size}.log"
                if contender.module == "cli":
                    run, ok, failed, wall = run_cli(
                        sim, prompts_path, work, config.memory_concurrency, timeout, log_path
                    )
                else:
                    spec = {
                        "base_url": sim.base_url,
                        "input_path": str(prompts_path),
                        "output_path": str(work / "gather-results.jsonl"),
                        "max_tokens": MAX_TOKENS,
                        "concurrency": config.memory_concurrency,
                    }
                    run = run_contender(contender.module, spec, timeout=timeout, log_path=log_path)
                    report = run.report or {}
                    ok = int(report.get("ok", 0))
                    failed = size - ok
                    wall = float(report.get("wall_s", run.wall_s))
                    run.peak_rss_mb = float(report.get("peak_rss_mb", run.peak_rss_mb))
                error = failure_note(run, log, contender.name)
                rows.append(
                    {
                        "name": contender.name,
                        "inputs": size,
                        "ok": ok,
                        "failed": failed,
                        "peak_rss_mb": round(run.peak_rss_mb, 1),
                        "wall_s": round(wall, 2),
                        "error": error,
                    }
                )
                log(
                    f"  memory {size:>9,} × {contender.name}: {run.peak_rss_mb:.0f} MB peak RSS, "
                    f"{ok:,} ok in {wall:.1f}s"
                )
            prompts_path.unlink()
    for leftover in work.glob("gather-results.jsonl"):
        leftover.unlink()
    return ScenarioResult("memory", rows, {"concurrency": config.memory_concurrency})
