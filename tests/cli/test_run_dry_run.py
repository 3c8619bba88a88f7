"""`llmgather run INPUT --dry-run`, as the README runs it: the figures of a small input with
invalid lines, the `--json` shape, nothing sent (a counting simulator sees no request) and no
file written, tiktoken's exact counts for an OpenAI model, the approximation said where there is
no tokenizer, and the estimate against a real run on the embedded simulator."""

from __future__ import annotations

import math
from pathlib import Path

import orjson
import pytest
import tiktoken

from llmgather.sim import EmbeddedSimulator, SimConfig
from tests.clihelpers import read_jsonl, run_cli, write_prompts
from tests.simfixtures import sim_stats_blocking

BAD_LINES = (b"{not json\n", b'{"id": "empty", "prompt": ""}\n')


def prompts_with_bad_lines(path: Path, n: int) -> Path:
    """`n` good prompts, then a malformed line (line n+1) and an empty prompt (line n+2)."""
    write_prompts(path, n)
    with path.open("ab") as file:
        file.write(b"".join(BAD_LINES))
    return path


def files_under(directory: Path) -> set[Path]:
    return set(directory.rglob("*"))


def sim_count(prompt: str) -> int:
    """What the simulator bills for a one-message prompt: 4 for the message, ~4 chars a token."""
    return 4 + math.ceil(len(prompt) / 4)


def tiktoken_env(tmp_path: Path) -> dict[str, str]:
    """tiktoken's cache in a fresh folder: the dry run must fill it from the installed files."""
    return {"TIKTOKEN_CACHE_DIR": str(tmp_path / "tiktoken-cache")}


def test_the_readme_command_prints_the_figures_and_writes_nothing(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    prompts = prompts_with_bad_lines(work / "prompts.jsonl", 20)
    before = files_under(work)
    done = run_cli("run", str(prompts), "--dry-run", "--max-tokens", "50", "--rpm", "600")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Dry run, nothing sent: openai:gpt-4o-mini via the built-in simulator" in out
    assert "items          20 (+ 2 invalid input lines, which a run records as failed items)" in out
    assert f"{prompts}:21: malformed JSON" in out
    assert f'{prompts}:22: field "prompt" must be a non-empty string' in out
    inputs = sum(sim_count(f"Question {i}?") for i in range(20))
    assert f"input tokens   {inputs:,} (counted with the simulator's own count)" in out
    assert "1,000 at most (max_tokens, else the simulator's longest answer)" in out
    assert "cost (USD)     $" in out and "worst case  [genai-prices " in out
    assert "time           at least 2.0 s, set by --rpm" in out
    # Nothing beside the input, and no simulator banner: none was started.
    assert files_under(work) == before
    assert "Simulator:" not in done.stderr


def test_json_has_the_documented_shape(tmp_path: Path) -> None:
    prompts = prompts_with_bad_lines(tmp_path / "prompts.jsonl", 5)
    done = run_cli("run", str(prompts), "--dry-run", "--json", "--max-tokens", "30", "--tpm", "900")
    assert done.returncode == 0, done.stderr
    data = orjson.loads(done.stdout)
    assert set(data) == {
        "dry_run", "target", "items", "invalid", "invalid_lines", "input_tokens",
        "input_tokens_exact", "counted_by", "approximate_because", "output_tokens", "cost_usd",
        "unpriced_models", "prices", "time_s", "max_cost", "rerun",
    }  # fmt: skip
    assert data["max_cost"] is None and data["rerun"] is None
    assert data["dry_run"] is True and data["items"] == 5 and data["invalid"] == 2
    assert [line.split(": ")[0] for line in data["invalid_lines"]] == [
        f"{prompts}:6",
        f"{prompts}:7",
    ]
    assert data["input_tokens_exact"] is True and data["approximate_because"] == []
    output = data["output_tokens"]
    assert set(output) == {"expected", "worst", "expected_from", "worst_from", "unbounded_items"}
    assert output["worst_from"] == "max_tokens, else the simulator's longest answer"
    assert output["worst"] == 5 * 30 and output["unbounded_items"] == 0
    assert 5 * 16 <= output["expected"] <= 5 * 30
    cost = data["cost_usd"]
    assert set(cost) == {"input", "expected", "worst"}
    assert 0 < cost["input"] < cost["expected"] < cost["worst"]
    # 60 · (input + output) / tpm, the output as expected and at its worst.
    time_s = data["time_s"]
    assert time_s["bound_by"] == "tpm"
    assert time_s["expected"] == round(60 * (data["input_tokens"] + output["expected"]) / 900, 1)
    assert time_s["worst"] == round(60 * (data["input_tokens"] + output["worst"]) / 900, 1)
    assert data["prices"].startswith("genai-prices ")


def test_nothing_is_sent_and_openai_input_is_counted_by_tiktoken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [
        "Why do some birds migrate?",
        "Zähle die Wörter: naïve café, 東京タワー, and 1234567 numbers!!",
        "def f(x):\n    return x ** 2  # squares\n\n\n",
        "   leading and trailing spaces   ",
    ]
    system = "You answer in one short sentence."
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(b"\n".join(orjson.dumps({"prompt": text}) for text in texts) + b"\n")
    with EmbeddedSimulator(SimConfig()) as sim:
        done = run_cli(
            "run", str(prompts), "--dry-run", "--json", "--system", system,
            "--model", "openai:gpt-4o-mini", "--base-url", sim.base_url + "/v1", "--api-key", "k",
            **tiktoken_env(tmp_path),
        )  # fmt: skip
        assert sim_stats_blocking(sim.base_url)["received"] == 0
    assert done.returncode == 0, done.stderr
    data = orjson.loads(done.stdout)
    assert data["counted_by"] == ["tiktoken o200k_base"] and data["input_tokens_exact"]
    # OpenAI's chat framing: 3 a message, 3 priming the reply; the role and the text encoded.
    # tiktoken's own encoding, from the cache the dry run filled (tiktoken checks its hash):
    # with no network, it could come from nowhere else.
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", tiktoken_env(tmp_path)["TIKTOKEN_CACHE_DIR"])
    encoding = tiktoken.get_encoding("o200k_base")

    def per_message(role: str, text: str) -> int:
        return 3 + len(encoding.encode(role)) + len(encoding.encode(text))

    expected = sum(3 + per_message("system", system) + per_message("user", text) for text in texts)
    assert data["input_tokens"] == expected
    # Unknown output, no max_tokens: no made-up figure, and it says what to give.
    assert data["output_tokens"]["expected"] is None and data["cost_usd"]["worst"] is None
    assert data["output_tokens"]["expected_from"] == "no figure: pass --expect-output-tokens N"


def test_without_a_tokenizer_the_approximation_is_said(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 3)
    anthropic = run_cli(
        "run", str(prompts), "--dry-run", "--model", "anthropic:claude-3-5-haiku-latest",
        "--api-key", "k",
    )  # fmt: skip
    assert anthropic.returncode == 0, anthropic.stderr
    assert (
        "approximated, about 4 characters a token: claude-3-5-haiku-latest: anthropic "
        "publishes no offline tokenizer" in anthropic.stdout
    )
    # Anthropic's adapter sends a max_tokens of its own: the worst case is bounded by it.
    assert "at most (max_tokens, else the provider's default)" in anthropic.stdout
    # tiktoken's cache turned off: no file can be read, so the approximation, and why.
    no_cache = run_cli(
        "run", str(prompts), "--dry-run", "--json", "--model", "openai:gpt-4o-mini",
        "--api-key", "k", TIKTOKEN_CACHE_DIR="",
    )  # fmt: skip
    assert no_cache.returncode == 0, no_cache.stderr
    data = orjson.loads(no_cache.stdout)
    assert data["input_tokens_exact"] is False and data["counted_by"] == ["approximation"]
    assert data["approximate_because"] == [
        "gpt-4o-mini: TIKTOKEN_CACHE_DIR is empty, which turns tiktoken's file cache off"
    ]
    assert data["input_tokens"] == sum(sim_count(f"Question {i}?") for i in range(3))


def test_the_estimate_is_within_15_percent_of_a_real_run(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    lines = [
        {"id": f"p{i}", "prompt": f"Item {i}: " + "describe the river data set. " * (i % 7)}
        for i in range(150)
    ]
    prompts.write_bytes(b"\n".join(map(orjson.dumps, lines)) + b"\n")
    estimate = run_cli("run", str(prompts), "--dry-run", "--json", "--max-tokens", "48")
    assert estimate.returncode == 0, estimate.stderr
    out = tmp_path / "out.jsonl"
    run = run_cli("run", str(prompts), "-o", str(out), "--json", "-q", "--max-tokens", "48")
    assert run.returncode == 0, run.stderr
    guessed, measured = orjson.loads(estimate.stdout), orjson.loads(run.stdout)
    assert measured["cost_usd"] == round(sum(line["cost"] for line in read_jsonl(out)), 9)
    assert guessed["input_tokens"] == measured["input_tokens"]  # the simulator's own count
    expected = guessed["cost_usd"]["expected"]
    assert abs(expected - measured["cost_usd"]) <= 0.15 * measured["cost_usd"]
    assert guessed["cost_usd"]["input"] < measured["cost_usd"] <= guessed["cost_usd"]["worst"]
    # A rerun's dry run beside the finished job sends nothing; the whole job, priced with its
    # answers' average (the same items' output), costs what the run did, up to rounding.
    again = run_cli(
        "run", str(prompts), "-o", str(out), "--dry-run", "--json", "--max-tokens", "48"
    )
    assert again.returncode == 0, again.stderr
    from_store = orjson.loads(again.stdout)
    assert from_store["output_tokens"]["expected_from"] == (
        "the average of 150 finished items in the job store"
    )
    assert from_store["items"] == 0 and from_store["rerun"]["kept_items"] == 150
    assert from_store["rerun"]["spent_usd"] == measured["cost_usd"]
    whole = from_store["rerun"]["whole_job"]
    assert abs(whole["output_tokens"]["expected"] - measured["output_tokens"]) <= 1
    assert (
        whole["cost_usd"]["expected"] == measured["cost_usd"]
        or abs(whole["cost_usd"]["expected"] - measured["cost_usd"]) <= 0.01 * measured["cost_usd"]
    )


def test_strict_refuses_and_bad_options_are_named(tmp_path: Path) -> None:
    prompts = prompts_with_bad_lines(tmp_path / "prompts.jsonl", 2)
    strict = run_cli("run", str(prompts), "--dry-run", "--strict")
    assert strict.returncode == 3
    assert "--strict: 2 invalid input lines" in strict.stderr
    missing = run_cli("run", str(tmp_path / "nowhere.jsonl"), "--dry-run")
    assert missing.returncode == 2 and "nowhere.jsonl" in missing.stderr
    no_key = run_cli("run", str(prompts), "--dry-run", "--model", "openai:gpt-4o-mini")
    assert no_key.returncode == 2 and "needs an API key" in no_key.stderr
    no_output = run_cli("run", str(prompts))
    assert no_output.returncode == 2 and "'-o' / '--output'" in no_output.stderr
    queue = run_cli("run", str(prompts), "--dry-run", "--queue", "redis://127.0.0.1:1/0")
    assert queue.returncode == 2 and "--dry-run with --queue" in queue.stderr


def test_a_model_with_no_price_has_no_cost_and_one_warning(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 4)
    done = run_cli(
        "run", str(prompts), "--dry-run", "--json", "--model", "openai:my-local-model",
        "--base-url", "http://127.0.0.1:9/v1", "--api-key", "k", "--expect-output-tokens", "20",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = orjson.loads(done.stdout)
    assert data["cost_usd"] == {"input": None, "expected": None, "worst": None}
    assert data["unpriced_models"] == ["my-local-model"]
    assert data["output_tokens"]["expected"] == 80
    warnings = [line for line in done.stderr.splitlines() if "no price is known" in line]
    assert len(warnings) == 1 and "--prices" in warnings[0]
