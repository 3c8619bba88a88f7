"""The `scale` scenario: 1, 2 and 4 `llmgather run` processes sharing one key's limits.

One `llmgather sim` subprocess enforces the key's RPM and TPM (answering 429 beyond them); the
processes split the ceiling workload between them, each on its own slice, started together.
Three ways to set their limits:

    redis   each told the whole limit, shared through one Redis (`--limiter redis://…`)
    whole   each told the whole limit, on its own: the naive setup, N times the limit together
    split   each told limit / N, on its own: safe, but a process that finishes its slice early
            leaves its share unused

With one process `whole` and `split` are the same run, reported once as `local`. A run's wall
time is the longest process's own (from its start to its summary), so start-up skew is not
charged; % of the ceiling is as in the `ceiling` scenario (`_workload.CeilingPlan`), and 429s
are what the simulator answered.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import orjson

from llmgather.bench._config import BenchConfig
from llmgather.bench._procs import SimProcess
from llmgather.bench._workload import (
    MAX_TOKENS,
    CeilingPlan,
    balanced_tpm,
    ceiling_prompts,
    plan_ceiling,
)
from llmgather.bench.redis_server import RedisServer
from llmgather.bench.results import Log, Row, ScenarioResult, median_rows, sim_log_path

PROCESS_COUNTS = (1, 2, 4)
SETUPS = ("redis", "whole", "split")


def run_scale(
    config: BenchConfig, out: Path, log: Log, only: set[str] | None = None
) -> ScenarioResult:
    prompts = ceiling_prompts(config.scale_requests)
    rpm = config.scale_rpm
    tpm = balanced_tpm(prompts, rpm)
    plan = plan_ceiling(prompts, rpm=rpm, tpm=tpm)
    deadline = config.ceiling_deadline(plan.ceiling_s)
    work = out / "work" / "scale"
    work.mkdir(parents=True, exist_ok=True)
    runs = []
    with RedisServer(work / "redis") as redis_server:
        for _ in range(config.repeat):
            rows: list[Row] = []
            for processes in PROCESS_COUNTS:
                for setup in SETUPS if processes > 1 else ("redis", "local"):
                    name = f"{processes} × {setup}"
                    if only is not None and name not in only:
                        continue
                    with SimProcess(
                        latency_ms=config.ceiling_latency_ms,
                        rpm=rpm,
                        tpm=tpm,
                        log=sim_log_path(out, "scale"),
                    ) as sim:
                        share = 1 if setup in ("redis", "whole", "local") else processes
                        limits = ["--rpm", str(rpm / share), "--tpm", str(tpm / share)]
                        if setup == "redis":
                            limits += ["--limiter", redis_server.url]
                            limits += ["--limiter-key", uuid.uuid4().hex]
                        summaries = _run_processes(
                            prompts, processes, sim.base_url, limits, config, work, deadline
                        )
                        stats = sim.stats()
                    rows.append(_row(name, processes, setup, summaries, stats, plan, log))
            runs.append(rows)
    meta = {
        "plan": plan.to_dict(),
        "latency_ms": config.ceiling_latency_ms,
        "concurrency_per_process": config.ceiling_concurrency,
    }
    return ScenarioResult("scale", median_rows(runs, key=lambda r: r["name"]), meta)


def _run_processes(
    prompts: list[str],
    processes: int,
    base_url: str,
    limits: list[str],
    config: BenchConfig,
    work: Path,
    deadline: float,
) -> list[dict]:
    """`processes` `llmgather run`s at once, each on every processes-th prompt; their --json
    summaries (an empty one for a process that failed or ran past the deadline)."""
    children = []
    for n in range(processes):
        slice_path = work / f"in-{n}.jsonl"
        with open(slice_path, "wb") as out:
            for i in range(n, len(prompts), processes):
                out.write(orjson.dumps({"id": str(i), "prompt": prompts[i]}) + b"\n")
        output = work / f"out-{n}.jsonl"
        args = [sys.executable, "-m", "llmgather", "run", str(slice_path), "-o", str(output)]
        args += ["--restart", "--json", "--quiet", "--max-tokens", str(MAX_TOKENS)]
        args += ["--model", "openai:gpt-4o-mini", "--base-url", base_url + "/v1"]
        args += ["--api-key", "bench", "--concurrency", str(config.ceiling_concurrency), *limits]
        children.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
    summaries = []
    for child in children:
        try:
            stdout, _ = child.communicate(timeout=deadline)
            lines = stdout.decode().splitlines()
            summaries.append(orjson.loads(lines[-1]) if lines else {})
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            summaries.append({})
    return summaries


def _row(
    name: str,
    processes: int,
    setup: str,
    summaries: list[dict],
    stats: dict,
    plan: CeilingPlan,
    log: Log,
) -> Row:
    by_status = stats.get("by_status", {})
    ok = sum(int(s.get("ok", 0)) for s in summaries)
    wall = max((float(s.get("elapsed_s", 0.0)) for s in summaries), default=0.0)
    sent = int(stats.get("received", 0))
    http_429 = int(by_status.get("429", 0))
    pct = plan.pct_of_ceiling(ok, wall) if wall else 0.0
    row: Row = {
        "name": name,
        "processes": processes,
        "setup": setup,
        "ok": ok,
        "failed": plan.requests - ok,
        "http_429": http_429,
        "sent": sent,
        "pct_429": round(100.0 * http_429 / sent, 2) if sent else 0.0,
        "wall_s": round(wall, 2),
        "pct_of_ceiling": round(pct, 1),
        "error": None if len(summaries) == processes and all(summaries) else "a process failed",
    }
    log(
        f"  scale {name}: {ok} ok, {http_429} × 429 ({row['pct_429']}%), {wall:.1f}s, "
        f"{row['pct_of_ceiling']}% of ceiling"
    )
    return row
