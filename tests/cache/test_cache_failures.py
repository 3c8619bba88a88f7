"""A cache that fails only misses: a SQLite file another connection holds locked, a Redis
stopped in the middle of a run, a Redis that is not there. Every answered item stays ok
with its usage, the run exits 0, one warning names the cache (never a password), and a
failing store is left alone for a while on the clock, then asked again. The SQLite store
waits for its lock off the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

import llmgather.cache.sqlite
from llmgather._types import Completion, Usage
from llmgather.bench.redis_server import RedisServer, silent_port
from llmgather.cache import ResponseCache
from llmgather.cache.entry import decode_entry, encode_entry
from llmgather.cache.guard import RETRY_AFTER_S
from llmgather.cache.redis import RedisCacheStore
from llmgather.cache.sqlite import SQLiteCacheStore
from llmgather.sim import EmbeddedSimulator, SimConfig
from tests.cli.runprocess import run_args, start, wait_for_progress
from tests.clihelpers import read_jsonl, run_cli, write_prompts
from tests.fakeclock import FakeClock

WARNED = "the response cache"
ANSWER = Completion(text="Blue.", usage=Usage(9, 2, 4, 1), finish_reason="stop")


def run(sim: EmbeddedSimulator, prompts: Path, out: Path, *extra: str) -> tuple[int, str]:
    done = run_cli(
        "run", str(prompts), "-o", str(out), "--model", "openai:gpt-4o-mini",
        "--base-url", sim.base_url + "/v1", "--api-key", "k", "--quiet",
        "--temperature", "0", *extra,
    )  # fmt: skip
    return done.returncode, done.stderr


def all_answered(out: Path, n: int) -> None:
    lines = read_jsonl(out)
    assert len(lines) == n
    assert {line["status"] for line in lines} == {"ok"}
    assert all(line["usage"] is not None and line["usage"]["output_tokens"] > 0 for line in lines)


@pytest.fixture
def sim() -> Iterator[EmbeddedSimulator]:
    with EmbeddedSimulator(SimConfig(seed=1)) as running:
        yield running


def test_a_cache_file_held_locked_by_another_connection_fails_no_item(
    tmp_path: Path, sim: EmbeddedSimulator
) -> None:
    # More items than one batch of writes (256): a commit is tried in the middle of the run,
    # and again at its close, both while the file is locked.
    prompts = write_prompts(tmp_path / "prompts.jsonl", 300)
    path = tmp_path / "cache.sqlite"
    run(sim, write_prompts(tmp_path / "one.jsonl", 1), tmp_path / "one.out", f"--cache={path}")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        code, stderr = run(sim, prompts, tmp_path / "locked.out", f"--cache={path}")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 0, stderr
    all_answered(tmp_path / "locked.out", 300)
    assert stderr.count(WARNED) == 1, stderr
    assert f"the response cache {path} failed (OperationalError: database is locked)" in " ".join(
        stderr.split()
    )
    # Its entries were lost, not the file: once free, it keeps and answers again.
    run(sim, prompts, tmp_path / "free.out", f"--cache={path}")
    code, stderr = run(sim, prompts, tmp_path / "hits.out", f"--cache={path}")
    assert code == 0 and WARNED not in stderr, stderr
    assert all(line["cached"] for line in read_jsonl(tmp_path / "hits.out"))


def test_a_redis_cache_stopped_in_the_middle_of_a_run_fails_no_item(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 200)
    out = tmp_path / "out.jsonl"
    config = SimConfig(seed=1, latency_ms=100)
    with RedisServer(tmp_path / "redis") as redis, EmbeddedSimulator(config) as sim:
        args = run_args(sim, prompts, out, "--temperature", "0", f"--cache={redis.url}")
        process = start(args)
        try:
            wait_for_progress(out, 20)
            redis.stop()
            _, stderr = process.communicate(timeout=90)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        received = sim.stats["received"]
    assert process.returncode == 0, stderr
    all_answered(out, 200)
    assert received == 200  # every lookup after the stop missed: its request was sent
    assert stderr.count(WARNED) == 1, stderr
    assert f"the response cache {redis.url} failed (RedisUnavailableError" in " ".join(
        stderr.split()
    )


async def test_a_failing_redis_is_a_miss_and_one_warning_without_its_password() -> None:
    warned: list[str] = []
    with silent_port() as port:
        url = f"redis://:hunter2-secret@127.0.0.1:{port}/0"
        cache = ResponseCache(RedisCacheStore(url), warn=warned.append)
        assert await cache.look_up("a") is None
        assert await cache.look_up_relayed("b") is None
        await cache.keep("c", ANSWER)
        await cache.aclose()
    assert (cache.counts.lookups_failed, cache.counts.keeps_failed) == (2, 1)
    assert (cache.counts.hits, cache.counts.misses, cache.counts.stored) == (0, 0, 0)
    [warning] = warned
    assert "hunter2" not in warning
    assert f"the response cache redis://127.0.0.1:{port}/0 failed" in warning


async def test_a_failing_store_is_left_alone_then_asked_again(tmp_path: Path) -> None:
    clock = FakeClock()
    warned: list[str] = []
    with RedisServer(tmp_path / "redis") as redis:
        cache = ResponseCache(RedisCacheStore(redis.url), warn=warned.append, clock=clock.now)
        await cache.keep("kept", ANSWER)
        redis.stop()
        assert await cache.look_up("kept") is None  # the store failed: a miss
        redis.start()  # back on its port, its entries gone with the process
        other = RedisCacheStore(redis.url)
        await other.put("kept", encode_entry(ANSWER))  # what it answers, once asked again
        await other.aclose()
        await clock.advance(RETRY_AFTER_S - 1)
        assert await cache.look_up("kept") is None  # still left alone: not asked
        await cache.keep("other", ANSWER)  # keeps never failed: asked, and taken
        await clock.advance(1)
        assert await cache.look_up("kept") == ANSWER  # asked again
        await cache.aclose()
    assert len(warned) == 1
    counts = cache.counts
    assert (counts.lookups_failed, counts.hits, counts.stored, counts.keeps_failed) == (2, 1, 2, 0)


async def test_a_sqlite_write_waits_for_the_lock_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Time to spare for a busy machine: the write is let go long before it would give up.
    monkeypatch.setattr(llmgather.cache.sqlite, "BUSY_TIMEOUT_S", 10.0)
    path = tmp_path / "cache.sqlite"
    store = SQLiteCacheStore(str(path))
    await store.put("k", encode_entry(ANSWER))  # pending: written at close
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    closing = asyncio.create_task(store.aclose())
    # Were the write waiting for the lock on the event loop, this sleep would end only once
    # it gave up (its entry lost), and the holder below could never let go in time.
    await asyncio.sleep(0.1)
    assert not closing.done()
    holder.execute("COMMIT")
    holder.close()
    await closing
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT key FROM entries").fetchall() == [("k",)]


def test_a_hit_reports_the_whole_usage_of_the_answer_first_sent(tmp_path: Path) -> None:
    # A long system prompt: the simulator's Anthropic dialect writes it to its prompt cache
    # for the first request, and reads it for the next (tokens outside `input_tokens` there,
    # counted inside them here).
    system = "You are a careful assistant who answers in one short paragraph. " * 80
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(
        b"".join(
            orjson.dumps({"id": f"q{i}", "prompt": f"Question {i}?", "system": system}) + b"\n"
            for i in range(3)
        )
    )
    cache = f"--cache={tmp_path / 'cache.sqlite'}"
    with EmbeddedSimulator(SimConfig(seed=1)) as sim:
        outs = []
        for name in ("sent", "cached"):
            out = tmp_path / f"{name}.jsonl"
            done = run_cli(
                "run", str(prompts), "-o", str(out), "--model", "anthropic:claude-3-5-haiku-latest",
                "--base-url", sim.base_url, "--api-key", "k", "--quiet", "--temperature", "0",
                "--concurrency", "1", cache,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            outs.append(read_jsonl(out))
    sent, cached = outs
    assert [line["usage"]["cache_write_tokens"] > 0 for line in sent] == [True, False, False]
    assert [line["usage"]["cache_read_tokens"] > 0 for line in sent] == [False, True, True]
    assert all(line["cached"] for line in cached)
    assert [line["usage"] for line in cached] == [line["usage"] for line in sent]


def test_an_entry_written_before_the_cache_counts_were_kept_still_reads() -> None:
    # As the first format wrote it: the usage as [input, output] only.
    old = orjson.dumps(
        {"text": "Blue.", "usage": [9, 2], "finish_reason": "stop",
         "provider_finish_reason": "end_turn", "model": "m", "stored_at": 1.0}
    )  # fmt: skip
    assert decode_entry(old).usage == Usage(9, 2, 0, 0)
    assert decode_entry(encode_entry(ANSWER)).usage == Usage(9, 2, 4, 1)
