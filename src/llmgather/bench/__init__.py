"""`llmgather bench`: llmgather against the usual ways of calling an LLM API many times.

Each contender is a short module in `contenders/`, written the way its users write it, and runs
in its own subprocess against a `llmgather sim` subprocess on 127.0.0.1, so its CPU time and
peak RSS are its own and a crash sinks only itself. See BENCHMARKS.md for the method.
"""

from __future__ import annotations

SCENARIOS = ("timing", "ceiling", "overhead", "memory", "seams", "scale", "gateway")

__all__ = ["SCENARIOS"]
