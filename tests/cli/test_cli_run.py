"""`llmgather run`, `demo` and `status` as a user runs them: subprocesses against the simulator."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from llmgather.sim import EmbeddedSimulator, FaultPlan, SimConfig, answer_text
from tests.clihelpers import cli_env, read_jsonl, run_cli, write_prompts


def sim_args(sim: EmbeddedSimulator) -> list[str]:
    return ["--model", "openai:gpt-4o-mini", "--base-url", sim.base_url + "/v1", "--api-key", "k"]


def test_run_writes_one_ok_line_per_input_with_its_id(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 200)
    out = tmp_path / "results.jsonl"
    with EmbeddedSimulator(SimConfig(rpm=6000, seed=2)) as sim:
        done = run_cli(
            "run", str(prompts), "-o", str(out), *sim_args(sim), "--rpm", "6000", "--json"
        )
        stats = sim.stats
    assert done.returncode == 0, done.stderr
    lines = read_jsonl(out)
    assert sorted(line["id"] for line in lines) == sorted(f"q{i}" for i in range(200))
    assert all(line["status"] == "ok" and line["error"] is None for line in lines)
    by_id = {line["id"]: line for line in lines}
    assert by_id["q7"]["text"] == answer_text("Question 7?", seed=2)[0]
    assert by_id["q7"]["usage"]["output_tokens"] > 0 and by_id["q7"]["latency_ms"] >= 0
    summary = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert summary["ok"] == 200 and summary["failed"] == 0
    assert stats["by_status"].get("429", 0) == 0


def test_run_survives_twenty_percent_transient_faults(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 150)
    out = tmp_path / "results.jsonl"
    faults = FaultPlan.parse("500=0.06,503=0.04,429=0.04,reset=0.02,malformed=0.02,cut=0.02")
    with EmbeddedSimulator(SimConfig(seed=3, faults=faults, fault_retry_after_s=0.05)) as sim:
        done = run_cli(
            "run", str(prompts), "-o", str(out), *sim_args(sim), "--max-attempts", "15", "--quiet"
        )
    assert done.returncode == 0, done.stderr
    lines = read_jsonl(out)
    assert len(lines) == 150 and all(line["status"] == "ok" for line in lines)
    assert sum(line["attempts"] for line in lines) > 150


def test_a_401_ends_at_once_with_clear_per_item_errors_and_no_retries(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 20)
    out = tmp_path / "results.jsonl"
    with EmbeddedSimulator(SimConfig(require_key="the-right-key")) as sim:
        args = ["--model", "openai:gpt-4o-mini", "--base-url", sim.base_url + "/v1"]
        done = run_cli(
            "run",
            str(prompts),
            "-o",
            str(out),
            *args,
            "--json",
            OPENAI_API_KEY="sk-not-the-right-one-123",
        )
        stats = sim.stats
    assert done.returncode == 1
    lines = read_jsonl(out)
    assert len(lines) == 20 and all(line["status"] == "error" for line in lines)
    # Those sent before the first 401 came back were refused once each; the rest not sent.
    sent = [line for line in lines if line["attempts"] == 1]
    unsent = [line for line in lines if line["attempts"] == 0]
    assert stats["received"] == len(sent) >= 1 and len(sent) + len(unsent) == 20
    assert all(line["error"]["status_code"] == 401 for line in sent)
    assert all("not sent" in line["error"]["message"] for line in unsent)
    assert {line["error"]["type"] for line in lines} == {"AuthenticationError"}
    everything = done.stdout + done.stderr + out.read_text()
    assert "sk-not-the-right-one-123" not in everything


def test_run_streams_and_records_time_to_first_token(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 20)
    out = tmp_path / "results.jsonl"
    with EmbeddedSimulator(
        SimConfig(seed=4, latency_ms=50, faults=FaultPlan.parse("cut=0.2"))
    ) as sim:
        done = run_cli("run", str(prompts), "-o", str(out), *sim_args(sim), "--stream", "--quiet")
    assert done.returncode == 0, done.stderr
    lines = read_jsonl(out)
    assert all(line["status"] == "ok" and line["ttft_ms"] is not None for line in lines)
    assert {line["text"] for line in lines} == {
        answer_text(f"Question {i}?", seed=4)[0] for i in range(20)
    }


def test_run_without_a_key_uses_the_simulator_and_says_so(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 5)
    out = tmp_path / "results.jsonl"
    done = run_cli("run", str(prompts), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "simulator" in done.stderr
    assert len(read_jsonl(out)) == 5


def test_an_unknown_provider_is_a_usage_error(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 1)
    done = run_cli("run", str(prompts), "-o", str(tmp_path / "o.jsonl"), "--model", "nosuch:model")
    assert done.returncode == 2
    assert "unknown provider 'nosuch'" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_explicit_provider_without_its_key_says_which_key(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 1)
    done = run_cli("run", str(prompts), "-o", str(tmp_path / "o.jsonl"), "--model", "openai:gpt-4o")
    assert done.returncode == 2
    assert "OPENAI_API_KEY" in done.stderr


def test_help_is_there_for_every_command() -> None:
    for command in ("run", "demo", "sim", "status"):
        done = run_cli(command, "--help")
        assert done.returncode == 0 and "Usage:" in done.stdout


# Alone: the speedup is a ratio of wall times (5 × 1 s against 1 s), which the full suite's
# load on two cores bent to 3.8 once.
@pytest.mark.quiet
def test_demo_json_shows_the_speedup_and_the_rate_limit_story() -> None:
    done = run_cli("demo", "--json", timeout=90)
    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert report["speedup"] >= 4
    assert report["rate_limit"]["naive_failed"] > 0
    assert report["rate_limit"]["llmgather_failed"] == 0
    for key in ("sync_s", "gather_s", "llmgather_s"):
        assert report[key] > 0


def test_gemini_and_anthropic_runs_survive_faults_and_cut_streams(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 60)
    faults = FaultPlan.parse("500=0.05,503=0.05,529=0.03,429=0.02,cut=0.05")
    with EmbeddedSimulator(SimConfig(seed=12, faults=faults, fault_retry_after_s=0.05)) as sim:
        for model in ("gemini:gemini-2.0-flash", "anthropic:claude-3-5-haiku-latest"):
            for stream in ([], ["--stream"]):
                out = tmp_path / f"{model.split(':')[0]}{len(stream)}.jsonl"
                done = run_cli(
                    "run", str(prompts), "-o", str(out), "--model", model, "--base-url", sim.base_url,
                    "--api-key", "k", "--max-attempts", "20", "--quiet", *stream,
                )  # fmt: skip
                assert done.returncode == 0, (model, stream, done.stderr)
                lines = {line["id"]: line for line in read_jsonl(out)}
                assert len(lines) == 60
                for i in range(60):
                    assert lines[f"q{i}"]["text"] == answer_text(f"Question {i}?", seed=12)[0]
                if stream:
                    assert all(line["ttft_ms"] is not None for line in lines.values())


def test_run_on_a_terminal_shows_progress_and_ends_cleanly(tmp_path: Path) -> None:
    """The progress bar only draws on a terminal: run the CLI on a pseudo-terminal."""
    prompts = write_prompts(tmp_path / "prompts.jsonl", 20)
    out = tmp_path / "out.jsonl"
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "llmgather", "run", str(prompts), "-o", str(out)],
        stdin=follower, stdout=follower, stderr=follower, env=cli_env(), close_fds=True,
    )  # fmt: skip
    os.close(follower)
    screen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the other side is closed, the process has ended
                break
            if not chunk:
                break
            screen += chunk
        elif process.poll() is not None:
            break
    os.close(leader)
    text = screen.decode(errors="replace")
    assert process.wait(timeout=30) == 0, text
    assert "Traceback" not in text and "finished: 20 ok" in text
