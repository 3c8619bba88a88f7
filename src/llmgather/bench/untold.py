"""The ceiling scenario's rows for llmgather told nothing, where finding the limits is harder
than reading two headers. Each runs the ceiling's prompts against its own simulator:

    unannounced  the Gemini dialect, which announces no limit: only 429s teach the rate
    halved    the OpenAI dialect with its headers; at half the ceiling's time the simulator's
              limits are halved (`POST /_sim/limits`), as when a shared key's other users wake
    split     the Anthropic dialect with separate input and output token limits (ITPM, OTPM)
              beside RPM, each set so that it binds as often as the others

`gemini` and `split` are scored as the ceiling's rows are: ok items per second against the
least time the limits allow. `halved` is scored on what follows the change, the figure that
says whether the client followed it: the least time the items the simulator had not yet
admitted at the change need at the halved limits, over the time the client took from the
change to its exit (its last answer's latency included, as in every row).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmgather.bench._config import BenchConfig
from llmgather.bench._procs import ChildRun, SimProcess, run_contender
from llmgather.bench._workload import MAX_TOKENS, SIM_SEED, CeilingPlan, ceiling_prompts
from llmgather.bench.results import Log, Row
from llmgather.limits.tokens import estimate_prompt_tokens
from llmgather.sim.text import generate

UNTOLD_CONCURRENCY = 100  # as the ceiling's own "told nothing" row: a cap, not a limit


@dataclass(frozen=True, slots=True)
class Variant:
    key: str
    name: str
    model: str
    limit_headers: bool = True
    halve_at: float | None = None  # a fraction of the ceiling's time


VARIANTS = (
    Variant(
        "unannounced",
        "llmgather told nothing, Gemini (no limit announced)",
        "gemini:gemini-2.0-flash",
        limit_headers=False,
    ),
    Variant(
        "halved",
        "llmgather told nothing, limits halved mid-run",
        "openai:gpt-4o-mini",
        halve_at=0.5,
    ),
    Variant(
        "split",
        "llmgather told nothing, Anthropic ITPM + OTPM",
        "anthropic:claude-3-5-haiku-latest",
    ),
)


def split_limits(prompts: list[str], rpm: float) -> dict[str, float]:
    """RPM, and ITPM and OTPM (rounded to 100) at which the prompts use input and output
    tokens as fast as requests: all three bind on average."""
    inputs, outputs = _tokens(prompts)
    n = len(prompts)
    return {
        "rpm": rpm,
        "itpm": float(round(rpm * inputs / n, -2)),
        "otpm": float(round(rpm * outputs / n, -2)),
    }


def split_bound_s(prompts: list[str], limits: dict[str, float]) -> float:
    inputs, outputs = _tokens(prompts)
    return 60.0 * max(
        len(prompts) / limits["rpm"], inputs / limits["itpm"], outputs / limits["otpm"]
    )


def _tokens(prompts: list[str]) -> tuple[int, int]:
    """Input tokens as the simulator counts them, and the real output it settles to."""
    inputs = sum(estimate_prompt_tokens([{"role": "user", "content": p}]) for p in prompts)
    outputs = sum(generate(p, SIM_SEED, MAX_TOKENS).output_tokens for p in prompts)
    return inputs, outputs


def run_untold(
    variant: Variant, config: BenchConfig, plan: CeilingPlan, out: Path, log: Log, sim_log: Path
) -> Row:
    """One variant's run of the ceiling's prompts against its own simulator, and its row."""
    prompts = ceiling_prompts(plan.requests)
    limits, bound_s = _limits_and_bound(variant, prompts, plan)
    halve_at = variant.halve_at * plan.ceiling_s if variant.halve_at else None
    # Halved mid-run, what is left after the change takes twice as long at most.
    deadline = config.ceiling_deadline(bound_s * (1.5 if halve_at else 1.0))
    with SimProcess(
        latency_ms=config.ceiling_latency_ms,
        limit_headers=variant.limit_headers,
        log=sim_log,
        rpm=limits.get("rpm"),
        tpm=limits.get("tpm"),
        itpm=limits.get("itpm"),
        otpm=limits.get("otpm"),
    ) as sim:
        spec = {
            "base_url": sim.base_url,
            "workload": "ceiling",
            "count": plan.requests,
            "max_tokens": MAX_TOKENS,
            "concurrency": UNTOLD_CONCURRENCY,
            "model": variant.model,
        }
        changed: dict[str, Any] | None = None
        timer = None
        if halve_at is not None:
            changed = {}
            timer = _halve_later(sim, limits, halve_at, changed)
        try:
            run = run_contender(
                "llmgather_client",
                spec,
                timeout=deadline,
                log_path=out / "logs" / f"ceiling-untold-{variant.key}.log",
            )
        finally:
            if timer is not None:
                timer.cancel()
        stats = sim.stats()
    return _untold_row(variant, plan, run, stats, bound_s, changed, log)


def _limits_and_bound(
    variant: Variant, prompts: list[str], plan: CeilingPlan
) -> tuple[dict[str, float], float]:
    """The simulator's limits for the variant, and the least time they allow for the prompts."""
    if variant.key == "split":
        limits = split_limits(prompts, plan.rpm)
        return limits, split_bound_s(prompts, limits)
    return {"rpm": plan.rpm, "tpm": plan.tpm}, plan.ceiling_s


def _halve_later(
    sim: SimProcess, limits: dict[str, float], after_s: float, changed: dict[str, Any]
) -> threading.Timer:
    """Halve the simulator's limits after `after_s`, noting in `changed` when, and how many
    requests it had admitted by then; the started timer (cancel it once the run is over)."""
    started = time.perf_counter()

    def halve() -> None:
        changed["at_s"] = time.perf_counter() - started
        before = sim.stats()
        refused = int(before.get("by_status", {}).get("429", 0))
        changed["admitted"] = int(before.get("received", 0)) - refused
        sim.change_limits(**{name: limit / 2 for name, limit in limits.items()})

    timer = threading.Timer(after_s, halve)
    timer.start()
    return timer


def _untold_row(
    variant: Variant,
    plan: CeilingPlan,
    run: ChildRun,
    stats: dict[str, Any],
    bound_s: float,
    changed: dict[str, Any] | None,
    log: Log,
) -> Row:
    """The variant's row (and its log line), scored against the least time its limits allow or, when its limits
    were halved (`changed` not None), on what followed the change."""
    report = run.report or {}
    by_status = stats.get("by_status", {})
    ok = int(report["ok"]) if report else int(by_status.get("200", 0))
    wall = float(report.get("wall_s", run.wall_s))
    total = plan.requests
    if changed:
        took_s = max(run.wall_s - changed["at_s"], 1e-9)
        least_s = (total - changed["admitted"]) / (plan.ceiling_rps / 2)
        pct = 100.0 * (ok / total) * min(1.0, least_s / took_s)
    else:
        pct = 100.0 * (ok / total) * bound_s / max(wall, bound_s)
    sent = int(stats.get("received", 0))
    row: Row = {
        "name": variant.name,
        "ok": ok,
        "failed": total - ok,
        "http_429": int(by_status.get("429", 0)),
        "sent": sent,
        "wall_s": round(wall, 2),
        "pct_of_ceiling": round(pct, 1),
        "bound_s": round(bound_s, 1),
        "error": None if run.returncode == 0 and report else f"exit code {run.returncode}",
    }
    row["pct_429"] = round(100.0 * row["http_429"] / sent, 2) if sent else 0.0
    if changed is not None:
        row["changed_at_s"] = round(changed.get("at_s", 0.0), 1)
        row["admitted_before_change"] = changed.get("admitted")
    log(
        f"  ceiling {variant.name}: {ok}/{total} ok, {row['http_429']} × 429, "
        f"{wall:.1f}s, {row['pct_of_ceiling']}% of ceiling"
        + (" (after the change)" if changed is not None else "")
    )
    return row
