"""`llmgather bench cost` part (1), run small: the cap at half of what the job needs, one
process and three workers on Redis; the bound the issue sets holds and nothing is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmgather.bench.cost_cap import run_cost_cap


@pytest.mark.timeout(180)  # four runs, one of them 3 worker processes on Redis
def test_the_cost_cap_benchmark_runs_small(tmp_path: Path) -> None:
    result = run_cost_cap(tmp_path, items=150, latency_ms=5, timeout=180)
    assert result.needed_usd > 0
    assert [row["setup"] for row in result.rows] == ["single process", "3 workers, Redis"]
    for row in result.rows:
        assert row["within_bound"], row
        assert row["lost"] == 0 and row["failed"] == 0
        assert row["unsent"] > 0 and row["ok"] > 0 and row["ok"] + row["unsent"] == 150
        assert 0.5 < row["spent_over_cap"] <= 1 + row["one_reservation_usd"] / row["cap_usd"]
