"""bench cost, part 3: `run --dry-run`'s estimate against the measured cost of the same run.

Both are the CLI as users type it, as subprocesses: `llmgather run INPUT --dry-run --json`,
then `llmgather run INPUT -o OUT --json` on the embedded simulator, whose answer lengths are
known (16-64 words, decided by a hash of the prompt). The measured cost is the run's summary
total, the sum of its lines' costs. The workload mixes short and long prompts (`_workload`),
so input and output both weigh in the price.

Beside it, the same input counted as for the real OpenAI API (tiktoken, offline): how far the
simulator's own approximate count (~4 characters a token) is from the real tokenizer's.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from llmgather.bench._workload import long_prompts, short_prompts

__all__ = ["CostEstimate", "estimate_against_run"]

SIM_MODEL = "sim:gpt-4o-mini"
LONG_EVERY = 5  # one long prompt (~400 tokens) in five: input costs as much as output


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """The estimate's figures beside the run's; `error_pct` is (estimate - measured) /
    measured of the expected cost, in percent."""

    items: int
    max_tokens: int | None
    estimated_usd: float
    worst_usd: float | None
    measured_usd: float
    error_pct: float
    input_tokens_estimated: int
    input_tokens_measured: int
    output_tokens_estimated: int
    output_tokens_measured: int
    input_tokens_tiktoken: int | None  # the same input counted as OpenAI's API would
    counted_by: list[str]
    dry_run_s: float
    run_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate_against_run(
    items: int, work_dir: Path, *, max_tokens: int | None = None, timeout_s: float = 600
) -> CostEstimate:
    """Write `items` prompts in `work_dir`, estimate their run, run it, and compare."""
    work_dir.mkdir(parents=True, exist_ok=True)
    prompts = work_dir / "cost-estimate-prompts.jsonl"
    _write_workload(prompts, items)
    output = work_dir / "cost-estimate-results.jsonl"
    # The simulator by name: a provider key in the environment must not send this to a real API.
    limit = ["--model", SIM_MODEL] + (
        [] if max_tokens is None else ["--max-tokens", str(max_tokens)]
    )
    estimate, dry_s = _cli(["run", str(prompts), "--dry-run", "--json", *limit], timeout_s)
    as_openai = ["--model", "openai:gpt-4o-mini", "--api-key", "bench-offline", *limit[2:]]
    tiktoken, _ = _cli(["run", str(prompts), "--dry-run", "--json", *as_openai], timeout_s)
    run, run_s = _cli(
        ["run", str(prompts), "-o", str(output), "--restart", "--quiet", "--json", *limit],
        timeout_s,
    )
    expected = float(estimate["cost_usd"]["expected"])
    measured = float(run["cost_usd"])
    return CostEstimate(
        items=items,
        max_tokens=max_tokens,
        estimated_usd=expected,
        worst_usd=estimate["cost_usd"]["worst"],
        measured_usd=measured,
        error_pct=round(100 * (expected - measured) / measured, 2),
        input_tokens_estimated=estimate["input_tokens"],
        input_tokens_measured=run["input_tokens"],
        output_tokens_estimated=estimate["output_tokens"]["expected"],
        output_tokens_measured=run["output_tokens"],
        input_tokens_tiktoken=tiktoken["input_tokens"] if tiktoken["input_tokens_exact"] else None,
        counted_by=estimate["counted_by"],
        dry_run_s=round(dry_s, 2),
        run_s=round(run_s, 2),
    )


def _write_workload(path: Path, items: int) -> None:
    longs = iter(long_prompts(items // LONG_EVERY + 1))
    shorts = iter(short_prompts(items))
    lines = (
        orjson.dumps({"id": f"p{i}", "prompt": next(longs if i % LONG_EVERY == 0 else shorts)})
        for i in range(items)
    )
    path.write_bytes(b"\n".join(lines) + b"\n")


def _cli(args: list[str], timeout_s: float) -> tuple[dict[str, Any], float]:
    """`llmgather ARGS…` as a subprocess: its JSON summary and its wall time."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "llmgather", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(
            f"llmgather {' '.join(args[:2])} exited {done.returncode}: {done.stderr}"
        )
    data: dict[str, Any] = orjson.loads(done.stdout)
    return data, elapsed
