"""How `llmgather run` ends on each path: what it leaves behind, what `--json` prints."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from llmgather.sim import EmbeddedSimulator, SimConfig
from tests.cli.runprocess import CONCURRENCY, run_args, start
from tests.clihelpers import cli_env, run_cli, write_prompts


def test_a_strict_refusal_leaves_no_job_store(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 3)
    with prompts.open("ab") as f:
        f.write(b"not json\n")
    out = tmp_path / "out.jsonl"
    refused = run_cli("run", str(prompts), "-o", str(out), "--strict", "--quiet")
    assert refused.returncode == 3, refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.jsonl"]
    # Standard input, spooled beside the output to be read twice, leaves no spool either.
    piped = run_cli("run", "-", "-o", str(out), "--strict", stdin=prompts.read_bytes())
    assert piped.returncode == 3, piped.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.jsonl"]


def test_requests_cut_off_on_the_wire_count_as_sent(tmp_path: Path) -> None:
    n = 8
    prompts = write_prompts(tmp_path / "prompts.jsonl", n)
    out = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(latency_ms=3000, latency_jitter=0, seed=3)) as sim:
        process = start(run_args(sim, prompts, out, "--grace", "0", "--json"))
        wait_until(lambda: sim.stats["received"] == n)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    summary = orjson.loads(stdout)
    assert (summary["sent"], summary["ok"], summary["pending"]) == (n, 0, n)


def test_a_second_ctrl_c_prints_the_summary_and_keeps_the_running_time(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 300)
    out = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(latency_ms=3000, latency_jitter=0, seed=4)) as sim:
        process = start(run_args(sim, prompts, out, "--json"))
        wait_until(lambda: sim.stats["received"] >= CONCURRENCY)
        sending_since = time.monotonic()  # the run began before this
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        quit_at = time.monotonic()  # and ended after this
        stdout, stderr = process.communicate(timeout=30)
        received = sim.stats["received"]
    assert process.returncode == 130, stderr
    assert "Quit at once" in stderr
    summary = orjson.loads(stdout)
    assert summary["interrupted"] is True
    # Those on the wire at the quit went out: they count as sent, and stay pending.
    assert summary["sent"] == received > summary["ok"]
    assert summary["ok"] + summary["pending"] == 300
    assert summary["elapsed_s"] >= quit_at - sending_since
    assert "rerun the same command" in summary["hint"].lower()
    status = orjson.loads(run_cli("status", str(out), "--json").stdout)
    assert status["state"] == "interrupted"
    assert status["elapsed_s"] >= quit_at - sending_since


def test_a_disk_that_fills_up_mid_run_exits_4_with_the_json_summary(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 400)
    out = tmp_path / "out.jsonl"
    limit = 384 * 1024  # room for the job store's first pages, not for every result

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run(
        [sys.executable, "-m", "llmgather", "run", str(prompts), "-o", str(out), "--json"],
        capture_output=True, text=True, timeout=120, env=cli_env(), preexec_fn=small_disk,
    )  # fmt: skip
    assert done.returncode == 4, done.stderr
    summary = orjson.loads(done.stdout)
    assert summary["error"] in done.stderr
    assert summary["interrupted"] is True and summary["total"] == 400
    assert 0 < summary["pending"] < 400 and summary["ok"] == 400 - summary["pending"]
    assert "rerun the same command" in summary["hint"].lower()


def wait_until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
