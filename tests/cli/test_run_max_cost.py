"""`llmgather run --max-cost`: a hard budget. Against the simulator over loopback HTTP, through
the CLI as a user runs it: the cap holds under concurrency 64 with answers of varying length and
retries, never passed by more than one request's reservation; exactly the items it left unsent
are marked, and a rerun with a higher cap sends only those; a `kill -9` forgets no spend."""

from __future__ import annotations

import signal
import uuid
from decimal import Decimal
from pathlib import Path

import genai_prices
import orjson
import pytest

from llmgather.sim import EmbeddedSimulator, FaultPlan, SimConfig
from tests.cli.runprocess import start, wait_for_progress
from tests.clihelpers import read_jsonl, run_cli, write_prompts

MAX_TOKENS = 64  # the simulator's answers run 1 to 64 words: every length is seen


def price(input_tokens: int, output_tokens: int) -> Decimal:
    usage = genai_prices.Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    return genai_prices.calc_price(usage, "gpt-4o-mini", provider_id="openai").total_price


def reservation(prompt: str) -> Decimal:
    """One request's worst case, as the issue defines it: the prompt's token bound (its bytes
    and the message's overhead of 4) at the input price, max_tokens at the output price."""
    return price(len(prompt.encode()) + 4, MAX_TOKENS)


def line_cost(line: dict) -> Decimal:
    return Decimal(repr(line["cost"]))


def capped_run(sim: EmbeddedSimulator, prompts: Path, out: Path, cap: Decimal, *extra: str):
    return run_cli(
        "run", str(prompts), "-o", str(out), "--model", "openai:gpt-4o-mini",
        "--base-url", sim.base_url + "/v1", "--api-key", "k", "--json",
        "--max-tokens", str(MAX_TOKENS), "--max-attempts", "20", "--max-cost", str(cap), *extra,
    )  # fmt: skip


@pytest.mark.timeout(180)  # three runs of 400 items (~20 s alone, far more under the suite)
def test_the_cap_holds_under_concurrency_64_with_retries_and_a_rerun_finishes(
    tmp_path: Path,
) -> None:
    n = 400
    prompts = write_prompts(tmp_path / "prompts.jsonl", n)
    worst = max(reservation(f"Question {i}?") for i in range(n))
    faults = FaultPlan.parse("500=0.05,429=0.05,reset=0.02")
    with EmbeddedSimulator(SimConfig(latency_ms=30, seed=5, faults=faults)) as sim:
        # What the whole job costs, measured by a run without a cap.
        whole = capped_run(sim, prompts, tmp_path / "whole.jsonl", Decimal(1000))
        assert whole.returncode == 0, whole.stderr
        needed = Decimal(repr(orjson.loads(whole.stdout)["cost_usd"]))
        cap = (needed / 2).quantize(Decimal("1e-6"))

        out = tmp_path / "out.jsonl"
        done = capped_run(sim, prompts, out, cap, "--concurrency", "64")
        assert done.returncode == 1, done.stderr
        summary = orjson.loads(done.stdout)
        lines = read_jsonl(out)
        assert sorted(line["id"] for line in lines) == sorted(f"q{i}" for i in range(n))
        unsent = [line for line in lines if line["status"] == "error"]
        assert {line["error"]["type"] for line in unsent} == {"budget_exhausted"}
        assert summary["unsent"] == len(unsent) > 0 and summary["failed"] == 0
        assert summary["ok"] + summary["unsent"] == n and summary["pending"] == 0
        # Never sent, but for an item whose retry the cap refused (sent, failed, charged).
        assert sum(line["attempts"] > 0 for line in unsent) <= summary["retries"]
        assert summary["retries"] > 0  # the faults did come
        spent = Decimal(repr(summary["spent_usd"]))
        ok_cost = sum(line_cost(line) for line in lines if line["status"] == "ok")
        # What the cap counted: the answers' real cost, and the reservations of the sends
        # whose cost never came (a 500, a reset): never more than one reservation past it.
        assert ok_cost <= spent <= cap + worst
        assert summary["max_cost"] == float(cap)
        assert "rerun with a higher --max-cost" in summary["hint"].lower()

        # A rerun with a higher cap sends exactly the items left unsent, without --retry-failed.
        received = sim.stats["received"]
        rerun = capped_run(sim, prompts, out, needed * 2, "--concurrency", "64")
        assert rerun.returncode == 0, rerun.stderr
        again = orjson.loads(rerun.stdout)
        assert again["sent"] == len(unsent) and again["ok"] == n and again["unsent"] == 0
        assert sim.stats["received"] - received >= len(unsent)
        finished = read_jsonl(out)
        assert all(line["status"] == "ok" for line in finished) and len(finished) == n
        assert Decimal(repr(again["spent_usd"])) <= needed * 2


@pytest.mark.timeout(120)
def test_kill_9_mid_run_forgets_no_spend(tmp_path: Path) -> None:
    n = 300
    prompts = write_prompts(tmp_path / "prompts.jsonl", n)
    worst = max(reservation(f"Question {i}?") for i in range(n))
    with EmbeddedSimulator(SimConfig(latency_ms=40, seed=8)) as sim:
        whole = capped_run(sim, prompts, tmp_path / "whole.jsonl", Decimal(1000))
        needed = Decimal(repr(orjson.loads(whole.stdout)["cost_usd"]))
        cap = (needed / 2).quantize(Decimal("1e-6"))
        out = tmp_path / "out.jsonl"
        args = [
            "run", str(prompts), "-o", str(out), "--model", "openai:gpt-4o-mini",
            "--base-url", sim.base_url + "/v1", "--api-key", "k", "--quiet",
            "--max-tokens", str(MAX_TOKENS), "--max-cost", str(cap), "--concurrency", "8",
        ]  # fmt: skip
        process = start(args)
        wait_for_progress(out, at_least=40)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
        first = [line for line in read_jsonl(out) if line["status"] == "ok"]
        assert 0 < len(first) < n
        resumed = run_cli(*args, "--json")
    assert resumed.returncode == 1, resumed.stderr
    summary = orjson.loads(resumed.stdout)
    lines = read_jsonl(out)
    assert sorted(line["id"] for line in lines) == sorted(f"q{i}" for i in range(n))
    ok_cost = sum(line_cost(line) for line in lines if line["status"] == "ok")
    # Over both runs, the killed one's spend counted: not a second cap's worth. The sends the
    # kill cut off count at their reservation (their answers never came).
    assert ok_cost <= Decimal(repr(summary["spent_usd"])) <= cap + worst
    assert summary["unsent"] == n - summary["ok"] > 0


def test_a_bad_cap_or_an_unpriced_model_is_refused_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 3)
    out = tmp_path / "out.jsonl"
    for bad in ("-1", "ten", "0"):
        done = run_cli("run", str(prompts), "-o", str(out), "--max-cost", bad)
        assert done.returncode == 2 and "--max-cost" in done.stderr, done.stderr
    with EmbeddedSimulator(SimConfig()) as sim:
        done = run_cli(
            "run", str(prompts), "-o", str(out), "--max-cost", "1",
            "--model", "my-local-model", "--base-url", sim.base_url + "/v1", "--api-key", "k",
        )  # fmt: skip
        assert sim.stats["received"] == 0
    assert done.returncode == 2
    assert "my-local-model" in done.stderr and "--prices" in done.stderr
    assert not out.exists()


def test_the_readme_command_stops_at_the_cap(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 200)
    out = tmp_path / "results.jsonl"
    done = run_cli("run", str(prompts), "-o", str(out), "--max-cost", "0.001")
    assert done.returncode == 1, done.stderr
    assert "unsent (the cost cap)" in done.stderr
    assert "--max-cost without --max-tokens" in done.stderr  # its reservations bound nothing
    assert "spent of the $0.001 cap" in done.stderr.replace("0.0010", "0.001")
    assert "Rerun with a higher --max-cost to send exactly those" in done.stderr
    status = run_cli("status", str(out))
    assert "unsent (cost cap)" in status.stdout


@pytest.mark.timeout(120)
def test_a_capped_rerun_counts_what_an_uncapped_run_spent(tmp_path: Path) -> None:
    """Only a capped run writes the spend ledger: an uncapped run interrupted, then rerun with
    --max-cost, must count the lines it answered, not spend a whole cap on top of them."""
    n = 200
    prompts = write_prompts(tmp_path / "prompts.jsonl", n)
    worst = max(reservation(f"Question {i}?") for i in range(n))
    out = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(latency_ms=40, seed=3)) as sim:
        args = [
            "run", str(prompts), "-o", str(out), "--model", "openai:gpt-4o-mini",
            "--base-url", sim.base_url + "/v1", "--api-key", "k", "--quiet",
            "--max-tokens", str(MAX_TOKENS), "--concurrency", "4",
        ]  # fmt: skip
        process = start(args)  # no cap
        wait_for_progress(out, at_least=30)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
        first = [line for line in read_jsonl(out) if line["status"] == "ok"]
        assert 30 <= len(first) < n / 2
        first_cost = sum(line_cost(line) for line in first)
        # Room for a fifth more than the uncapped run spent: far less than what is left.
        cap = (first_cost * Decimal("1.2")).quantize(Decimal("1e-6"))
        rerun = run_cli(*args, "--max-cost", str(cap), "--json")
    assert rerun.returncode == 1, rerun.stderr
    summary = orjson.loads(rerun.stdout)
    lines = read_jsonl(out)
    ok_cost = sum(line_cost(line) for line in lines if line["status"] == "ok")
    # The uncapped run's spend counted: the rerun spent at most what the cap had left.
    assert ok_cost - first_cost <= cap - first_cost + worst
    assert ok_cost <= Decimal(repr(summary["spent_usd"])) <= cap + worst
    assert summary["unsent"] > 0 and summary["ok"] + summary["unsent"] == n


@pytest.mark.timeout(120)
def test_a_jobs_cap_is_its_own_where_its_rate_limits_are_shared_through_redis(
    tmp_path: Path, redis_url: str
) -> None:
    # Two jobs share one key's rate limits through Redis (`--limiter`), each with its own
    # cap: the second is not refused for what the first spent, and a rerun of the first goes
    # on from its own spend, counted in its store.
    n = 120
    worst = max(reservation(f"Question {i}?") for i in range(n))
    shared = ("--limiter", redis_url, "--limiter-key", uuid.uuid4().hex, "--rpm", "60000")
    with EmbeddedSimulator(SimConfig(latency_ms=10, seed=4)) as sim:
        whole = capped_run(sim, write_prompts(tmp_path / "a.jsonl", n), tmp_path / "w.jsonl",
                           Decimal(1000))  # fmt: skip
        cap = (Decimal(repr(orjson.loads(whole.stdout)["cost_usd"])) / 2).quantize(Decimal("1e-6"))
        summaries = []
        for job in ("a", "b"):
            prompts = write_prompts(tmp_path / f"{job}.jsonl", n)
            done = capped_run(sim, prompts, tmp_path / f"{job}-out.jsonl", cap, *shared)
            assert done.returncode == 1, done.stderr
            summaries.append(orjson.loads(done.stdout))
        for summary in summaries:
            assert 0 < summary["ok"] < n and summary["unsent"] == n - summary["ok"]
            assert Decimal(repr(summary["spent_usd"])) <= cap + worst
        # The same cap again: job a's spend is its own, so nothing more fits.
        received = sim.stats["received"]
        again = capped_run(sim, tmp_path / "a.jsonl", tmp_path / "a-out.jsonl", cap, *shared)
        assert again.returncode == 1 and sim.stats["received"] - received <= 1
        assert orjson.loads(again.stdout)["ok"] == summaries[0]["ok"]
