"""Part (1) of `llmgather bench cost`: the hard budget (`--max-cost`) at half of what a job needs.

    single    one `llmgather run` at concurrency 64, its own cap
    redis     `llmgather run --queue` and 3 `llmgather worker`s, one cap shared through the Redis
              limiter (`--limiter`, the bench's own redis-server)

On the simulator over loopback, with answers of random length (1 to 64 words, drawn per prompt
from the seed) under `max_tokens` 64. What the whole job needs is measured first, by a run
without a cap. Each row: the cap, what was spent, spent/cap, how far past the cap against one
request's reservation (the bound the issue sets: never more than that), items ok and left
unsent, and items lost (must be 0).

    result = run_cost_cap(Path("bench-results/work/cost"), items=2000)
    print(result.to_dict())
"""

from __future__ import annotations

import random
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from llmgather._types import Usage
from llmgather.bench.redis_server import RedisServer
from llmgather.limits.tokens import input_token_bound
from llmgather.pricing import GenaiPrices
from llmgather.pricing.base import STANDARD
from llmgather.sim import EmbeddedSimulator, SimConfig

__all__ = ["CostCapResult", "run_cost_cap"]

MAX_TOKENS = 64
CONCURRENCY = 64
WORKERS = 3
TARGET = "openai:gpt-4o-mini"


@dataclass(frozen=True)
class CostCapResult:
    """The rows (one per setup) and what the job needed, in USD."""

    needed_usd: float
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": "cost cap", "needed_usd": self.needed_usd, "rows": self.rows}


def run_cost_cap(
    work: Path, *, items: int = 2000, seed: int = 7, latency_ms: float = 20.0, timeout: float = 600
) -> CostCapResult:
    """Both setups on `items` prompts, in `work` (made if missing)."""
    work.mkdir(parents=True, exist_ok=True)
    prompts = work / "prompts.jsonl"
    worst = _worst_reservation(_write_prompts(prompts, items, seed))
    with EmbeddedSimulator(SimConfig(latency_ms=latency_ms, seed=seed)) as sim:
        whole = _run(sim, prompts, work / "whole.jsonl", [], timeout)
        needed = Decimal(repr(whole["cost_usd"]))
        cap = (needed / 2).quantize(Decimal("1e-6"))
        single = _run(sim, prompts, work / "single.jsonl", ["--max-cost", str(cap)], timeout)
        rows = [_row("single process", cap, worst, items, work / "single.jsonl", single)]
        with RedisServer(work / "redis") as redis:
            queued = _run_queue(sim, redis.url, prompts, work, cap, timeout)
        rows.append(
            _row(f"{WORKERS} workers, Redis", cap, worst, items, work / "queued.jsonl", queued)
        )
    return CostCapResult(needed_usd=float(needed), rows=rows)


def _write_prompts(path: Path, n: int, seed: int) -> list[str]:
    # Prompts of varying length too; the simulator's answer length is drawn from each prompt.
    rng = random.Random(seed)
    prompts = [
        f"Item {i}: " + " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 30)))
        for i in range(n)
    ]
    path.write_bytes(
        b"".join(orjson.dumps({"id": f"i{i}", "prompt": p}) + b"\n" for i, p in enumerate(prompts))
    )
    return prompts


_WORDS = ("why", "sky", "blue", "river", "summary", "explain", "birds", "migrate", "stone", "cat")


def _worst_reservation(prompts: list[str]) -> Decimal:
    """One request's reservation, the largest of the job: its bound, for the rows."""
    prices = GenaiPrices()
    longest = max(prompts, key=lambda p: len(p.encode()))
    bound = input_token_bound([{"role": "user", "content": longest}])
    provider, _, model = TARGET.partition(":")
    found = prices.price(provider, model, Usage(bound, MAX_TOKENS), STANDARD)
    assert found is not None
    return found


def _llmgather(*args: str) -> list[str]:
    return [sys.executable, "-m", "llmgather", *args]


def _run(
    sim: EmbeddedSimulator, prompts: Path, out: Path, extra: list[str], timeout: float
) -> dict[str, Any]:
    args = _llmgather(
        "run", str(prompts),
        "-o", str(out), "--model", TARGET, "--base-url", sim.base_url + "/v1",
        "--api-key", "bench", "--max-tokens", str(MAX_TOKENS), "-c", str(CONCURRENCY),
        "--json", "-q", "--restart", *extra,
    )  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"llmgather run failed ({done.returncode}): {done.stderr[-2000:]}")
    return dict(orjson.loads(done.stdout.splitlines()[-1]))


def _run_queue(
    sim: EmbeddedSimulator, redis_url: str, prompts: Path, work: Path, cap: Decimal,
    timeout: float,
) -> dict[str, Any]:  # fmt: skip
    queue, key = uuid.uuid4().hex, uuid.uuid4().hex
    workers = []
    for n in range(WORKERS):
        args = _llmgather(
            "worker", "--queue", redis_url, "--queue-name", queue,
            "--model", TARGET, "--base-url", sim.base_url + "/v1", "--api-key", "bench",
            "--concurrency", str(CONCURRENCY), "--limiter", redis_url, "--limiter-key", key,
            "--max-cost", str(cap), "--idle-exit", "3",
        )  # fmt: skip
        with (work / f"worker{n}.log").open("wb") as log:
            workers.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))
    try:
        args = _llmgather(
            "run", str(prompts), "-o", str(work / "queued.jsonl"), "--restart",
            "--queue", redis_url, "--queue-name", queue, "--max-tokens", str(MAX_TOKENS),
            "--json", "-q",
        )  # fmt: skip
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        if done.returncode not in (0, 1):
            raise RuntimeError(f"llmgather run --queue failed: {done.stderr[-2000:]}")
        for worker in workers:
            worker.wait(timeout=60)
        return dict(orjson.loads(done.stdout.splitlines()[-1]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


def _row(
    setup: str, cap: Decimal, worst: Decimal, items: int, out: Path, summary: dict[str, Any]
) -> dict[str, Any]:
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines() if line.strip()]
    ok_cost = sum(
        (Decimal(repr(line["cost"])) for line in lines if line["status"] == "ok"), Decimal(0)
    )
    # What the cap counted where this process kept it (the answers' cost and the reservations
    # of sends whose cost never came); for the queue, the answers' cost (the count is in Redis).
    spent = Decimal(repr(summary["spent_usd"])) if summary.get("spent_usd") is not None else ok_cost
    ids = {line["id"] for line in lines}
    return {
        "setup": setup,
        "cap_usd": float(cap),
        "spent_usd": float(spent),
        "spent_over_cap": round(float(spent / cap), 4),
        "past_cap_usd": float(max(Decimal(0), spent - cap)),
        "one_reservation_usd": float(worst),
        "within_bound": spent <= cap + worst,
        "ok": summary["ok"],
        "unsent": summary["unsent"],
        "failed": summary["failed"],
        "lost": items - len(ids),
    }
