"""Smoke tests of `llmgather bench`: the ceiling arithmetic, the tables, and a tiny overhead run
of the contenders that need no bench extra (raw aiohttp, llmgather's library and CLI)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmgather.bench import _report
from llmgather.bench._config import QUICK
from llmgather.bench._workload import (
    MAX_TOKENS,
    actual_tokens,
    balanced_tpm,
    ceiling_prompts,
    plan_ceiling,
    short_prompts,
)
from llmgather.cli import bench as bench_cli
from llmgather.sim.text import MAX_WORDS


def test_ceiling_is_the_tighter_of_both_limits() -> None:
    prompts = ceiling_prompts(330)
    tpm = balanced_tpm(prompts, 600)
    plan = plan_ceiling(prompts, rpm=600, tpm=tpm)
    assert plan.rpm_bound_s == pytest.approx(33.0)  # 600 RPM = 10 requests/s
    assert plan.tpm_bound_s == pytest.approx(60 * sum(actual_tokens(p) for p in prompts) / tpm)
    # Balanced: neither limit is slack on average, so both bind during the run.
    assert plan.tpm_bound_s == pytest.approx(plan.rpm_bound_s, rel=0.02)
    assert plan.ceiling_s == max(plan.rpm_bound_s, plan.tpm_bound_s)
    assert plan.pct_of_ceiling(plan.requests, plan.ceiling_s) == pytest.approx(100.0)
    assert plan.pct_of_ceiling(plan.requests, 2 * plan.ceiling_s) == pytest.approx(50.0)
    # Giving up early is not speed: half the items in a tenth of the time is 50 %, not 500 %.
    assert plan.pct_of_ceiling(plan.requests // 2, plan.ceiling_s / 10) == pytest.approx(
        50.0, abs=0.5
    )


def test_actual_tokens_are_what_the_simulator_settles_to() -> None:
    # No answer is cut by max_tokens, so every reservation is refunded down to the real answer.
    assert MAX_TOKENS >= MAX_WORDS
    prompt = short_prompts(1)[0]
    assert 16 + 4 <= actual_tokens(prompt) <= MAX_WORDS + 4 + len(prompt) // 4 + 1


def test_table_marks_ours_and_shows_missing_figures() -> None:
    rows = [
        {"name": "raw aiohttp", "rps": 4000.0, "ratio_to_aiohttp": 1.0, "cpu_per_1k": 0.25},
        {
            "name": "llmgather map (library)",
            "rps": 3500.0,
            "ratio_to_aiohttp": 0.875,
            "cpu_per_1k": None,
            "error": "timed out",
        },
    ]
    text = _report.table("overhead", rows)
    assert "◆ llmgather map (library) [timed out]" in text
    assert "4,000" in text and "0.88" in text and "—" in text
    assert _report.summary_rows("overhead", rows)[1]["error"] == "timed out"


def test_bench_says_how_to_install_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_cli, "missing_bench_extra", lambda *_: ["langchain_openai"])
    result = CliRunner().invoke(bench_cli.bench_command, ["--quick"])
    assert result.exit_code != 0
    assert "pip install 'llmgather[bench]'" in result.output


@pytest.mark.timeout(60)
def test_tiny_overhead_run_has_the_json_shape(tmp_path: Path) -> None:
    config = dataclasses.replace(QUICK, overhead_requests=300, overhead_concurrency=32)
    only = {"raw aiohttp", "llmgather map (library)", "llmgather run (CLI)"}
    summary = bench_cli.run_bench(["overhead"], config, tmp_path, charts=False, only=only)
    rows = {row["name"]: row for row in summary["overhead"]}
    assert set(rows) == only
    for row in rows.values():
        assert "error" not in row, row
        assert row["rps"] > 0 and row["cpu_per_1k"] > 0 and row["ratio_to_aiohttp"] > 0
    assert rows["raw aiohttp"]["ratio_to_aiohttp"] == 1.0
    written = json.loads((tmp_path / "overhead.json").read_text())
    assert written["contenders"][0]["ok"] == 300
    assert written["machine"]["python"]
