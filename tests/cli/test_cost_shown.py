"""Cost shown while a job runs and after: the live progress line says what the run spent and
its projected total, `llmgather status` says what the job spent and its projected total (from
the store's cost column), and a run whose prompts hit the provider's prompt cache is priced on
the normalised usage, its summary the sum of the lines to the cent."""

from __future__ import annotations

import re
import signal
import sqlite3
from decimal import Decimal
from pathlib import Path

import genai_prices
import orjson

from llmgather.jobs.store import store_path_for
from llmgather.sim import EmbeddedSimulator, SimConfig
from tests.cli.runprocess import run_args, start, wait_for_progress
from tests.clihelpers import read_jsonl, run_cli, write_prompts

# Dear prices, so that a few short prompts cost whole cents and the figures shown move.
PRICES = {"gpt-4o-mini": {"input": 1000, "output": 2000}}
SPENT = re.compile(r"\$([\d,.]+) spent, projected (?:\$([\d,.]+)|-)")
PROGRESS = re.compile(r"(\d+)/(\d+) ok (\d+) failed (\d+)")


def money(text: str) -> Decimal:
    return Decimal(text.replace(",", ""))


def half_digit(shown: Decimal) -> Decimal:
    return Decimal(10) ** int(shown.as_tuple().exponent) / 2


def line_cost(line: dict) -> Decimal:
    return Decimal(repr(line["cost"]))


def test_the_progress_line_shows_spent_and_projected(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 30)
    out = tmp_path / "out.jsonl"
    prices = tmp_path / "prices.json"
    prices.write_bytes(orjson.dumps(PRICES))
    with EmbeddedSimulator(SimConfig(latency_ms=0)) as sim:
        done = run_cli(
            "run", str(prompts), "-o", str(out), "--model", "openai:gpt-4o-mini",
            "--base-url", sim.base_url + "/v1", "--api-key", "k", "--rpm", "600",
            "--prices", str(prices),
            TTY_COMPATIBLE="1",  # rich draws the progress line as on a terminal
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # Each redraw (a line that may wrap, in colours): its counts and money, read together.
    frames = re.split(r"\x1b\[2K", done.stderr.replace("\n", ""))
    plain = [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", frame) for frame in frames]
    drawn = [
        (PROGRESS.search(line), SPENT.search(line)) for line in plain if "spent, projected" in line
    ]
    assert len(drawn) >= 5, done.stderr
    partial = 0
    for counts, spent in drawn:
        assert counts is not None and spent is not None, done.stderr
        finished, total, ok, failed = map(int, counts.groups())
        assert (total, failed) == (30, 0)
        if ok == 0:
            assert spent.group(1) == "0.000000" and spent.group(2) is None  # nothing to go on
            continue
        # The average answer so far for each item left: spent / ok × total, to the shown digit.
        shown_spent, shown_projected = money(spent.group(1)), money(spent.group(2))
        expected = shown_spent / ok * total
        # Each figure is rounded to its last shown digit: half of one, the spent's multiplied.
        slack = half_digit(shown_projected) + half_digit(shown_spent) * total / ok
        assert abs(shown_projected - expected) <= slack, spent.group(0)
        partial += finished < total
    assert partial >= 2, done.stderr  # it projected while items were still to come
    # The last line: all answered, the projection is what was spent, the sum of the lines.
    lines = read_jsonl(out)
    total_cost = sum(map(line_cost, lines))
    last = drawn[-1][1]
    assert last is not None
    assert money(last.group(1)) == money(last.group(2)) == round(total_cost, 2) > 0


def test_status_shows_what_an_interrupted_job_spent_and_its_projection(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 400)
    out = tmp_path / "out.jsonl"
    prices = tmp_path / "prices.json"
    prices.write_bytes(orjson.dumps(PRICES))
    with EmbeddedSimulator(SimConfig(latency_ms=100, seed=3)) as sim:
        process = start(run_args(sim, prompts, out, "--prices", str(prices)))
        try:
            wait_for_progress(out, at_least=40)
        finally:
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=10)
    shown = run_cli("status", str(out), "--json")
    assert shown.returncode == 0, shown.stderr
    stats = orjson.loads(shown.stdout)
    assert 0 < stats["done"] < 400 and stats["pending"] == 400 - stats["done"]
    # What the store recorded, read here from the results themselves.
    with sqlite3.connect(store_path_for(str(out))) as conn:
        costs = [
            Decimal(repr(orjson.loads(result)["cost"]))
            for (result,) in conn.execute("SELECT result FROM items WHERE status = 'ok'")
        ]
    spent = sum(costs, Decimal(0))
    assert Decimal(repr(stats["cost_usd"])) == spent > 0
    projected = spent + spent / len(costs) * stats["pending"]
    assert Decimal(repr(stats["projected_usd"])) == projected.quantize(Decimal("1e-9"))
    table = run_cli("status", str(out))
    assert f"${spent:,.6f}" in table.stdout
    assert f"${projected:,.6f} (with {stats['pending']:,} pending)" in table.stdout


def test_prompt_cache_reads_are_priced_and_the_total_is_the_sum_of_the_lines(
    tmp_path: Path,
) -> None:
    system = "You are a careful assistant who answers in one short paragraph. " * 80
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(
        b"\n".join(
            orjson.dumps({"id": f"q{i}", "prompt": f"Question {i}?", "system": system})
            for i in range(20)
        )
        + b"\n"
    )
    out = tmp_path / "out.jsonl"
    done = run_cli("run", str(prompts), "-o", str(out), "--json", "--concurrency", "1")
    assert done.returncode == 0, done.stderr
    lines = read_jsonl(out)
    reads = [line["usage"]["cache_read_tokens"] for line in lines]
    assert reads[0] == 0 and all(read > 1024 for read in reads[1:])  # one write, then reads
    for line in lines:
        usage = line["usage"]
        priced = genai_prices.Usage(
            input_tokens=usage["input_tokens"],
            output_tokens=usage["output_tokens"],
            cache_read_tokens=usage["cache_read_tokens"],
            cache_write_tokens=usage["cache_write_tokens"],
        )
        expected = genai_prices.calc_price(priced, "gpt-4o-mini", provider_id="openai")
        assert line_cost(line) == expected.total_price.quantize(Decimal("1e-9"))
    summary = orjson.loads(done.stdout)
    total = sum(map(line_cost, lines))
    assert Decimal(repr(summary["cost_usd"])) == total
    assert round(Decimal(repr(summary["cost_usd"])), 2) == round(total, 2)


def test_a_rerun_keeps_the_cost_of_the_results_it_keeps(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 6)
    out = tmp_path / "out.jsonl"
    assert run_cli("run", str(prompts), "-o", str(out), "--quiet").returncode == 0
    edited = prompts.read_text().replace("Question 2?", "Question two, reworded?")
    prompts.write_text(edited)
    done = run_cli("run", str(prompts), "-o", str(out), "--json", "--resend-changed")
    assert done.returncode == 0, done.stderr
    summary = orjson.loads(done.stdout)
    lines = read_jsonl(out)
    assert summary["sent"] == 1 and summary["unpriced"] == 0
    assert Decimal(repr(summary["cost_usd"])) == sum(map(line_cost, lines)) > 0
    stats = orjson.loads(run_cli("status", str(out), "--json").stdout)
    assert stats["cost_usd"] == summary["cost_usd"] and stats["unpriced"] == 0
