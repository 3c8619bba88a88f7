"""Runs one contender in this process and prints one JSON line with its figures.

    python -m llmgather.bench.runner openai_gather '{"base_url": …, "workload": "short", …}'
    python -m llmgather.bench.runner --cli run prompts.jsonl -o out.jsonl …

The clock and the CPU counters start after the imports, so they measure the work itself. With
`--cli` the `llmgather` command runs in this process as a user runs it, and the CPU time is the
whole process's, start-up included.

Peak RSS is the VmHWM of /proc/self/status: `ru_maxrss` is not usable, since Linux carries the
parent's RSS at fork (the benchmark orchestrator's, ~100 MB) into the child's figure.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import resource
import sys
import time
from typing import Any

from llmgather.bench._workload import prompts_for


def count(results: list[Any]) -> tuple[int, int]:
    """(ok, failed): an exception, a None or an llmgather error Result is a failed item."""
    failed = sum(
        1
        for r in results
        if r is None or isinstance(r, BaseException) or getattr(r, "status", "ok") == "error"
    )
    return len(results) - failed, failed


def peak_rss_mb() -> float:
    """This process's own high-water RSS in MB (ru_maxrss where /proc is unavailable)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_cli(args: list[str]) -> None:
    from llmgather.cli import main as cli

    started = time.perf_counter()
    code: int | str | None = 0
    try:
        cli.main(args=args, prog_name="llmgather")
    except SystemExit as exit_:
        code = exit_.code
    usage = resource.getrusage(resource.RUSAGE_SELF)
    sys.stdout.flush()
    print(
        json.dumps(
            {
                "exit_code": code,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "wall_s": time.perf_counter() - started,
                "peak_rss_mb": peak_rss_mb(),
            }
        ),
        flush=True,
    )


def main(argv: list[str]) -> None:
    if argv[0] == "--cli":
        run_cli(argv[1:])
        return
    name, spec = argv[0], json.loads(argv[1])
    module = importlib.import_module(f"llmgather.bench.contenders.{name}")
    prompts = prompts_for(spec) if "workload" in spec else None
    kwargs = {k: v for k, v in spec.items() if k not in ("workload", "count")}
    if prompts is not None:
        kwargs["prompts"] = prompts
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    if inspect.iscoroutinefunction(module.main):
        results = asyncio.run(module.main(**kwargs))
    else:
        results = module.main(**kwargs)
    wall = time.perf_counter() - started
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    extra: dict[str, Any] = {}
    if isinstance(results, dict):  # the results and figures of the contender's own
        extra = {k: v for k, v in results.items() if k != "results"}
        results = results["results"]
    ok, failed = count(results) if isinstance(results, list) else results
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    print(
        json.dumps(
            {
                **extra,
                "ok": ok,
                "failed": failed,
                "wall_s": wall,
                "cpu_s": cpu,
                "peak_rss_mb": peak_rss_mb(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
