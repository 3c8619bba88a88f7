"""Every line of `llmgather run` carries its cost, priced independently here from genai-prices,
and the summary's total is the sum of the lines to the last digit: against the embedded
simulator as the README runs it, with a prices file, and for a model no table knows."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import genai_prices
import orjson

from llmgather.sim import EmbeddedSimulator, SimConfig
from tests.clihelpers import read_jsonl, run_cli, write_prompts


def genai_cost(model: str, usage: dict[str, int]) -> Decimal:
    priced = genai_prices.Usage(
        input_tokens=usage["input_tokens"], output_tokens=usage["output_tokens"]
    )
    return genai_prices.calc_price(priced, model, provider_id="openai").total_price


def line_cost(line: dict) -> Decimal:
    return Decimal(repr(line["cost"]))  # the number as the line shows it


def test_each_line_costs_price_times_usage_and_the_total_is_their_sum(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 12)
    out = tmp_path / "out.jsonl"
    done = run_cli("run", str(prompts), "-o", str(out), "--json")
    assert done.returncode == 0, done.stderr
    lines = read_jsonl(out)
    assert len(lines) == 12
    for line in lines:
        assert line["cost_basis"] == "standard"
        expected = genai_cost("gpt-4o-mini", line["usage"]).quantize(Decimal("1e-9"))
        assert line_cost(line) == expected > 0
    summary = orjson.loads(done.stdout)
    assert Decimal(repr(summary["cost_usd"])) == sum(map(line_cost, lines))
    assert summary["unpriced"] == 0
    shown = run_cli("status", str(out))
    assert f"${summary['cost_usd']:,.6f}" in shown.stdout


def test_a_prices_file_changes_the_price(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 4)
    out = tmp_path / "out.jsonl"
    prices = tmp_path / "prices.json"
    prices.write_bytes(orjson.dumps({"gpt-4o-mini": {"input": 1000, "output": 2000}}))
    done = run_cli("run", str(prompts), "-o", str(out), "--prices", str(prices), "--json")
    assert done.returncode == 0, done.stderr
    lines = read_jsonl(out)
    for line in lines:
        usage = line["usage"]
        expected = (usage["input_tokens"] * 1000 + usage["output_tokens"] * 2000) / Decimal(
            1_000_000
        )
        assert line_cost(line) == expected
    assert Decimal(repr(orjson.loads(done.stdout)["cost_usd"])) == sum(map(line_cost, lines))


def test_a_bad_prices_file_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 2)
    prices = tmp_path / "prices.json"
    prices.write_text('{"gpt-4o-mini": {"input": 1}}')
    done = run_cli("run", str(prompts), "-o", str(tmp_path / "o.jsonl"), "--prices", str(prices))
    assert done.returncode == 2
    assert "--prices" in done.stderr and "needs both input and output" in done.stderr


def test_a_model_no_table_knows_costs_null_with_one_warning(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 6)
    out = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(latency_ms=0)) as sim:
        done = run_cli(
            "run", str(prompts), "-o", str(out), "--json",
            "--model", "my-local-model", "--base-url", sim.base_url + "/v1", "--api-key", "k",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = read_jsonl(out)
    assert [line["status"] for line in lines] == ["ok"] * 6
    assert all(line["cost"] is None and line["cost_basis"] is None for line in lines)
    warnings = [line for line in done.stderr.splitlines() if "no price is known" in line]
    assert len(warnings) == 1, done.stderr
    assert "my-local-model" in warnings[0] and "--prices" in warnings[0]
    summary = orjson.loads(done.stdout)
    assert summary["cost_usd"] == 0 and summary["unpriced"] == 6
