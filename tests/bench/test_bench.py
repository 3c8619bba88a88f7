"""Smoke tests of `llmgather bench`: the ceiling and seams arithmetic, the tables, a tiny overhead
run of the contenders that need no bench extra (raw aiohttp, llmgather's library and CLI), and a
tiny seams run (it needs the openai SDK)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import llmgather
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
from llmgather.bench.seams import (
    ITPM_HEADROOM,
    SPLIT_MAX_TOKENS,
    calls_bound,
    predicted_usage,
    split_bound,
    split_limits,
)
from llmgather.cli import bench as bench_cli
from llmgather.sim.text import MAX_WORDS, MIN_WORDS
from tests.simfixtures import running


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


@pytest.mark.quiet
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


def test_seams_bounds_are_what_the_limits_allow() -> None:
    calls = calls_bound(1000, 3000)
    assert calls.bound_s == pytest.approx(20.0)  # issue 10: "the 20 s the limit allows"
    assert calls.paced_s == pytest.approx(19.5)  # less the limiter's 0.5 s initial burst
    prompts = short_prompts(500)
    itpm, otpm = split_limits(prompts, SPLIT_MAX_TOKENS, 20.0)
    input_tokens, output_tokens = predicted_usage(prompts, SPLIT_MAX_TOKENS)
    split = split_bound(input_tokens, output_tokens, itpm=itpm, otpm=otpm)
    assert split.binding == "otpm"
    assert split.bound_s == pytest.approx(20.0, rel=0.01)
    assert 60 * input_tokens / itpm == pytest.approx(20.0 / ITPM_HEADROOM, rel=0.01)
    # Answers of 16 to 64 words under max_tokens=64: the reservation is well above the real
    # output, so the job reaches its bound only if every reservation is settled.
    assert MIN_WORDS * 500 < output_tokens < 0.8 * SPLIT_MAX_TOKENS * 500


async def test_predicted_usage_is_what_the_simulator_reports() -> None:
    prompts = short_prompts(12)
    async with (
        running(latency_ms=0) as sim,
        llmgather.Client(
            "anthropic:claude-3-5-haiku-latest",
            base_url=sim.base_url,
            api_key="sim",
            defaults={"max_tokens": SPLIT_MAX_TOKENS},
        ) as client,
    ):
        results = await client.gather(prompts)
    used = [r.usage for r in results if r.usage is not None]
    assert len(used) == len(prompts)
    reported = (sum(u.input_tokens for u in used), sum(u.output_tokens for u in used))
    assert reported == predicted_usage(prompts, SPLIT_MAX_TOKENS)


@pytest.mark.quiet
@pytest.mark.timeout(60)
def test_tiny_seams_run_has_the_json_shape(tmp_path: Path) -> None:
    pytest.importorskip("openai")
    config = dataclasses.replace(
        QUICK, seams_calls=60, seams_split_prompts=40, seams_split_s=2.0, ceiling_latency_ms=100
    )
    summary = bench_cli.run_bench(["seams"], config, tmp_path, charts=True)
    rows = {row["name"]: row for row in summary["seams"]}
    assert set(rows) == {"calls", "split_tokens"}
    for row in rows.values():
        assert "error" not in row, row
        assert row["failed"] == 0 and row["http_429"] == 0
        assert row["ratio"] > 0 and row["ratio_paced"] > row["ratio"]
        assert row["meets"] is None  # a quick run is no verdict on the targets
    assert rows["calls"]["ok"] == 60 and rows["calls"]["bound_s"] == pytest.approx(1.2)
    written = json.loads((tmp_path / "seams.json").read_text())
    split = next(r for r in written["contenders"] if r["name"] == "split_tokens")
    prompts = short_prompts(40)
    assert (split["input_tokens"], split["output_tokens"]) == predicted_usage(
        prompts, SPLIT_MAX_TOKENS
    )
    assert written["bounds"]["split_tokens"]["binding"] == "otpm"
    assert not (tmp_path / "seams.png").exists()  # no chart for two ratios


@pytest.mark.quiet
@pytest.mark.timeout(120)
def test_tiny_scale_run_shares_one_limit_through_redis(tmp_path: Path) -> None:
    config = dataclasses.replace(
        QUICK, repeat=1, scale_requests=90, scale_rpm=1200.0, ceiling_latency_ms=100
    )
    only = {"2 × redis", "2 × whole"}
    summary = bench_cli.run_bench(["scale"], config, tmp_path, charts=False, only=only)
    rows = {row["name"]: row for row in summary["scale"]}
    assert set(rows) == only
    shared, naive = rows["2 × redis"], rows["2 × whole"]
    assert "error" not in shared and shared["ok"] == 90 and shared["http_429"] == 0
    assert shared["pct_of_ceiling"] > 0 and (shared["processes"], shared["setup"]) == (2, "redis")
    assert naive["http_429"] > 0  # two processes each told the whole limit: twice the rate


@pytest.mark.timeout(240)  # seven CLI runs and three redis-backed workers, tiny
def test_tiny_cost_run_has_its_three_parts_in_one_table(tmp_path: Path) -> None:
    config = dataclasses.replace(
        QUICK, cost_cap_items=80, cost_cache_items=60, cost_estimate_items=40
    )
    summary = bench_cli.run_bench(["cost"], config, tmp_path, charts=True)
    rows = {row["name"]: row for row in summary["cost"]}
    capped = [row for name, row in rows.items() if name.startswith("--max-cost")]
    assert len(capped) == 2 and all(row["within_bound"] and row["lost"] == 0 for row in capped)
    assert all(row["unsent"] > 0 for row in capped)  # the cap is half of what the job needs
    assert rows["rerun, 1 line changed (--restart --cache)"]["sent"] == 1
    assert rows["rerun, 1 line changed (--restart)"]["sent"] == 60
    assert abs(rows["--dry-run estimate against the run"]["error_pct"]) < 15
    written = json.loads((tmp_path / "cost.json").read_text())
    assert written["needed_usd"] > 0 and written["cache"]["items"] == 60
