"""Benchmark (2) of `llmgather bench cost`, run small: a finished job rerun with one line
changed sends exactly that line with the cache, and every line without it."""

from __future__ import annotations

from pathlib import Path

from llmgather.bench.cost_cache import run_cost_cache


def test_a_rerun_with_one_line_changed_sends_one_request_with_the_cache(tmp_path: Path) -> None:
    result = run_cost_cache(tmp_path, items=120, concurrency=16, latency_ms=20)
    first, uncached, cached = result.first, result.uncached, result.cached
    assert [run.exit_code for run in (first, uncached, cached)] == [0, 0, 0]
    assert first.requests == 120 and first.cached_lines == 0
    assert uncached.requests == 120 and uncached.cached_lines == 0
    assert cached.requests == 1 and cached.cached_lines == 119
    shown = result.to_dict()
    assert [run["requests"] for run in shown["runs"]] == [120, 120, 1]
    assert shown["cached_vs_first"] == round(cached.wall_s / first.wall_s, 4)
    assert 0 < cached.job_s < cached.wall_s and 0 < first.job_s < first.wall_s
