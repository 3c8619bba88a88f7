"""`llmgather run` started as a process the test can kill or interrupt, against a simulator,
and its output file watched until it holds enough results."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from llmgather.sim import EmbeddedSimulator
from tests.clihelpers import cli_env

CONCURRENCY = 16


def run_args(sim: EmbeddedSimulator, prompts: Path, out: Path, *extra: str) -> list[str]:
    return [
        "run", str(prompts), "-o", str(out), "--model", "openai:gpt-4o-mini",
        "--base-url", sim.base_url + "/v1", "--api-key", "k", "--quiet",
        "--concurrency", str(CONCURRENCY), *extra,
    ]  # fmt: skip


def start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "llmgather", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )


def wait_for_progress(out: Path, at_least: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.exists() and out.read_bytes().count(b"\n") >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {at_least} results in {out} after {timeout}s")
