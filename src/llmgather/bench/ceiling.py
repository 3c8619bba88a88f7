"""ceiling: more requests than the limits allow, and how close each contender gets to the
throughput those limits permit (told the limits, and told nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmgather.bench import untold
from llmgather.bench._config import BenchConfig
from llmgather.bench._procs import SimProcess, run_contender
from llmgather.bench._workload import (
    MAX_TOKENS,
    CeilingPlan,
    balanced_tpm,
    ceiling_prompts,
    plan_ceiling,
)
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


def run_ceiling(
    config: BenchConfig, out: Path, log: Log, only: set[str] | None = None
) -> ScenarioResult:
    """Run each picked contender and untold variant `config.repeat` times, each against a fresh
    simulator with the ceiling's limits; the median rows."""
    prompts = ceiling_prompts(config.ceiling_requests)
    rpm = config.ceiling_rpm
    tpm = balanced_tpm(prompts, rpm)
    plan = plan_ceiling(prompts, rpm=rpm, tpm=tpm)
    deadline = config.ceiling_deadline(plan.ceiling_s)
    runs = []
    for _ in range(config.repeat):
        rows = [
            _contender_row(contender, config, plan, deadline, out, log)
            for contender in pick(CEILING, only)
        ]
        for variant in untold.VARIANTS:
            if only is None or variant.name in only:
                rows.append(
                    untold.run_untold(variant, config, plan, out, log, sim_log_path(out, "ceiling"))
                )
        runs.append(rows)
    rows = median_rows(runs, key=lambda r: r["name"])
    meta = {
        "plan": plan.to_dict(),
        "ceiling_rps": round(plan.ceiling_rps, 3),
        "deadline_s": round(deadline, 1),
        "latency_ms": config.ceiling_latency_ms,
        "concurrency": config.ceiling_concurrency,
    }
    return ScenarioResult("ceiling", rows, meta)


def _contender_options(
    contender: Contender, config: BenchConfig, plan: CeilingPlan
) -> dict[str, Any]:
    """The contender's options, with the ceiling's limits where it is told them, and the
    ceiling's concurrency unless it sets its own."""
    options = dict(contender.options)
    if options.pop("limits", False):
        options.update(rpm=plan.rpm, tpm=plan.tpm)
    if contender.module == "aiolimiter_semaphore":
        options.update(rpm=plan.rpm, tpm=plan.tpm)
    options.setdefault("concurrency", config.ceiling_concurrency)
    return options


def _contender_row(
    contender: Contender,
    config: BenchConfig,
    plan: CeilingPlan,
    deadline: float,
    out: Path,
    log: Log,
) -> Row:
    """One contender's run of the ceiling's prompts, and its row: ok, 429s, % of the ceiling."""
    total = plan.requests
    options = _contender_options(contender, config, plan)
    # A fresh simulator per contender: full buckets and zeroed counters for everyone.
    with SimProcess(
        latency_ms=config.ceiling_latency_ms,
        rpm=plan.rpm,
        tpm=plan.tpm,
        log=sim_log_path(out, "ceiling"),
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
    error = failure_note(run, log, contender.name)
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
    log(
        f"  ceiling {contender.name}: {ok}/{total} ok, {row['http_429']} × 429, "
        f"{wall:.1f}s, {row['pct_of_ceiling']}% of ceiling"
    )
    return row
