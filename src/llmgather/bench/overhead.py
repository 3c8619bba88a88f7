"""overhead: requests/s and CPU per request against a simulator with no latency, relative to a
bare aiohttp loop in the same run."""

from __future__ import annotations

from pathlib import Path

from llmgather.bench._cli_contender import run_cli, write_prompts
from llmgather.bench._config import BenchConfig
from llmgather.bench._procs import ChildRun, SimProcess, run_contender
from llmgather.bench._workload import MAX_TOKENS, short_prompts
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

SIM_BOTTLENECK_PCT = 90.0  # of one core: above this the simulator, not the client, may limit

OVERHEAD = (
    Contender("raw aiohttp", "raw_aiohttp"),
    Contender("AsyncOpenAI (httpx, default)", "openai_semaphore"),
    Contender("AsyncOpenAI (aiohttp client)", "openai_semaphore", {"aiohttp": True}),
    Contender("langchain abatch", "langchain_abatch"),
    Contender("llmgather map (library)", "llmgather_client", {"use_map": True}),
    Contender("llmgather run (CLI)", "cli"),
)


def run_overhead(
    config: BenchConfig, out: Path, log: Log, only: set[str] | None = None
) -> ScenarioResult:
    """Run each picked contender `config.repeat` times against one simulator with no latency;
    the median rows, each with its ratios to raw aiohttp in the same repeat."""
    n, concurrency = config.overhead_requests, config.overhead_concurrency
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    prompts_path = work / "overhead-prompts.jsonl"
    write_prompts(prompts_path, short_prompts(n))
    timeout = max(120.0, n / 50.0)  # 50 requests/s is slower than any contender has measured
    runs = []
    pinned = True
    with SimProcess(latency_ms=0, log=sim_log_path(out, "overhead")) as sim:
        pinned = sim.pinned
        _warm_up(sim, concurrency)
        for _ in range(config.repeat):
            rows = [
                _contender_row(
                    contender, sim, n, concurrency, timeout, prompts_path, work, out, log
                )
                for contender in pick(OVERHEAD, only)
            ]
            _add_ratios(rows)
            runs.append(rows)
    rows = median_rows(runs, key=lambda r: r["name"])
    busiest = max((r["sim_cpu_pct"] or 0.0 for rows_ in runs for r in rows_), default=0.0)
    meta = {
        "requests": n,
        "concurrency": concurrency,
        "pinned": pinned,
        "sim_max_cpu_pct": round(busiest, 1),
        "sim_bottleneck": busiest >= SIM_BOTTLENECK_PCT,
    }
    return ScenarioResult("overhead", rows, meta)


def _warm_up(sim: SimProcess, concurrency: int) -> None:
    """Untimed: the simulator's first thousand answers (allocator, caches) count for no one."""
    run_contender(
        "raw_aiohttp",
        {
            "base_url": sim.base_url,
            "workload": "short",
            "count": 1000,
            "max_tokens": MAX_TOKENS,
            "concurrency": concurrency,
        },
        timeout=60.0,
    )


def _contender_row(
    contender: Contender,
    sim: SimProcess,
    n: int,
    concurrency: int,
    timeout: float,
    prompts_path: Path,
    work: Path,
    out: Path,
    log: Log,
) -> Row:
    """One contender's run of n requests, and its row: throughput, CPU, the simulator's load."""
    sim.reset()
    sim_cpu0 = sim.cpu_seconds()
    log_path = out / "logs" / f"overhead-{contender.module}.log"
    if contender.module == "cli":
        run, ok, failed, wall = run_cli(sim, prompts_path, work, concurrency, timeout, log_path)
        cpu = run.cpu_s
    else:
        run, ok, failed, wall, cpu = _run_library(contender, sim, n, concurrency, timeout, log_path)
    outer_wall = run.wall_s
    sim_cpu1 = sim.cpu_seconds()
    error = failure_note(run, log, contender.name)
    # The simulator was busy for at most the child's whole life, imports included.
    sim_pct = (
        100.0 * (sim_cpu1 - sim_cpu0) / wall
        if sim_cpu0 is not None and sim_cpu1 is not None and wall
        else None
    )
    row: Row = {
        "name": contender.name,
        "ok": ok,
        "failed": failed,
        "wall_s": round(wall, 3),
        "rps": round(ok / wall, 1) if wall else 0.0,
        "cpu_s": round(cpu, 3),
        "cpu_per_1k": round(1000.0 * cpu / ok, 4) if ok else None,
        "sim_cpu_pct": round(sim_pct, 1) if sim_pct is not None else None,
        "process_wall_s": round(outer_wall, 3),
        "error": error,
    }
    log(
        f"  overhead {contender.name}: {row['rps']:.0f} req/s, "
        f"{row['cpu_per_1k']} CPU s/1k, sim at {row['sim_cpu_pct']}% of a core"
    )
    return row


def _run_library(
    contender: Contender,
    sim: SimProcess,
    n: int,
    concurrency: int,
    timeout: float,
    log_path: Path,
) -> tuple[ChildRun, int, int, float, float]:
    """A library contender's run of n requests: the child, ok, failed, and the wall and CPU
    seconds it measured itself (the child's own where it reported none)."""
    spec = {
        "base_url": sim.base_url,
        "workload": "short",
        "count": n,
        "max_tokens": MAX_TOKENS,
        "concurrency": concurrency,
        **contender.options,
    }
    run = run_contender(contender.module, spec, timeout=timeout, log_path=log_path)
    report = run.report or {}
    ok = int(report.get("ok", 0))
    wall = float(report.get("wall_s", run.wall_s))
    cpu = float(report.get("cpu_s", run.cpu_s))
    return run, ok, n - ok, wall, cpu


def _add_ratios(rows: list[Row]) -> None:
    """Each row's throughput and CPU per request as ratios to raw aiohttp's in the same repeat
    (None where raw aiohttp did not run or answered nothing)."""
    base = next((r for r in rows if r["name"] == "raw aiohttp" and r["rps"]), None)
    for row in rows:
        row["ratio_to_aiohttp"] = round(row["rps"] / base["rps"], 3) if base else None
        row["cpu_ratio_to_aiohttp"] = (
            round(row["cpu_per_1k"] / base["cpu_per_1k"], 3)
            if base and row["cpu_per_1k"] and base["cpu_per_1k"]
            else None
        )
