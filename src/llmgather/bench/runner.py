"""Runs one contender in this process and prints one JSON line with its figures.

    python -m llmgather.bench.runner openai_gather '{"base_url": …, "workload": "short", …}'

The clock and the CPU counters start after the imports, so they measure the work itself.
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
        1 for r in results
        if r is None or isinstance(r, BaseException) or getattr(r, "status", "ok") == "error"
    )
    return len(results) - failed, failed


def main(argv: list[str]) -> None:
    name, spec = argv[0], json.loads(argv[1])
    module = importlib.import_module(f"llmgather.bench.contenders.{name}")
    prompts = prompts_for(spec) if "workload" in spec else None
    kwargs = {k: v for k, v in spec.items() if k not in ("workload", "count", "short", "long")}
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
    ok, failed = count(results) if isinstance(results, list) else results
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    print(json.dumps({"ok": ok, "failed": failed, "wall_s": wall, "cpu_s": cpu,
                      "peak_rss_mb": usage1.ru_maxrss / 1024.0}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
