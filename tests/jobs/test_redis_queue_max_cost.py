"""`--max-cost` across processes: three `llmgather worker`s share one cap through the Redis
limiter (`--limiter`), real processes, a real redis-server and the simulator over loopback."""

from __future__ import annotations

import subprocess
import uuid
from decimal import Decimal
from pathlib import Path

import genai_prices
import orjson
import pytest

from llmgather.sim import EmbeddedSimulator, SimConfig
from tests.jobs.test_redis_queue import start_coordinator, start_worker, stop_all, write_prompts

MAX_TOKENS = 16  # the coordinator's


def price(input_tokens: int, output_tokens: int) -> Decimal:
    usage = genai_prices.Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    return genai_prices.calc_price(usage, "gpt-4o-mini", provider_id="openai").total_price


def run_job(
    redis_url: str, queue: str, key: str, cap: Decimal, sim: EmbeddedSimulator, tmp_path: Path
) -> tuple[int, dict]:
    prompts, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    limiter = ("--limiter", redis_url, "--limiter-key", key, "--max-cost", str(cap))
    workers = [
        start_worker(redis_url, queue, sim, tmp_path / f"w{n}.log", *limiter, "--idle-exit", "5")
        for n in range(3)
    ]
    try:
        coordinator = start_coordinator(redis_url, queue, prompts, output)
        out, err = coordinator.communicate(timeout=180)
        for worker in workers:
            worker.wait(timeout=60)
    except subprocess.TimeoutExpired:
        coordinator.kill()
        raise
    finally:
        stop_all(workers)
    assert coordinator.returncode in (0, 1), err
    return coordinator.returncode, orjson.loads(out.splitlines()[-1])


@pytest.mark.timeout(240)  # two jobs of 500 items on 3 worker processes each
def test_three_workers_share_one_cap_and_a_higher_cap_finishes_the_job(
    tmp_path: Path, redis_url: str
) -> None:
    n = 500
    write_prompts(tmp_path / "in.jsonl", n)
    worst = max(price(len(f"question {i}".encode()) + 4, MAX_TOKENS) for i in range(n))
    cap = Decimal("0.0015")  # about a third of what the 500 answers cost
    queue, key = uuid.uuid4().hex, uuid.uuid4().hex
    with EmbeddedSimulator(SimConfig(seed=3, latency_ms=20)) as sim:
        code, summary = run_job(redis_url, queue, key, cap, sim, tmp_path)
        assert code == 1
        lines = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
        assert sorted(line["id"] for line in lines) == sorted(f"item-{i}" for i in range(n))
        ok = [line for line in lines if line["status"] == "ok"]
        unsent = [line for line in lines if line["status"] != "ok"]
        assert ok and unsent and summary["unsent"] == len(unsent)
        assert {line["error"]["type"] for line in unsent} == {"budget_exhausted"}
        assert all(line["attempts"] == 0 for line in unsent)
        spent = sum(Decimal(repr(line["cost"])) for line in ok)
        assert spent <= cap + worst  # three processes, one cap
        assert sim.stats["received"] == len(ok)

        # A higher cap on the same key goes on from what was spent, sending only the unsent.
        code, again = run_job(redis_url, queue, key, Decimal("0.05"), sim, tmp_path)
        assert code == 0 and again["ok"] == n and again["unsent"] == 0
        assert sim.stats["received"] == n
