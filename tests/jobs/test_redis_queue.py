"""The Redis work queue end to end: `llmgather run --queue` as the coordinator and `llmgather
worker`s as real processes, a real redis-server, the simulator over loopback as the upstream
(it counts every request it receives, so a resend shows).

Each test uses a queue name of its own on the session's Redis, or a Redis of its own when it
restarts it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from llmgather.bench.redis_server import RedisServer, silent_port
from llmgather.sim import EmbeddedSimulator, SimConfig
from tests.clihelpers import cli_env, run_cli

CONCURRENCY = 8


def write_prompts(path: Path, n: int) -> Path:
    path.write_text("".join(f'{{"id": "item-{i}", "prompt": "question {i}"}}\n' for i in range(n)))
    return path


def llmgather(*args: str) -> list[str]:
    return [sys.executable, "-m", "llmgather", *args]


def start_worker(
    redis_url: str, queue: str, sim: EmbeddedSimulator, log: Path, *extra: str
) -> subprocess.Popen[bytes]:
    args = llmgather("worker", "--queue", redis_url, "--queue-name", queue)
    args += ["--model", "openai:gpt-4o-mini", "--base-url", sim.base_url + "/v1", "--api-key"]
    args += ["k", "--concurrency", str(CONCURRENCY), "--reclaim-after", "2", *extra]
    with log.open("ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=cli_env())


def start_coordinator(
    redis_url: str, queue: str, prompts: Path, output: Path, **env: str
) -> subprocess.Popen[str]:
    args = llmgather("run", str(prompts), "-o", str(output), "--queue", redis_url)
    args += ["--queue-name", queue, "--json", "-q", "--max-tokens", "16"]
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(**env)
    )


def finish(coordinator: subprocess.Popen[str], timeout: float = 120) -> dict:
    try:
        out, err = coordinator.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        coordinator.kill()
        coordinator.communicate()
        raise
    assert coordinator.returncode == 0, err
    return orjson.loads(out.splitlines()[-1])


def stop_all(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def output_ids(output: Path) -> Counter[str]:
    lines = [orjson.loads(line) for line in output.read_text().splitlines()]
    assert all(line["status"] == "ok" for line in lines)
    return Counter(line["id"] for line in lines)


def received(sim: EmbeddedSimulator) -> int:
    value = sim.stats["received"]
    assert isinstance(value, int)
    return value


def wait_for(condition: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_workers_send_a_jobs_items_and_the_coordinator_writes_them_once(
    tmp_path: Path, redis_url: str
) -> None:
    queue = uuid.uuid4().hex
    prompts = write_prompts(tmp_path / "in.jsonl", 300)
    output = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(seed=1, latency_ms=5)) as sim:
        workers = [
            start_worker(redis_url, queue, sim, tmp_path / f"w{n}.log", "--idle-exit", "8")
            for n in range(2)
        ]
        try:
            summary = finish(start_coordinator(redis_url, queue, prompts, output))
            for worker in workers:  # they leave by themselves once the queue stays empty
                assert worker.wait(timeout=30) == 0
        finally:
            stop_all(workers)
        assert summary["ok"] == 300 and summary["pending"] == 0
        assert "the workers of queue" in summary["target"]
        assert output_ids(output) == Counter({f"item-{i}": 1 for i in range(300)})
        assert received(sim) == 300
        done_by = [(tmp_path / f"w{n}.log").read_text() for n in range(2)]
        assert all("ok, 0 failed" in log for log in done_by)
    status = run_cli("status", str(output))
    assert status.returncode == 0 and "300" in status.stdout


def test_a_worker_killed_twice_loses_and_duplicates_nothing(tmp_path: Path, redis_url: str) -> None:
    queue = uuid.uuid4().hex
    n = 3000
    prompts = write_prompts(tmp_path / "in.jsonl", n)
    output = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(seed=1, latency_ms=40)) as sim:
        workers = [start_worker(redis_url, queue, sim, tmp_path / f"w{i}.log") for i in range(3)]
        try:
            coordinator = start_coordinator(redis_url, queue, prompts, output)
            for kill in (1, 2):
                wait_for(lambda kill=kill: received(sim) >= kill * n // 4)
                workers[0].kill()  # SIGKILL: its tasks stay pending until reclaimed
                workers[0].wait()
                workers[0] = start_worker(redis_url, queue, sim, tmp_path / "w0.log")
            summary = finish(coordinator)
        finally:
            stop_all(workers)
        assert summary["ok"] == n
        assert output_ids(output) == Counter({f"item-{i}": 1 for i in range(n)})
        # Resent: at most what the killed worker had on the wire, per kill (the tasks it had
        # read and not sent yet go to the simulator once, from whoever takes them over).
        assert n <= received(sim) <= n + 2 * CONCURRENCY


@pytest.mark.parametrize("keeps_data", [True, False], ids=["data-kept", "data-lost"])
def test_redis_restarted_mid_run_ends_with_every_item_once(
    tmp_path: Path, keeps_data: bool
) -> None:
    n = 400
    prompts = write_prompts(tmp_path / "in.jsonl", n)
    output = tmp_path / "out.jsonl"
    with (
        RedisServer(tmp_path / "redis", persist=keeps_data) as server,
        EmbeddedSimulator(SimConfig(seed=1, latency_ms=30)) as sim,
    ):
        workers = [start_worker(server.url, "q", sim, tmp_path / f"w{i}.log") for i in range(2)]
        try:
            coordinator = start_coordinator(server.url, "q", prompts, output)
            wait_for(lambda: received(sim) >= n // 3)
            server.restart()
            summary = finish(coordinator)
        finally:
            stop_all(workers)
        assert summary["ok"] == n
        assert output_ids(output) == Counter({f"item-{i}": 1 for i in range(n)})
        if keeps_data:  # the tasks held stay held: at most what was on the wire, if anything
            assert n <= received(sim) <= n + 2 * CONCURRENCY
        else:
            # Sent twice at most: what the two workers held (each reads up to twice its
            # concurrency), and results written back but not yet read by the coordinator.
            assert n <= received(sim) <= n + 2 * (2 * CONCURRENCY) + 2 * CONCURRENCY


def test_a_coordinator_killed_and_rerun_resumes_without_resending(
    tmp_path: Path, redis_url: str
) -> None:
    queue = uuid.uuid4().hex
    n = 300
    prompts = write_prompts(tmp_path / "in.jsonl", n)
    output = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(seed=1, latency_ms=20)) as sim:
        workers = [start_worker(redis_url, queue, sim, tmp_path / "w.log")]
        try:
            first = start_coordinator(redis_url, queue, prompts, output)
            wait_for(lambda: received(sim) >= n // 3)
            first.kill()
            first.communicate()
            summary = finish(start_coordinator(redis_url, queue, prompts, output))
        finally:
            stop_all(workers)
        assert summary["ok"] == n and summary["resumed"]
        assert output_ids(output) == Counter({f"item-{i}": 1 for i in range(n)})
        assert received(sim) == n  # what the workers finished meanwhile was collected, not resent


def test_run_with_a_queue_refuses_what_the_workers_decide(tmp_path: Path, redis_url: str) -> None:
    prompts = write_prompts(tmp_path / "in.jsonl", 2)
    done = run_cli(
        "run", str(prompts), "-o", str(tmp_path / "o.jsonl"), "--queue", redis_url, "--rpm", "60"
    )
    assert done.returncode == 2
    assert "give --rpm to `llmgather worker`" in done.stderr
    out = str(tmp_path / "o.jsonl")
    done = run_cli(
        "run", str(prompts), "-o", out, "--queue", redis_url, "-c", "8", "--timeout", "5"
    )
    assert done.returncode == 2
    assert "give --concurrency, --timeout to `llmgather worker`" in done.stderr


def test_a_queue_url_that_does_not_answer_exits_2(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "in.jsonl", 2)
    with silent_port() as port:
        url = f"redis://127.0.0.1:{port}/0"
        done = run_cli("run", str(prompts), "-o", str(tmp_path / "o.jsonl"), "--queue", url)
        assert done.returncode == 2 and "does not answer" in done.stderr
        worker = run_cli("worker", "--queue", url)
    assert worker.returncode == 2 and "does not answer" in worker.stderr


def test_worker_help_names_its_options() -> None:
    done = run_cli("worker", "--help")
    assert done.returncode == 0
    for option in ("--queue", "--limiter", "--rpm", "--reclaim-after", "--idle-exit"):
        assert option in done.stdout


def test_items_a_worker_cannot_send_end_as_errors_not_stuck(tmp_path: Path, redis_url: str) -> None:
    """A worker whose key is refused fails the items as a local run does (retry later with
    --retry-failed), rather than holding them forever."""
    queue = uuid.uuid4().hex
    prompts = write_prompts(tmp_path / "in.jsonl", 20)
    output = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(seed=1, require_key="the-right-key")) as sim:
        worker = start_worker(redis_url, queue, sim, tmp_path / "w.log", "--idle-exit", "8")
        try:
            coordinator = start_coordinator(redis_url, queue, prompts, output)
            try:
                out, err = coordinator.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                coordinator.kill()
                coordinator.communicate()
                raise
        finally:
            stop_all([worker])
    assert coordinator.returncode == 1, err
    summary = orjson.loads(out.splitlines()[-1])
    assert summary["failed"] == 20 and summary["pending"] == 0
    lines = [orjson.loads(line) for line in output.read_text().splitlines()]
    assert {line["error"]["type"] for line in lines} == {"AuthenticationError"}


def test_a_job_started_over_with_other_input_never_reads_its_predecessors_answers(
    tmp_path: Path, redis_url: str
) -> None:
    queue = uuid.uuid4().hex
    output = tmp_path / "out.jsonl"
    first = write_prompts(tmp_path / "in.jsonl", 30)
    with EmbeddedSimulator(SimConfig(seed=1)) as sim:
        worker = start_worker(redis_url, queue, sim, tmp_path / "w.log")
        try:
            finish(start_coordinator(redis_url, queue, first, output))
            # Same ids, other prompts, started over: every item is sent, none is taken from
            # the answers the first job left in Redis.
            first.write_text(
                "".join(f'{{"id": "item-{i}", "prompt": "other {i}"}}\n' for i in range(30))
            )
            args = llmgather("run", str(first), "-o", str(output), "--queue", redis_url)
            args += ["--queue-name", queue, "--restart", "-q"]
            assert subprocess.run(args, env=cli_env(), timeout=60).returncode == 0
        finally:
            stop_all([worker])
        assert received(sim) == 60


# A provider key in the coordinator's environment: the README's setup on a machine where the
# user also runs jobs locally. The coordinator sends nothing, so it never reaches a provider.
KEY_SET = {"OPENAI_API_KEY": "sk-dummy-coordinator-key-0123456789"}


def tasks_enqueued(redis_url: str, queue: str) -> int:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.xlen(f"llmgather:q:{{{queue}}}:tasks"))
    finally:
        client.close()


def test_a_provider_key_in_the_environment_does_not_stop_a_queued_run(
    tmp_path: Path, redis_url: str
) -> None:
    queue = uuid.uuid4().hex
    prompts = write_prompts(tmp_path / "in.jsonl", 40)
    output = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(seed=1, require_key="k")) as sim:
        workers = [start_worker(redis_url, queue, sim, tmp_path / "w.log", "--idle-exit", "8")]
        try:
            summary = finish(start_coordinator(redis_url, queue, prompts, output, **KEY_SET))
        finally:
            stop_all(workers)
        assert summary["ok"] == 40 and "the workers of queue" in summary["target"]
        assert output_ids(output) == Counter({f"item-{i}": 1 for i in range(40)})
        assert received(sim) == 40


@pytest.mark.parametrize("env", [{}, KEY_SET], ids=["no key", "key set"])
def test_a_queued_run_refuses_model_and_limits_whatever_the_key(
    tmp_path: Path, redis_url: str, env: dict[str, str]
) -> None:
    prompts = write_prompts(tmp_path / "in.jsonl", 2)
    out = str(tmp_path / "o.jsonl")
    for model in ("openai:gpt-4o-mini", "sim:gpt-4o-mini", "gpt-4o-mini"):
        done = run_cli("run", str(prompts), "-o", out, "--queue", redis_url, "-m", model, **env)
        assert done.returncode == 2, done.stderr
        assert "give --model to `llmgather worker`" in done.stderr, done.stderr
    done = run_cli("run", str(prompts), "-o", out, "--queue", redis_url, "--tpm", "9", **env)
    assert done.returncode == 2 and "give --tpm to `llmgather worker`" in done.stderr
    assert not Path(out).exists()


def test_a_coordinator_stopped_with_nothing_taken_exits_at_once_and_resumes(
    tmp_path: Path, redis_url: str
) -> None:
    """SIGTERM while no worker has taken any item: nothing is in flight, so the 30 s grace is
    not waited out; the items stay queued, and a rerun collects them once workers come."""
    queue = uuid.uuid4().hex
    prompts = write_prompts(tmp_path / "in.jsonl", 20)
    output = tmp_path / "out.jsonl"
    coordinator = start_coordinator(redis_url, queue, prompts, output, **KEY_SET)
    try:
        wait_for(lambda: tasks_enqueued(redis_url, queue) == 20)
        stopped = time.monotonic()
        coordinator.send_signal(signal.SIGTERM)
        out, err = coordinator.communicate(timeout=30)
        took = time.monotonic() - stopped
    finally:
        if coordinator.poll() is None:
            coordinator.kill()
            coordinator.communicate()
    assert coordinator.returncode == 130, err
    assert took < 5.0
    summary = orjson.loads(out.splitlines()[-1])
    assert summary["interrupted"] and summary["pending"] == 20
    with EmbeddedSimulator(SimConfig(seed=1)) as sim:
        workers = [start_worker(redis_url, queue, sim, tmp_path / "w.log")]
        try:
            summary = finish(start_coordinator(redis_url, queue, prompts, output, **KEY_SET))
        finally:
            stop_all(workers)
        assert summary["ok"] == 20 and summary["resumed"]
        assert received(sim) == 20  # the queued items, answered once
    assert output_ids(output) == Counter({f"item-{i}": 1 for i in range(20)})


def test_a_coordinator_stopped_collects_what_the_workers_had_taken(
    tmp_path: Path, redis_url: str
) -> None:
    queue = uuid.uuid4().hex
    prompts = write_prompts(tmp_path / "in.jsonl", 40)
    output = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(seed=1, latency_ms=1500, latency_jitter=0)) as sim:
        workers = [start_worker(redis_url, queue, sim, tmp_path / "w.log")]
        try:
            coordinator = start_coordinator(redis_url, queue, prompts, output)
            wait_for(lambda: received(sim) >= CONCURRENCY)  # the worker has taken its fill
            coordinator.send_signal(signal.SIGTERM)
            out, err = coordinator.communicate(timeout=30)
        finally:
            stop_all(workers)
    assert coordinator.returncode == 130, err
    summary = orjson.loads(out.splitlines()[-1])
    # The items on the wire when the stop came were waited for; the queued rest were not.
    assert CONCURRENCY <= summary["ok"] < 40 and summary["pending"] == 40 - summary["ok"]


# 1,500: more than the coordinator's window, so its feeder is still waiting for room when
# the stop comes (a stop then once raised the feeder's cancellation out of the run).
@pytest.mark.parametrize("n", [40, 1_500])
def test_the_first_ctrl_c_takes_back_the_tasks_no_worker_has_read(
    tmp_path: Path, redis_url: str, n: int
) -> None:
    """Ctrl-C: the tasks still queued are withdrawn, so the workers stop sending them; the
    answers to those a worker had read are collected and kept, and a rerun sends the rest."""
    queue = uuid.uuid4().hex
    prompts = write_prompts(tmp_path / "in.jsonl", n)
    output = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(seed=1, latency_ms=1500, latency_jitter=0)) as sim:
        # It leaves once it has nothing to do: when the queue was emptied, soon after the stop.
        worker = start_worker(redis_url, queue, sim, tmp_path / "w.log", "--idle-exit", "3")
        try:
            coordinator = start_coordinator(redis_url, queue, prompts, output)
            wait_for(lambda: received(sim) >= CONCURRENCY)  # the worker has taken its fill
            coordinator.send_signal(signal.SIGINT)
            out, err = coordinator.communicate(timeout=30)
            assert coordinator.returncode == 130, err
            assert tasks_enqueued(redis_url, queue) == 0  # nothing left for a worker to read
            assert worker.wait(timeout=60) == 0
        finally:
            stop_all([worker])
        summary = orjson.loads(out.splitlines()[-1])
        assert summary["interrupted"] and summary["ok"] + summary["pending"] == n
        # Sent: what the worker had read when the stop came, all of it collected, no more.
        assert received(sim) == summary["ok"] < n
        assert len(output.read_text().splitlines()) == summary["ok"]
        # Wide enough that the rest takes seconds at 1.5 s each.
        workers = [start_worker(redis_url, queue, sim, tmp_path / "w.log", "--concurrency", "256")]
        try:
            rerun = finish(start_coordinator(redis_url, queue, prompts, output))
        finally:
            stop_all(workers)
        assert rerun["ok"] == n and received(sim) == n  # the rest, each once
    assert output_ids(output) == Counter({f"item-{i}": 1 for i in range(n)})


def test_tasks_redis_lost_while_it_kept_the_job_are_enqueued_again(
    tmp_path: Path, redis_url: str
) -> None:
    """A partial loss (an eviction, or a restart from an older snapshot): the job's marker is
    there, its tasks are not. The coordinator finds the items Redis holds nowhere and
    enqueues them again, rather than wait for them for ever."""
    import redis

    queue = uuid.uuid4().hex
    prompts = write_prompts(tmp_path / "in.jsonl", 20)
    output = tmp_path / "out.jsonl"
    coordinator = start_coordinator(redis_url, queue, prompts, output)
    try:
        wait_for(lambda: tasks_enqueued(redis_url, queue) == 20)
        client = redis.Redis.from_url(redis_url)
        try:
            assert client.delete(f"llmgather:q:{{{queue}}}:tasks") == 1  # evicted
        finally:
            client.close()
        with EmbeddedSimulator(SimConfig(seed=1)) as sim:
            workers = [start_worker(redis_url, queue, sim, tmp_path / "w.log")]
            try:
                summary = finish(coordinator, timeout=45)
            finally:
                stop_all(workers)
            assert summary["ok"] == 20 and received(sim) == 20
    finally:
        if coordinator.poll() is None:
            coordinator.kill()
            coordinator.communicate()
    assert output_ids(output) == Counter({f"item-{i}": 1 for i in range(20)})


def test_the_coordinators_summary_counts_the_429s_its_workers_met(
    tmp_path: Path, redis_url: str
) -> None:
    from llmgather.sim.faults import FaultPlan

    queue = uuid.uuid4().hex
    prompts = write_prompts(tmp_path / "in.jsonl", 60)
    output = tmp_path / "out.jsonl"
    config = SimConfig(seed=3, faults=FaultPlan.parse("429=0.2"), fault_retry_after_s=0.05)
    with EmbeddedSimulator(config) as sim:
        workers = [start_worker(redis_url, queue, sim, tmp_path / "w.log", "--idle-exit", "8")]
        try:
            summary = finish(start_coordinator(redis_url, queue, prompts, output))
        finally:
            stop_all(workers)
        met = sim.stats["by_status"]
    assert isinstance(met, dict) and met.get("429", 0) > 0
    assert summary["http_429"] == met["429"]


def test_workers_price_with_their_prices_file_and_the_summary_sums_the_lines(
    tmp_path: Path, redis_url: str
) -> None:
    queue = uuid.uuid4().hex
    prompts = write_prompts(tmp_path / "in.jsonl", 40)
    output = tmp_path / "out.jsonl"
    prices = tmp_path / "prices.json"
    prices.write_text('{"gpt-4o-mini": {"input": 1000, "output": 2000}}')
    with EmbeddedSimulator(SimConfig(seed=1, latency_ms=5)) as sim:
        log = tmp_path / "w.log"
        workers = [
            start_worker(redis_url, queue, sim, log, "--idle-exit", "8", "--prices", str(prices))
        ]
        try:
            summary = finish(start_coordinator(redis_url, queue, prompts, output))
        finally:
            stop_all(workers)
    lines = [orjson.loads(line) for line in output.read_text().splitlines()]
    costs = [Decimal(repr(line["cost"])) for line in lines]
    for line, cost in zip(lines, costs, strict=True):
        usage = line["usage"]
        assert cost == (usage["input_tokens"] * 1000 + usage["output_tokens"] * 2000) / Decimal(
            1_000_000
        )
    assert Decimal(repr(summary["cost_usd"])) == sum(costs) > 0 and summary["unpriced"] == 0
