"""`llmgather run` as a contender: its prompts file, its command line as users type it, and the
figures from its own summary."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from llmgather.bench._procs import ChildRun, SimProcess, run_child
from llmgather.bench._workload import MAX_TOKENS, short_prompts


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


def write_prompts(path: Path, prompts: Sequence[str] | None = None, count: int = 0) -> None:
    with open(path, "wb") as out:
        items = prompts if prompts is not None else short_prompts(count, tag="m")
        for i, prompt in enumerate(items):
            out.write(orjson.dumps({"id": str(i), "prompt": prompt}) + b"\n")


def run_cli(
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
