"""`llmgather run INPUT --dry-run` beside what a run leaves, as the README runs it on the built-in
simulator: `--max-cost` checked against the estimate (and against a real capped run); a job
store beside `-o` read and never written (not its bytes, not a file beside it), an older
llmgather's store too; a partly done job estimated as the rerun sends it, the whole job beside;
and an empty input said as such."""

from __future__ import annotations

import hashlib
import math
import sqlite3
from decimal import Decimal
from pathlib import Path

import genai_prices
import orjson

from tests.clihelpers import read_jsonl, run_cli, write_prompts

N = 200
MAX_TOKENS = "60"


def prompts_file(tmp_path: Path) -> Path:
    return write_prompts(tmp_path / "prompts.jsonl", N, prefix="Tell me more about item")


def sim_count(prompt: str) -> int:
    """What the simulator bills for a one-message prompt: 4 for the message, ~4 chars a token."""
    return 4 + math.ceil(len(prompt) / 4)


def worst_price(prompt: str) -> Decimal:
    usage = genai_prices.Usage(input_tokens=sim_count(prompt), output_tokens=int(MAX_TOKENS))
    return genai_prices.calc_price(usage, "gpt-4o-mini", provider_id="openai").total_price


def dry_run_json(*args: str) -> dict:
    done = run_cli("run", *args, "--dry-run", "--json", "--max-tokens", MAX_TOKENS)
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout)


def snapshot(directory: Path) -> dict[str, str]:
    """Every file beside the job and its bytes' hash."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
    }


def test_max_cost_is_checked_against_the_estimate_and_a_capped_run(tmp_path: Path) -> None:
    prompts = prompts_file(tmp_path)
    free = dry_run_json(str(prompts))
    expected, worst = free["cost_usd"]["expected"], free["cost_usd"]["worst"]
    assert 0 < expected < worst

    # Between the expected and the worst cost: the text says so, with the items past the cap
    # at worst: each item's worst case summed in input order, as the cap reserves them.
    cap = Decimal(str(round((expected + worst) / 2, 6)))
    done = run_cli(
        "run", str(prompts), "--dry-run", "--max-tokens", MAX_TOKENS, "--max-cost", str(cap),
        "--rpm", "600",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    running, past = Decimal(0), 0
    for i in range(N):
        running += worst_price(f"Tell me more about item {i}?")
        past += running > cap
    assert past > 0
    assert (
        f"cost cap       the cap ${cap} covers the expected cost but not the worst case: "
        f"about {past} items would be left unsent" in done.stdout
    )
    assert "time           at least 20.0 s, set by --rpm" in done.stdout  # the cap sets no time
    data = dry_run_json(str(prompts), "--max-cost", str(cap))
    assert data["max_cost"] == {
        "usd": float(cap), "spent_usd": 0.0, "covers_expected": True, "covers_worst": False,
        "unsent_expected": 0, "unsent_worst": past,
    }  # fmt: skip
    roomy = dry_run_json(str(prompts), "--max-cost", str(worst * 2))["max_cost"]
    assert roomy["covers_worst"] is True and roomy["unsent_worst"] == 0

    # Below the expected cost: about as many left unsent as a real run with that cap leaves.
    tight = Decimal(str(round(expected / 3, 6)))
    estimate = dry_run_json(str(prompts), "--max-cost", str(tight))["max_cost"]
    assert estimate["covers_expected"] is False and estimate["covers_worst"] is False
    out = tmp_path / "out.jsonl"
    run = run_cli(
        "run", str(prompts), "-o", str(out), "--max-tokens", MAX_TOKENS, "--max-cost", str(tight),
        "--json", "-q",
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    unsent = orjson.loads(run.stdout)["unsent"]
    assert abs(estimate["unsent_expected"] - unsent) <= 0.05 * N
    assert estimate["unsent_expected"] <= estimate["unsent_worst"]


def test_a_partly_done_job_is_estimated_as_its_rerun_sends_and_its_store_is_not_written(
    tmp_path: Path,
) -> None:
    prompts = prompts_file(tmp_path)
    out = tmp_path / "out.jsonl"
    whole = dry_run_json(str(prompts))
    cap = Decimal(str(round(whole["cost_usd"]["expected"] / 2, 6)))
    run = run_cli(
        "run", str(prompts), "-o", str(out), "--max-tokens", MAX_TOKENS, "--max-cost", str(cap),
        "--json", "-q",
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    summary = orjson.loads(run.stdout)
    lines = {line["id"]: line for line in read_jsonl(out)}
    ok = [i for i in range(N) if lines[f"q{i}"]["status"] == "ok"]
    assert 0 < len(ok) < N and summary["unsent"] == N - len(ok)
    before = snapshot(tmp_path)

    again = dry_run_json(str(prompts), "-o", str(out), "--max-cost", str(cap * 4))
    assert snapshot(tmp_path) == before  # the store's bytes, and no -wal/-shm beside it
    # The rerun sends the items the cap left unsent; the done ones are out of the figures.
    rerun = again["rerun"]
    assert rerun["kept_items"] == len(ok) and again["items"] == N - len(ok)
    spent = sum(Decimal(repr(lines[f"q{i}"]["cost"])) for i in ok)
    assert Decimal(repr(rerun["spent_usd"])) == spent
    unsent_input = sum(
        sim_count(f"Tell me more about item {i}?") for i in range(N) if i not in set(ok)
    )
    assert again["input_tokens"] == unsent_input
    assert rerun["whole_job"]["items"] == N
    assert rerun["whole_job"]["input_tokens"] == whole["input_tokens"]
    assert again["cost_usd"]["worst"] < rerun["whole_job"]["cost_usd"]["worst"]
    # The cap counts what the job spent already: what it leaves is the cap less that.
    assert again["max_cost"]["spent_usd"] == float(spent)

    text = run_cli(
        "run", str(prompts), "-o", str(out), "--dry-run", "--max-tokens", MAX_TOKENS
    ).stdout
    assert (
        f"job store      {len(ok)} of {N} items done, ${spent:,.6f} spent: a rerun keeps them, "
        "so the figures below leave them out" in text
    )
    assert f"items          {N - len(ok)} to send" in text
    assert f"whole job      {N} items: $" in text

    # An edited done item is sent again; --restart discards the job: every item is sent.
    edited = prompts.read_text().replace(
        f'"Tell me more about item {ok[0]}?"', '"Tell me more about item zero?"'
    )
    prompts.write_text(edited)
    assert dry_run_json(str(prompts), "-o", str(out))["items"] == N - len(ok) + 1
    restart = dry_run_json(str(prompts), "-o", str(out), "--restart")
    assert restart["items"] == N and restart["rerun"] is None
    assert snapshot(tmp_path) | {"prompts.jsonl": ""} == before | {"prompts.jsonl": ""}

    # A live store (a run holds it: its -wal is there) is read as it is, and left so.
    store = tmp_path / "out.jsonl.llmgather.sqlite"
    holder = sqlite3.connect(store, isolation_level=None)
    try:
        holder.execute("BEGIN")
        holder.execute("SELECT count(*) FROM items").fetchone()
        held = snapshot(tmp_path)
        assert "out.jsonl.llmgather.sqlite-wal" in held
        live = dry_run_json(str(prompts), "-o", str(out))
        assert live["rerun"]["kept_items"] == len(ok) - 1
        assert snapshot(tmp_path) == held
    finally:
        holder.close()


def test_an_older_store_is_read_without_migrating_it(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 30)
    out = tmp_path / "out.jsonl"
    run = run_cli("run", str(prompts), "-o", str(out), "--max-tokens", MAX_TOKENS, "-q")
    assert run.returncode == 0, run.stderr
    # The shape of a store an older llmgather made: none of the columns added since.
    store = tmp_path / "out.jsonl.llmgather.sqlite"
    conn = sqlite3.connect(store, isolation_level=None)
    for table in ("items", "retired"):
        for column in ("digest", "metadata", "cost_nanos"):
            conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    conn.close()
    before = snapshot(tmp_path)

    data = dry_run_json(str(prompts), "-o", str(out))
    assert snapshot(tmp_path) == before
    costs = sum(Decimal(repr(line["cost"])) for line in read_jsonl(out))
    assert data["rerun"]["kept_items"] == 30 and data["items"] == 0
    assert Decimal(repr(data["rerun"]["spent_usd"])) == costs  # read from the results' JSON
    assert (
        data["output_tokens"]["expected_from"]
        == "the average of 30 finished items in the job store"
    )


def test_an_empty_input_says_there_is_nothing_to_count(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    done = run_cli("run", str(empty), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "items          0\n" in done.stdout
    assert "input tokens   0 (no item to count)" in done.stdout
    assert "counted with )" not in done.stdout
