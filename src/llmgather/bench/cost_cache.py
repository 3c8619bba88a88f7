"""cost, part (2): a finished job rerun with one line changed, with and without the response
cache: the requests the simulator received and the wall time of each run, in the same run.

    first run  ─ `run --cache` ─▶ every item sent, every clean answer kept
    one line of the input changed
    uncached   ─ `run --restart` ─────────▶ every item sent again
    cached     ─ `run --restart --cache` ─▶ only the changed line sent

Each run is `llmgather run` as a user types it, a process of its own (start-up included in
its wall time), against a `llmgather sim` process that counts what it receives.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from llmgather.bench._procs import SimProcess
from llmgather.bench._workload import MAX_TOKENS, short_prompts

__all__ = ["CacheRerun", "CacheRun", "run_cost_cache"]

ITEMS = 10_000
CONCURRENCY = 64
# A short answer of a small model, as the timing and ceiling scenarios' simulators answer.
# The cached rerun's time hardly depends on it (the first run's does): at 200 ms, the
# embedded simulator's default, the first run is ~5 times shorter and the ratio ~5 times higher.
LATENCY_MS = 1000.0


@dataclass(frozen=True, slots=True)
class CacheRun:
    """One `llmgather run`: the requests the simulator received, its wall time (process
    start to exit, Python's start-up included), the job's own time (its summary's
    `elapsed_s`: input read to output written), the items its lines show answered from the
    cache, and its exit code."""

    name: str
    requests: int
    wall_s: float
    job_s: float
    cached_lines: int
    exit_code: int


@dataclass(frozen=True, slots=True)
class CacheRerun:
    """The three runs, and the cached rerun's time as a share of the first's and of the
    uncached rerun's."""

    items: int
    concurrency: int
    latency_ms: float
    first: CacheRun
    uncached: CacheRun
    cached: CacheRun

    @property
    def cached_vs_first(self) -> float:
        return self.cached.wall_s / self.first.wall_s

    @property
    def cached_vs_uncached(self) -> float:
        return self.cached.wall_s / self.uncached.wall_s

    @property
    def cached_vs_first_job(self) -> float:
        """The same ratio of the jobs' own times (without the processes' start-up)."""
        return self.cached.job_s / self.first.job_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "concurrency": self.concurrency,
            "latency_ms": self.latency_ms,
            "runs": [asdict(run) for run in (self.first, self.uncached, self.cached)],
            "cached_vs_first": round(self.cached_vs_first, 4),
            "cached_vs_uncached": round(self.cached_vs_uncached, 4),
            "cached_vs_first_job": round(self.cached_vs_first_job, 4),
        }


def run_cost_cache(
    work: Path,
    *,
    items: int = ITEMS,
    concurrency: int = CONCURRENCY,
    latency_ms: float = LATENCY_MS,
    timeout_s: float = 900.0,
) -> CacheRerun:
    """A job of `items` prompts (temperature 0) run once with `--cache`, one line changed,
    then rerun from scratch without the cache and with it; everything in `work`."""
    work.mkdir(parents=True, exist_ok=True)
    prompts = work / "prompts.jsonl"
    lines = [{"id": str(i), "prompt": p} for i, p in enumerate(short_prompts(items, tag="c"))]
    _write(prompts, lines)
    cache = f"--cache={work / 'cache.sqlite'}"
    with SimProcess(latency_ms=latency_ms, log=work / "sim.log") as sim:

        def run(name: str, output: str, *extra: str) -> CacheRun:
            args = [
                sys.executable, "-m", "llmgather", "run", str(prompts), "-o", str(work / output),
                "--model", "openai:gpt-4o-mini", "--base-url", sim.base_url + "/v1",
                "--api-key", "bench", "--concurrency", str(concurrency),
                "--max-tokens", str(MAX_TOKENS), "--temperature", "0", "--quiet", "--json", *extra,
            ]  # fmt: skip
            before = int(sim.stats()["received"])
            started = time.perf_counter()
            done = subprocess.run(args, capture_output=True, timeout=timeout_s, check=False)
            wall = time.perf_counter() - started
            received = int(sim.stats()["received"]) - before
            cached = (work / output).read_bytes().count(b'"cached":true')
            job_s = float(orjson.loads(done.stdout)["elapsed_s"]) if done.stdout else float("nan")
            return CacheRun(name, received, round(wall, 3), job_s, cached, done.returncode)

        first = run("first run (--cache)", "first.jsonl", cache)
        lines[0] = {**lines[0], "prompt": lines[0]["prompt"] + " Answer in one word."}
        _write(prompts, lines)
        uncached = run("rerun, 1 line changed (--restart)", "first.jsonl", "--restart")
        cached = run("rerun, 1 line changed (--restart --cache)", "first.jsonl", "--restart", cache)
    return CacheRerun(items, concurrency, latency_ms, first, uncached, cached)


def _write(path: Path, lines: list[dict[str, str]]) -> None:
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))


if __name__ == "__main__":  # python -m llmgather.bench.cost_cache WORK_DIR [ITEMS]
    result = run_cost_cache(
        Path(sys.argv[1]), items=int(sys.argv[2]) if len(sys.argv) > 2 else ITEMS
    )
    sys.stdout.write(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
