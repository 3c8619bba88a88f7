"""The end-of-run summary of `llmgather run`: true counts, whole words, one line, what to do next."""

from __future__ import annotations

from pathlib import Path

import orjson

from llmgather.sim import EmbeddedSimulator, SimConfig
from tests.clihelpers import read_jsonl, run_cli, write_prompts


def test_sent_counts_only_items_that_went_out_and_the_hint_names_retry_failed(
    tmp_path: Path,
) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 20)
    out = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(require_key="right", latency_ms=50)) as sim:
        args = ["run", str(prompts), "-o", str(out), "-m", "openai:gpt-4o-mini",
                "--base-url", sim.base_url + "/v1", "--concurrency", "2"]  # fmt: skip
        refused = run_cli(*args, "--json", OPENAI_API_KEY="wrong")
        received = sim.stats["received"]
        # The same command again sends nothing: the summary must say what would.
        again = run_cli(*args, OPENAI_API_KEY="wrong")
        assert sim.stats["received"] == received
        fixed = run_cli(*args, "--retry-failed", "--json", OPENAI_API_KEY="right")
    assert refused.returncode == 1, refused.stderr
    summary = orjson.loads(refused.stdout)
    # After the first 401 the rest fail unsent: they are failed, but were never sent.
    assert summary["failed"] == 20 and 1 <= summary["sent"] == received < 20
    assert "--retry-failed" in summary["hint"]
    assert again.returncode == 1
    assert (
        "20 items failed: once the cause is fixed (--base-url, limits and timeouts may change), "
        "rerun the same command with --retry-failed to send those 20 again."
    ) in again.stderr
    assert fixed.returncode == 0, fixed.stderr
    done = orjson.loads(fixed.stdout)
    assert (done["ok"], done["sent"], done["hint"]) == (20, 20, None)
    assert all(line["status"] == "ok" for line in read_jsonl(out))


def test_top_errors_are_cut_at_a_word_boundary(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    # Its message is cut to 80 characters to group errors, in the middle of `{"role"`.
    prompts.write_text('{"id": "a", "text": "no prompt field"}\n')
    out = tmp_path / "out.jsonl"
    human = run_cli("run", str(prompts), "-o", str(out))
    as_json = run_cli("run", str(prompts), "-o", str(out), "--json")
    status = run_cli("status", str(out), "--json")
    full = read_jsonl(out)[0]["error"]["message"].split(": ", 1)[1]
    shown = orjson.loads(as_json.stdout)["top_errors"][0]["message"]
    assert shown == 'no "prompt" or "messages" field; expected {"prompt": "..."} or {"messages":…'
    assert full.startswith(shown.removesuffix("…") + " ")  # whole words only
    assert orjson.loads(status.stdout)["top_errors"][0]["message"] == shown
    assert f"1 × invalid_input: {shown}\n" in human.stderr


def test_off_a_terminal_the_summary_is_not_wrapped(tmp_path: Path) -> None:
    folder = tmp_path / ("a-folder-with-a-long-name-" * 4)
    folder.mkdir()
    prompts = write_prompts(folder / "prompts.jsonl", 3)
    out = folder / "results.jsonl"
    done = run_cli("run", str(prompts), "-o", str(out))
    assert done.returncode == 0, done.stderr
    [summary] = [line for line in done.stderr.splitlines() if line.startswith("finished:")]
    assert str(out) in summary and summary.endswith("tokens]")
    # The simulator banner, longer than any terminal, is one line too.
    assert any(
        line.startswith("Simulator:") and line.endswith("to call a real API.")
        for line in done.stderr.splitlines()
    )


def test_limits_learned_from_the_providers_headers_are_shown(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 5)
    out = tmp_path / "results.jsonl"
    with EmbeddedSimulator(SimConfig(rpm=6000, tpm=900_000, latency_ms=0)) as sim:
        args = ["--model", "openai:gpt-4o-mini", "--base-url", sim.base_url + "/v1"]
        done = run_cli("run", str(prompts), "-o", str(out), *args, "--json", OPENAI_API_KEY="k")
        shown = run_cli("run", str(prompts), "-o", str(out), *args, "--restart", OPENAI_API_KEY="k")
    assert done.returncode == 0, done.stderr
    summary = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert summary["learned_limits"] == {"rpm": 6000, "tpm": 900000}
    assert summary["learned_rpm"] == 6000 and summary["learned_tpm"] == 900000
    assert summary["learned_from"] == "headers"
    assert "6,000 req/min, 900,000 tok/min" in shown.stderr


def test_a_rate_the_429s_taught_is_shown_with_the_option_to_pass_next_time(
    tmp_path: Path,
) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 40)
    out = tmp_path / "results.jsonl"
    config = SimConfig(rpm=1200, latency_ms=20, limit_headers=False)
    with EmbeddedSimulator(config) as sim:
        args = ["--model", "openai:gpt-4o-mini", "--base-url", sim.base_url + "/v1"]
        done = run_cli("run", str(prompts), "-o", str(out), *args, "--json", OPENAI_API_KEY="k")
        shown = run_cli("run", str(prompts), "-o", str(out), *args, "--restart", OPENAI_API_KEY="k")
    assert done.returncode == 0, done.stderr
    summary = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert summary["ok"] == 40 and summary["http_429"] > 0
    assert summary["learned_from"] == "429s" and summary["learned_rpm"] > 0
    assert "the provider announced no limit; its 429s taught a pace of" in shown.stderr
    assert "pass --rpm " in shown.stderr
