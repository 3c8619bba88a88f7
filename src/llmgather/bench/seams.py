"""The `seams` scenario: two targets of the library's seams, each as wall time over the least time the
limits allow, measured against `llmgather sim` subprocesses.

    calls         `client.map_calls` over `AsyncOpenAI(max_retries=0).chat.completions.create`,
                  llmgather told the simulator's RPM: the SDK sends, llmgather paces and retries
    split_tokens  `Client.gather` on the Anthropic dialect under separate input and output
                  token limits (ITPM generous, OTPM binding), llmgather told both

The bound of a job is what the targets measure against: over the limits in force, the longest of
`60 · total / limit` (requests, or the tokens the simulator reports it used), 20 s for 1,000
requests at 3,000 RPM. Latency is not in it: the last answer's time is part of the measured
overrun. A stricter figure is reported beside it, `paced_s`: the bound less the head start of
llmgather's limiter, which lets `burst_seconds` (0.5 s) of every limit out at once, so its last
send may come that much before the bound. A fresh simulator serves each measurement, its
buckets full.

ITPM/OTPM sizes: each request reserves its prompt's estimate (exact: the simulator counts input
the same way) and `max_tokens` of output, settled to the real output when the answer is back.
`max_tokens` is 64 and the simulator's answers are 16–64 words, so the output reservation runs
about 1.6× the real output: settling, not the estimate, is what lets the job reach its bound.
OTPM is set from the predicted real output so the job needs `seams_split_s` at that limit.
What is reserved and not yet settled when the last request waits (one latency's worth of
requests, each ~25 tokens over) delays that send by about latency × surplus / real output,
~0.6 s at 1 s latency whatever the job's size; the simulator holds the same surplus, since it
too reserves `max_tokens` until the answer ends, as Anthropic documents for OTPM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmgather._config import Limits
from llmgather.bench._config import BenchConfig
from llmgather.bench._procs import SimProcess, run_contender
from llmgather.bench._workload import MAX_TOKENS, SIM_SEED, short_prompts
from llmgather.bench.results import (
    Log,
    Row,
    ScenarioResult,
    failure_note,
    median_rows,
    sim_log_path,
)
from llmgather.limits.tokens import estimate_prompt_tokens
from llmgather.sim.text import generate

CALL_MAX_TOKENS = 16  # the simulator's shortest answer: every answer is exactly this long
SPLIT_MAX_TOKENS = MAX_TOKENS
ITPM_HEADROOM = 4.0  # the input limit, over what the job's pace needs: generous, never binding
TARGETS = {"calls": 1.15, "split_tokens": 1.10}  # wall / bound: the most a job may overrun
NAMES = tuple(TARGETS)


@dataclass(frozen=True, slots=True)
class Bound:
    """The least time a job's totals need under its limits: `{name: (total, limit per minute)}`."""

    budgets: dict[str, tuple[float, float]]
    burst_s: float = Limits().burst_seconds

    @property
    def bound_s(self) -> float:
        """`60 · total / limit` for the binding limit."""
        return max(60.0 * total / limit for total, limit in self.budgets.values())

    @property
    def binding(self) -> str:
        return max(self.budgets, key=lambda name: self.budgets[name][0] / self.budgets[name][1])

    @property
    def paced_s(self) -> float:
        """The bound less the limiter's initial burst: when its last send may go, at best."""
        return max(self.bound_s - self.burst_s, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "budgets": {k: {"total": t, "limit": lim} for k, (t, lim) in self.budgets.items()},
            "binding": self.binding,
            "bound_s": round(self.bound_s, 3),
            "burst_s": self.burst_s,
            "paced_s": round(self.paced_s, 3),
        }


def calls_bound(requests: int, rpm: float) -> Bound:
    return Bound({"rpm": (requests, rpm)})


def predicted_usage(prompts: Sequence[str], max_tokens: int) -> tuple[int, int]:
    """(input, output) tokens the simulator will report for `prompts` as single user turns."""
    input_tokens = sum(estimate_prompt_tokens([{"role": "user", "content": p}]) for p in prompts)
    output_tokens = sum(generate(p, SIM_SEED, max_tokens).output_tokens for p in prompts)
    return input_tokens, output_tokens


def split_limits(prompts: Sequence[str], max_tokens: int, seconds: float) -> tuple[float, float]:
    """(itpm, otpm): OTPM makes the predicted output take `seconds`; ITPM is generous."""
    input_tokens, output_tokens = predicted_usage(prompts, max_tokens)
    otpm = float(round(60.0 * output_tokens / seconds, -2))
    itpm = float(round(ITPM_HEADROOM * 60.0 * input_tokens / seconds, -2))
    return itpm, otpm


def split_bound(input_tokens: int, output_tokens: int, *, itpm: float, otpm: float) -> Bound:
    return Bound({"itpm": (input_tokens, itpm), "otpm": (output_tokens, otpm)})


def _deadline(config: BenchConfig, seconds: float) -> float:
    return seconds + 30.0 if config.quick else 3.0 * seconds + 60.0


def _measure(
    name: str,
    module: str,
    spec: dict[str, Any],
    sim_limits: dict[str, float],
    config: BenchConfig,
    out: Path,
    log: Log,
    planned_s: float,
) -> tuple[Row, dict[str, Any]]:
    """Run one contender against a fresh simulator; its row (no bound yet) and its report."""
    count = int(spec["count"])
    with SimProcess(
        latency_ms=config.ceiling_latency_ms,
        rpm=sim_limits.get("rpm"),
        itpm=sim_limits.get("itpm"),
        otpm=sim_limits.get("otpm"),
        log=sim_log_path(out, "seams"),
    ) as sim:
        run = run_contender(
            module,
            {"base_url": sim.base_url, "workload": "short", **spec},
            timeout=_deadline(config, planned_s),
            log_path=out / "logs" / f"seams-{name}.log",
        )
        stats = sim.stats()
    error = failure_note(run, log, name)
    by_status = stats.get("by_status", {})
    report = run.report or {}
    # Killed at the deadline: what the simulator answered 200 is what got done.
    ok = int(report["ok"]) if report else int(by_status.get("200", 0))
    row: Row = {
        "name": name,
        "requests": count,
        "ok": ok,
        "failed": count - ok,
        "http_429": int(by_status.get("429", 0)),
        "sent": int(stats.get("received", 0)),
        "wall_s": round(float(report.get("wall_s", run.wall_s)), 3),
        "error": error,
    }
    return row, report


def _finish(row: Row, bound: Bound) -> Row:
    wall = row["wall_s"]
    row["bound_s"] = round(bound.bound_s, 3)
    row["ratio"] = round(wall / bound.bound_s, 4) if bound.bound_s else None
    row["ratio_paced"] = round(wall / bound.paced_s, 4) if bound.paced_s else None
    return row


def _calls(config: BenchConfig, out: Path, log: Log) -> Row:
    bound = calls_bound(config.seams_calls, config.seams_rpm)
    spec = {"count": config.seams_calls, "max_tokens": CALL_MAX_TOKENS, "rpm": config.seams_rpm}
    row, _ = _measure(
        "calls",
        "llmgather_calls",
        spec,
        {"rpm": config.seams_rpm},
        config,
        out,
        log,
        bound.bound_s,
    )
    return _finish(row, bound)


def _split(config: BenchConfig, out: Path, log: Log) -> Row:
    count = config.seams_split_prompts
    prompts = short_prompts(count)  # what the runner builds from the spec's "short" workload
    itpm, otpm = split_limits(prompts, SPLIT_MAX_TOKENS, config.seams_split_s)
    spec = {"count": count, "max_tokens": SPLIT_MAX_TOKENS, "itpm": itpm, "otpm": otpm}
    limits = {"itpm": itpm, "otpm": otpm}
    row, report = _measure(
        "split_tokens", "llmgather_split", spec, limits, config, out, log, config.seams_split_s
    )
    if "output_tokens" in report:  # the usage the simulator answered with
        input_tokens, output_tokens = int(report["input_tokens"]), int(report["output_tokens"])
    else:  # the run died: what it would have used
        input_tokens, output_tokens = predicted_usage(prompts, SPLIT_MAX_TOKENS)
    row.update(input_tokens=input_tokens, output_tokens=output_tokens, itpm=itpm, otpm=otpm)
    return _finish(row, split_bound(input_tokens, output_tokens, itpm=itpm, otpm=otpm))


def run_seams(
    config: BenchConfig, out: Path, log: Log, only: set[str] | None = None
) -> ScenarioResult:
    measures = {"calls": _calls, "split_tokens": _split}
    runs = []
    for repeat in range(config.repeat):
        rows = []
        for name, measure in measures.items():
            if only is not None and name not in only:
                continue
            row = measure(config, out, log)
            rows.append(row)
            log(
                f"  seams {name}: {row['ok']}/{row['requests']} ok, {row['http_429']} × 429, "
                f"{row['wall_s']:.2f}s = {row['ratio']}× the {row['bound_s']:.2f}s bound"
                + (f" (run {repeat + 1})" if config.repeat > 1 else "")
            )
        runs.append(rows)
    rows = median_rows(runs, key=lambda r: r["name"])
    for row in rows:
        row["target"] = TARGETS[row["name"]]
        # A quick run is a smoke test: one answer's latency and the output reserved in flight
        # (~1.5 s and ~0.6 s at this latency, whatever the size) are a third of a 6 s job.
        row["meets"] = None if config.quick else _meets(row)
    meta = {
        "latency_ms": config.ceiling_latency_ms,
        "rpm": config.seams_rpm,
        "calls_max_tokens": CALL_MAX_TOKENS,
        "split_max_tokens": SPLIT_MAX_TOKENS,
        "burst_s": Limits().burst_seconds,
        "bounds": {
            "calls": calls_bound(config.seams_calls, config.seams_rpm).to_dict(),
            **(
                {"split_tokens": _split_bound_of(rows)}
                if any(r["name"] == "split_tokens" for r in rows)
                else {}
            ),
        },
    }
    return ScenarioResult("seams", rows, meta)


def _meets(row: Row) -> bool:
    """Every item ok, no 429, and within the target of the bound."""
    return bool(
        row["failed"] == 0
        and row["http_429"] == 0
        and not row["error"]
        and row["ratio"] is not None
        and row["ratio"] <= row["target"]
    )


def _split_bound_of(rows: list[Row]) -> dict[str, Any]:
    row = next(r for r in rows if r["name"] == "split_tokens")
    bound = split_bound(
        row["input_tokens"], row["output_tokens"], itpm=row["itpm"], otpm=row["otpm"]
    )
    return bound.to_dict()
