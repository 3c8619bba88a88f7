"""The live progress line of `llmgather run`, drawn as on a terminal."""

from __future__ import annotations

import re
from pathlib import Path

from llmgather.sim import EmbeddedSimulator, SimConfig
from tests.clihelpers import run_cli, write_prompts


def test_the_pace_shown_never_exceeds_the_limit(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 30)
    out = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(latency_ms=0)) as sim:
        done = run_cli(
            "run", str(prompts), "-o", str(out), "--model", "openai:gpt-4o-mini",
            "--base-url", sim.base_url + "/v1", "--api-key", "k", "--rpm", "600",
            TTY_COMPATIBLE="1",  # rich draws the progress line as on a terminal
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = [int(n.replace(",", "")) for n in re.findall(r"\| ([\d,]+) req/min", done.stderr)]
    # A redraw every 0.25 s over the run's 2.5 s or more: the first ones, over the bucket's
    # opening burst, are those a short window would inflate.
    assert len(shown) >= 5, done.stderr
    assert max(shown) <= 600, shown
    assert max(shown) >= 300, shown  # and it does show the pace


def test_items_the_cost_cap_left_are_shown_unsent_not_failed(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 200)
    out = tmp_path / "out.jsonl"
    done = run_cli(
        "run", str(prompts), "-o", str(out), "--max-cost", "0.001", TTY_COMPATIBLE="1"
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", done.stderr)  # the terminal's colours
    [summary] = re.findall(r"finished: (\d+) ok, 0 failed, (\d+) unsent", shown)
    ok, unsent = map(int, summary)
    assert unsent > 0
    # The last redraw: every item finished, those the cap left counted apart from failures.
    last = re.findall(r"(\d+)/200 ok (\d+) failed (\d+) unsent (\d+) ", shown)[-1]
    assert tuple(map(int, last)) == (200, ok, 0, unsent)
