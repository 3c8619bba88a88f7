"""The scenarios: each starts its simulator(s), runs its contenders as subprocesses and
returns one row per contender (medians over repeats) plus what the rows need to be read."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from llmgather.bench import untold
from llmgather.bench._config import BenchConfig
from llmgather.bench._procs import ChildRun, SimProcess, run_child, run_contender
from llmgather.bench._workload import (
    MAX_TOKENS,
    balanced_tpm,
    ceiling_prompts,
    plan_ceiling,
    short_prompts,
)

Log = Callable[[str], None]
Row = dict[str, Any]

SIM_BOTTLENECK_PCT = 90.0  # of one core: above this the simulator, not the client, may limit


@dataclass(frozen=True, slots=True)
class Contender:
    name: str
    module: str  # a module of llmgather.bench.contenders, or "cli" for `llmgather run`
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ScenarioResult:
    name: str
    rows: list[Row]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": self.name, "contenders": self.rows, **self.meta}


TIMING = (
    Contender("sync loop (openai)", "openai_loop"),
    Contender("gather (AsyncOpenAI)", "openai_gather", {"retries": 2}),
    Contender("gather + semaphore(10)", "openai_semaphore", {"concurrency": 10}),
    Contender("batches of 10", "openai_batches"),
    Contender("llmgather", "llmgather_client"),
)

CEILING = (
    Contender("gather (AsyncOpenAI, no retries)", "openai_gather", {"retries": 0}),
    Contender("semaphore + tenacity backoff", "openai_tenacity"),
    Contender("aiolimiter + semaphore", "aiolimiter_semaphore"),
    Contender("langchain abatch + InMemoryRateLimiter", "langchain_abatch", {"limits": True}),
    Contender(
        "LangChain `abatch` with `ChatLLMGather`", "langchain_chatllmgather", {"limits": True}
    ),
    Contender("AsyncOpenAI default retries", "openai_semaphore"),
    Contender("llmgather (told the limits)", "llmgather_client", {"limits": True}),
    Contender("llmgather (told nothing)", "llmgather_client", {"concurrency": 100}),
)

OVERHEAD = (
    Contender("raw aiohttp", "raw_aiohttp"),
    Contender("AsyncOpenAI (httpx, default)", "openai_semaphore"),
    Contender("AsyncOpenAI (aiohttp client)", "openai_semaphore", {"aiohttp": True}),
    Contender("langchain abatch", "langchain_abatch"),
    Contender("llmgather map (library)", "llmgather_client", {"use_map": True}),
    Contender("llmgather run (CLI)", "cli"),
)

MEMORY = (
    Contender("llmgather run (CLI)", "cli"),
    Contender("gather (aiohttp)", "gather_file"),
)

BASE_CONTENDERS = {
    "raw aiohttp",
    "llmgather map (library)",
    "llmgather run (CLI)",
    "llmgather",
    "llmgather (told the limits)",
    "llmgather (told nothing)",
    *(variant.name for variant in untold.VARIANTS),
    "gather (aiohttp)",
}
"""Contenders that need no bench extra (aiohttp and llmgather only): what CI can smoke-test."""


def _pick(contenders: Sequence[Contender], only: set[str] | None) -> list[Contender]:
    return [c for c in contenders if only is None or c.name in only]


def _failure(run: ChildRun, log: Log, name: str) -> str | None:
    if run.report is not None and run.returncode == 0:
        return None
    why = "timed out" if run.timed_out else f"exit code {run.returncode}"
    log(f"  ! {name}: {why}. {run.stderr_tail.strip().splitlines()[-1:] or ''}")
    return why


def _median_rows(runs: list[list[Row]], key: Callable[[Row], Any]) -> list[Row]:
    """One row per key with the median of every numeric figure across repeats."""
    grouped: dict[Any, list[Row]] = {}
    for rows in runs:
        for row in rows:
            grouped.setdefault(key(row), []).append(row)
    merged = []
    for group in grouped.values():
        row = dict(group[0])
        for name, value in group[0].items():
            values = [r.get(name) for r in group]
            if (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and None not in values
            ):
                median = statistics.median(values)  # type: ignore[type-var]
                row[name] = round(median, 4) if isinstance(median, float) else median
        row["runs"] = len(group)
        merged.append(row)
    return merged


def _cli_args(sim_url: str, input_path: Path, output_path: Path, concurrency: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "llmgather.bench.runner",
        "--cli",
        "run",
        str(input_path),
        "-o",
        str(output_path),
        "-m",
        "openai:gpt-4o-mini",
        "--base-url",
        sim_url + "/v1",
        "--api-key",
        "bench",
        "-c",
        str(concurrency),
        "--max-tokens",
        str(MAX_TOKENS),
        "--restart",
        "--quiet",
        "--json",
    ]


def _write_prompts(path: Path, prompts: Sequence[str] | None = None, count: int = 0) -> None:
    with open(path, "wb") as out:
        items = prompts if prompts is not None else short_prompts(count, tag="m")
        for i, prompt in enumerate(items):
            out.write(orjson.dumps({"id": str(i), "prompt": prompt}) + b"\n")


def _run_cli(
    sim: SimProcess,
    prompts_path: Path,
    work: Path,
    concurrency: int,
    timeout: float,
    log_path: Path,
) -> tuple[ChildRun, int, int, float]:
    """`llmgather run` as its users run it; (run, ok, failed, wall from its own summary).

    `run.cpu_s` and `run.peak_rss_mb` become the process's own (start-up included)."""
    output = work / "cli-results.jsonl"
    run = run_child(
        _cli_args(sim.base_url, prompts_path, output, concurrency),
        timeout=timeout,
        log_path=log_path,
    )
    summary = run.reports[-2] if len(run.reports) >= 2 else {}
    if run.report is not None:
        run.cpu_s = float(run.report["cpu_s"])
        run.peak_rss_mb = float(run.report["peak_rss_mb"])
        if run.report.get("exit_code") not in (0, None):
            run.returncode = (
                int(run.report["exit_code"]) if isinstance(run.report["exit_code"], int) else 1
            )
    ok = int(summary.get("ok", 0))
    failed = int(summary.get("failed", 0)) + int(summary.get("pending", 0))
    wall = float(summary.get("elapsed_s", run.wall_s))
    for leftover in work.glob("cli-results.jsonl*"):
        leftover.unlink()
    return run, ok, failed, wall


# -- timing --------------------------------------------------------------------------------


def run_timing(
    config: BenchConfig, out: Path, log: Log, only: set[str] | None = None
) -> ScenarioResult:
    contenders = _pick(TIMING, only)
    runs = []
    with SimProcess(latency_ms=config.timing_latency_ms, log=_sim_log(out, "timing")) as sim:
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
                    error = _failure(run, log, contender.name)
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
    rows = _median_rows(runs, key=lambda r: (r["name"], r["requests"]))
    return ScenarioResult("timing", rows, {"latency_ms": config.timing_latency_ms})


# -- ceiling -------------------------------------------------------------------------------


def run_ceiling(
    config: BenchConfig, out: Path, log: Log, only: set[str] | None = None
) -> ScenarioResult:
    prompts = ceiling_prompts(config.ceiling_requests)
    rpm = config.ceiling_rpm
    tpm = balanced_tpm(prompts, rpm)
    plan = plan_ceiling(prompts, rpm=rpm, tpm=tpm)
    total = plan.requests
    deadline = config.ceiling_deadline(plan.ceiling_s)
    runs = []
    for _ in range(config.repeat):
        rows: list[Row] = []
        for contender in _pick(CEILING, only):
            options = dict(contender.options)
            if options.pop("limits", False):
                options.update(rpm=rpm, tpm=tpm)
            if contender.module == "aiolimiter_semaphore":
                options.update(rpm=rpm, tpm=tpm)
            options.setdefault("concurrency", config.ceiling_concurrency)
            # A fresh simulator per contender: full buckets and zeroed counters for everyone.
            with SimProcess(
                latency_ms=config.ceiling_latency_ms, rpm=rpm, tpm=tpm, log=_sim_log(out, "ceiling")
            ) as sim:
                spec = {
                    "base_url": sim.base_url,
                    "workload": "ceiling",
                    "count": total,
                    "max_tokens": MAX_TOKENS,
                    **options,
                }
                run = run_contender(
                    contender.module,
                    spec,
                    timeout=deadline,
                    log_path=out / "logs" / f"ceiling-{contender.module}.log",
                )
                stats = sim.stats()
            error = _failure(run, log, contender.name)
            by_status = stats.get("by_status", {})
            report = run.report or {}
            # Killed at the deadline: what the simulator answered 200 is what got done.
            ok = int(report["ok"]) if report else int(by_status.get("200", 0))
            wall = float(report.get("wall_s", run.wall_s))
            row: Row = {
                "name": contender.name,
                "ok": ok,
                "failed": total - ok,
                "http_429": int(by_status.get("429", 0)),
                "sent": int(stats.get("received", 0)),
                "wall_s": round(wall, 2),
                "pct_of_ceiling": round(plan.pct_of_ceiling(ok, wall), 1),
                "error": error,
            }
            row["pct_429"] = round(100.0 * row["http_429"] / row["sent"], 2) if row["sent"] else 0.0
            rows.append(row)
            log(
                f"  ceiling {contender.name}: {ok}/{total} ok, {row['http_429']} × 429, "
                f"{wall:.1f}s, {row['pct_of_ceiling']}% of ceiling"
            )
        for variant in untold.VARIANTS:
            if only is None or variant.name in only:
                rows.append(
                    untold.run_untold(variant, config, plan, out, log, _sim_log(out, "ceiling"))
                )
        runs.append(rows)
    rows = _median_rows(runs, key=lambda r: r["name"])
    meta = {
        "plan": plan.to_dict(),
        "ceiling_rps": round(plan.ceiling_rps, 3),
        "deadline_s": round(deadline, 1),
        "latency_ms": config.ceiling_latency_ms,
        "concurrency": config.ceiling_concurrency,
    }
    return ScenarioResult("ceiling", rows, meta)


# -- overhead ------------------------------------------------------------------------------


def run_overhead(
    config: BenchConfig, out: Path, log: Log, only: set[str] | None = None
) -> ScenarioResult:
    n, concurrency = config.overhead_requests, config.overhead_concurrency
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    prompts_path = work / "overhead-prompts.jsonl"
    _write_prompts(prompts_path, short_prompts(n))
    timeout = max(120.0, n / 50.0)  # 50 requests/s is slower than any contender has measured
    runs = []
    pinned = True
    with SimProcess(latency_ms=0, log=_sim_log(out, "overhead")) as sim:
        pinned = sim.pinned
        # Untimed: the simulator's first thousand answers (allocator, caches) count for no one.
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
        for _ in range(config.repeat):
            rows: list[Row] = []
            for contender in _pick(OVERHEAD, only):
                sim.reset()
                sim_cpu0 = sim.cpu_seconds()
                log_path = out / "logs" / f"overhead-{contender.module}.log"
                if contender.module == "cli":
                    run, ok, failed, wall = _run_cli(
                        sim, prompts_path, work, concurrency, timeout, log_path
                    )
                    cpu, outer_wall = run.cpu_s, run.wall_s
                else:
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
                    failed = n - ok
                    wall = float(report.get("wall_s", run.wall_s))
                    cpu = float(report.get("cpu_s", run.cpu_s))
                    outer_wall = run.wall_s
                sim_cpu1 = sim.cpu_seconds()
                error = _failure(run, log, contender.name)
                # The simulator was busy for at most the child's whole life, imports included.
                sim_pct = (
                    100.0 * (sim_cpu1 - sim_cpu0) / wall
                    if sim_cpu0 is not None and sim_cpu1 is not None and wall
                    else None
                )
                rows.append(
                    {
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
                )
                log(
                    f"  overhead {contender.name}: {rows[-1]['rps']:.0f} req/s, "
                    f"{rows[-1]['cpu_per_1k']} CPU s/1k, sim at {rows[-1]['sim_cpu_pct']}% of a core"
                )
            base = next((r for r in rows if r["name"] == "raw aiohttp" and r["rps"]), None)
            for row in rows:
                row["ratio_to_aiohttp"] = round(row["rps"] / base["rps"], 3) if base else None
                row["cpu_ratio_to_aiohttp"] = (
                    round(row["cpu_per_1k"] / base["cpu_per_1k"], 3)
                    if base and row["cpu_per_1k"] and base["cpu_per_1k"]
                    else None
                )
            runs.append(rows)
    rows = _median_rows(runs, key=lambda r: r["name"])
    busiest = max((r["sim_cpu_pct"] or 0.0 for rows_ in runs for r in rows_), default=0.0)
    meta = {
        "requests": n,
        "concurrency": concurrency,
        "pinned": pinned,
        "sim_max_cpu_pct": round(busiest, 1),
        "sim_bottleneck": busiest >= SIM_BOTTLENECK_PCT,
    }
    return ScenarioResult("overhead", rows, meta)


# -- memory --------------------------------------------------------------------------------


def run_memory(
    config: BenchConfig, out: Path, log: Log, only: set[str] | None = None
) -> ScenarioResult:
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    with SimProcess(latency_ms=0, log=_sim_log(out, "memory")) as sim:
        for size in config.memory_sizes:
            prompts_path = work / f"memory-{size}.jsonl"
            _write_prompts(prompts_path, count=size)
            timeout = max(300.0, size / 100.0)
            for contender in _pick(MEMORY, only):
                sim.reset()
                log_path = out / "logs" / f"memory-{contender.module}-{size}.log"
                if contender.module == "cli":
                    run, ok, failed, wall = _run_cli(
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
                error = _failure(run, log, contender.name)
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


def _sim_log(out: Path, scenario: str) -> Path:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return logs / f"sim-{scenario}.log"


def run_seams(
    config: BenchConfig, out: Path, log: Log, only: set[str] | None = None
) -> ScenarioResult:
    """Issue 10's SDK-calls and split-token-limit targets (see `bench.seams`)."""
    from llmgather.bench.seams import run_seams  # it builds on this module's helpers

    return run_seams(config, out, log, only)


def run_scale(
    config: BenchConfig, out: Path, log: Log, only: set[str] | None = None
) -> ScenarioResult:
    """Processes sharing one key's limits through Redis, or not (see `bench.scale`)."""
    from llmgather.bench.scale import run_scale  # it builds on this module's helpers

    return run_scale(config, out, log, only)


def run_gateway(
    config: BenchConfig, out: Path, log: Log, only: set[str] | None = None
) -> ScenarioResult:
    """llmgather serve against the LiteLLM proxy and a direct call (see `bench.gateway`)."""
    from llmgather.bench.gateway import run_gateway  # it builds on this module's helpers

    return run_gateway(config, out, log, only)


RUNNERS: dict[str, Callable[..., ScenarioResult]] = {
    "timing": run_timing,
    "ceiling": run_ceiling,
    "overhead": run_overhead,
    "memory": run_memory,
    "seams": run_seams,
    "scale": run_scale,
    "gateway": run_gateway,
}
