"""`llmgather run` meeting a spent quota: the run stops at the first quota error, the items not
done stay pending (not failed), the summary says so and that rerunning later resumes them,
and the rerun, once the quota is back, sends exactly those. The CLI as a subprocess, against
the simulator over loopback."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import orjson
import pytest

from llmgather.sim import EmbeddedSimulator, FaultPlan, SimConfig
from tests.clihelpers import read_jsonl, run_cli, write_prompts

EXIT_HALTED = 4


def lift_limits(base_url: str, **limits: float | None) -> None:
    change = urllib.request.Request(
        base_url + "/_sim/limits", data=orjson.dumps(limits), method="POST"
    )
    with urllib.request.urlopen(change, timeout=10) as answer:
        assert answer.status == 200


def test_a_spent_daily_quota_leaves_the_rest_pending_for_a_rerun(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 10)
    out = tmp_path / "out.jsonl"
    # Three requests a 3-second "day": the fourth is OpenAI's 429 on requests per day (RPD),
    # "try again in 1s", which a rate limit's retry would wait out. No limit headers: a day
    # that short would read as a minute's limit in them.
    config = SimConfig(rpd=3, day_seconds=3, latency_ms=0, limit_headers=False)
    with EmbeddedSimulator(config) as sim:
        args = ["run", str(prompts), "-o", str(out), "-m", "openai:gpt-4o-mini",
                "--base-url", sim.base_url + "/v1", "--concurrency", "1"]  # fmt: skip
        spent = run_cli(*args, "--json", OPENAI_API_KEY="k")
        received = sim.stats["received"]
        lift_limits(sim.base_url, rpd=None)  # the quota is back
        resumed = run_cli(*args, "--json", OPENAI_API_KEY="k")
        received_again = sim.stats["received"]
    assert spent.returncode == EXIT_HALTED, spent.stderr
    summary = orjson.loads(spent.stdout)
    assert (summary["ok"], summary["failed"], summary["pending"]) == (3, 0, 7)
    # Stopped at the first quota error: no retry, and nothing more fed; the worker may have
    # taken the next item before the stop, which meets the same 429 and stays pending too.
    assert received in (4, 5) and summary["retries"] == 0
    assert "requests per day (RPD)" in summary["quota_spent"]
    assert "7 items left pending, not failed" in summary["hint"]
    assert "Once the quota resets or is raised, rerun the same command" in summary["hint"]
    assert "quota is spent" in spent.stderr
    assert resumed.returncode == 0, resumed.stderr
    done = orjson.loads(resumed.stdout)
    assert (done["ok"], done["failed"], done["pending"], done["sent"]) == (10, 0, 0, 7)
    assert received_again - received == 7  # exactly the pending items
    assert [line["status"] for line in read_jsonl(out)] == ["ok"] * 10


@pytest.mark.parametrize(
    ("model", "fault"),
    [
        # OpenAI's insufficient_quota (credit spent): a quota error before today too, but each
        # item was sent and recorded failed, for --retry-failed to send them all again.
        ("openai:gpt-4o-mini", "quota"),
        # Anthropic's spend limit, a 429 rate_limit_error: sent once, never waited out.
        ("anthropic:claude-3-5-haiku-latest", "spend"),
    ],
)
def test_a_spent_quota_stops_the_job_at_once_with_every_item_pending(
    tmp_path: Path, model: str, fault: str
) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 30)
    out = tmp_path / "out.jsonl"
    config = SimConfig(faults=FaultPlan.parse(f"{fault}=1"), latency_ms=20)
    with EmbeddedSimulator(config) as sim:
        base_url = sim.base_url + "/v1" if model.startswith("openai") else sim.base_url
        ran = run_cli(
            "run", str(prompts), "-o", str(out), "-m", model, "--base-url", base_url,
            "--concurrency", "2", OPENAI_API_KEY="k", ANTHROPIC_API_KEY="k",
        )  # fmt: skip
        received = sim.stats["received"]
    assert ran.returncode == EXIT_HALTED, ran.stderr
    # Each of the two workers sends at most one more that it took before the stop.
    assert 1 <= received <= 4
    assert "stopped, the quota spent: 0 ok, 0 failed, 30 pending of 30" in ran.stderr
    assert "30 items left pending, not failed" in ran.stderr
    assert read_jsonl(out) == []  # nothing failed: nothing to report per item yet
