"""The Redis limiter across real processes: `llmgather run --limiter redis://…` processes share
one set of budgets, measured at the simulator, which enforces the same limit and answers 429
beyond it. The limiter's arithmetic is the contract suite's (`test_limiter_contract.py`, run
against a real redis-server too); here: processes, a dead Redis, a killed holder of slots.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from llmgather import Cost, Limits
from llmgather._errors import RedisUnavailableError
from llmgather.bench.redis_server import RedisServer, silent_port
from llmgather.limits.redis import RedisLimiter
from llmgather.sim import EmbeddedSimulator, SimConfig
from tests.clihelpers import cli_env, run_cli

PROCESSES = 3
PER_PROCESS = 40
RPM = 1200  # 20 a second; the simulator lets a second's worth through at once


def write_prompts(path: Path, name: str, n: int) -> Path:
    path.write_text("".join(f'{{"id": "{name}-{i}", "prompt": "{name} {i}"}}\n' for i in range(n)))
    return path


def run_processes(
    tmp_path: Path, sim: EmbeddedSimulator, extra: list[str]
) -> list[subprocess.CompletedProcess[str]]:
    """PROCESSES `llmgather run` at once, each on inputs of its own, all on one simulator."""
    procs = []
    for n in range(PROCESSES):
        prompts = write_prompts(tmp_path / f"in{n}.jsonl", f"p{n}", PER_PROCESS)
        args = [sys.executable, "-m", "llmgather", "run", str(prompts), "-o"]
        args += [str(tmp_path / f"out{n}.jsonl"), "--json", "-q", "--max-tokens", "16"]
        args += ["--model", "openai:gpt-4o-mini", "--base-url", sim.base_url + "/v1"]
        args += ["--api-key", "k", "--concurrency", "16", "--rpm", str(RPM), *extra]
        procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        done.append(
            subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(), err.decode())
        )
    return done


def status_counts(sim: EmbeddedSimulator) -> dict[str, int]:
    stats = sim.stats
    by_status = stats["by_status"]
    assert isinstance(by_status, dict)
    return by_status


def test_processes_sharing_a_redis_limiter_stay_under_the_limit_together(
    tmp_path: Path, redis_url: str
) -> None:
    with EmbeddedSimulator(SimConfig(seed=1, rpm=RPM)) as sim:
        key = uuid.uuid4().hex
        done = run_processes(tmp_path, sim, ["--limiter", redis_url, "--limiter-key", key])
        for proc in done:
            assert proc.returncode == 0, proc.stderr
            summary = orjson.loads(proc.stdout.splitlines()[-1])
            assert summary["ok"] == PER_PROCESS and summary["http_429"] == 0
        assert status_counts(sim) == {"200": PROCESSES * PER_PROCESS}


def test_the_same_processes_each_told_the_whole_limit_cause_429s(tmp_path: Path) -> None:
    """The naive setup the Redis limiter replaces: the test above can fail."""
    with EmbeddedSimulator(SimConfig(seed=1, rpm=RPM)) as sim:
        done = run_processes(tmp_path, sim, [])
        assert all(proc.returncode in (0, 1) for proc in done)  # 1: an item out of attempts
        assert status_counts(sim).get("429", 0) > 0


def test_a_redis_url_that_does_not_answer_exits_2_before_sending(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "in.jsonl", "p", 3)
    with silent_port() as port:
        url = f"redis://:s3cret-password@127.0.0.1:{port}/0"
        done = run_cli("run", str(prompts), "-o", str(tmp_path / "out.jsonl"), "--limiter", url)
    assert done.returncode == 2, done.stderr
    assert f"127.0.0.1:{url.rsplit(':', 1)[1]}" in done.stderr and "does not answer" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout
    assert not (tmp_path / "out.jsonl").exists()


def test_a_limiter_url_that_is_not_redis_is_refused(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "in.jsonl", "p", 1)
    done = run_cli("run", str(prompts), "-o", str(tmp_path / "o.jsonl"), "--limiter", "http://x")
    assert done.returncode == 2 and "is not a Redis URL" in done.stderr


HOLD_SLOTS = """
import asyncio, sys
from llmgather import Cost, Limits
from llmgather.limits.redis import RedisLimiter

async def main():
    limiter = RedisLimiter(sys.argv[1], Limits(concurrency=2), key=sys.argv[2], lease_seconds=1.0)
    await limiter.acquire(Cost())
    await limiter.acquire(Cost())
    print("holding", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_the_slots_of_a_killed_process_free_themselves(redis_url: str) -> None:
    key = uuid.uuid4().hex
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLD_SLOTS, redis_url, key, stdout=subprocess.PIPE, env=cli_env()
    )
    limiter = RedisLimiter(redis_url, Limits(concurrency=2), key=key, lease_seconds=1.0)
    try:
        assert holder.stdout is not None and await holder.stdout.readline() == b"holding\n"
        waiter = asyncio.ensure_future(limiter.acquire(Cost()))
        await asyncio.sleep(1.5)  # the holder renews its leases while it lives
        assert not waiter.done()
        holder.kill()
        await holder.wait()
        await asyncio.wait_for(waiter, 3.0)  # within a lease of its death
        assert limiter.statistics().in_flight == 1
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
        await limiter.aclose()


async def test_redis_restarted_mid_run_is_waited_for_and_lost_for_good_is_an_error(
    tmp_path: Path,
) -> None:
    with RedisServer(tmp_path / "redis") as server:
        limiter = RedisLimiter(server.url, Limits(rpm=6000), key="k")
        await limiter.release(await limiter.acquire(Cost()), None)
        server.stop()
        restart = asyncio.get_running_loop().run_in_executor(None, server.start)
        await limiter.release(await limiter.acquire(Cost()), None)  # waited for the restart
        await restart
        server.stop()
        with pytest.raises(RedisUnavailableError, match="does not answer"):
            await limiter.acquire(Cost())
        assert limiter.statistics().in_flight == 0
        await limiter.aclose()
