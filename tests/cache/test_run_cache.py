"""`llmgather run --cache` as a user runs it, against a simulator that counts every request it
receives: hits send nothing and cost nothing, any change of a keyed field misses, errors and
cut answers are never kept, sampled requests only with `--cache always`, a Redis cache is
shared between processes, and `llmgather cache stats|clear` read and empty it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from llmgather.sim import EmbeddedSimulator, SimConfig
from llmgather.sim.faults import FaultPlan
from tests.clihelpers import read_jsonl, run_cli, write_prompts


@pytest.fixture
def counted() -> Iterator[EmbeddedSimulator]:
    with EmbeddedSimulator(SimConfig(seed=1)) as sim:
        yield sim


def received(sim: EmbeddedSimulator) -> int:
    """The requests the simulator received (counted there, whoever sent them)."""
    count = sim.stats["received"]
    assert isinstance(count, int)
    return count


def run(sim: EmbeddedSimulator, prompts: Path, out: Path, *extra: str) -> list[dict[str, Any]]:
    done = run_cli(
        "run", str(prompts), "-o", str(out), "--model", "openai:gpt-4o-mini",
        "--base-url", sim.base_url + "/v1", "--api-key", "k", "--quiet", *extra,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    return read_jsonl(out)


def write_lines(path: Path, *lines: dict[str, Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return path


def test_the_readme_rerun_with_restart_sends_nothing_and_costs_nothing(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 10)
    out = tmp_path / "results.jsonl"
    first = run_cli("run", str(prompts), "-o", str(out), "--temperature", "0", "--cache", "--json")
    assert first.returncode == 0, first.stderr
    sent = read_jsonl(out)
    assert orjson.loads(first.stdout)["sent"] == 10
    assert (tmp_path / "llmgather-cache.sqlite").is_file()  # beside the job store
    again = run_cli(
        "run", str(prompts), "-o", str(out), "--temperature", "0", "--cache", "--restart", "--json"
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    shown = run_cli(
        "run", str(prompts), "-o", str(out), "--temperature", "0", "--cache", "--restart"
    )
    assert "finished: 10 ok (10 from the cache), 0 failed of 10" in shown.stderr
    summary = orjson.loads(again.stdout)
    assert summary["sent"] == 0 and summary["cost_usd"] == 0 and summary["cached"] == 10
    cached = read_jsonl(out)
    for before, line in zip(sent, cached, strict=True):
        assert line["cached"] is True and "cached" not in before
        assert line["cost"] == 0 and line["cost_basis"] == "cached" and line["attempts"] == 0
        assert line["text"] == before["text"] and line["usage"] == before["usage"]
        assert before["cost"] > 0 and before["cost_basis"] == "standard"


def test_hits_send_nothing_and_a_streamed_run_shares_the_plain_runs_answers(
    tmp_path: Path, counted: EmbeddedSimulator
) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 6)
    first = run(counted, prompts, tmp_path / "a.jsonl", "--temperature", "0", "--cache")
    assert received(counted) == 6
    streamed = run(
        counted, prompts, tmp_path / "b.jsonl", "--temperature", "0", "--stream", "--cache"
    )
    assert received(counted) == 6
    assert [line["text"] for line in streamed] == [line["text"] for line in first]
    assert all(line["cached"] for line in streamed)


BASE: dict[str, Any] = {"id": "a", "prompt": "Why is the sky blue?", "temperature": 0}
WEATHER = {"name": "weather", "parameters": {"type": "object", "properties": {}}}
SCHEMA = {"name": "answer", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}

CHANGES: dict[str, dict[str, Any]] = {
    "prompt": {"prompt": "Why is the sea blue?"},
    "system": {"system": "Be brief."},
    "model": {"model": "gpt-4o"},
    "max_tokens": {"max_tokens": 300},
    "temperature": {"temperature": 0.0001},
    "tools": {"tools": [{**WEATHER, "description": "The weather where you are."}]},
    "tool_choice": {"tools": [WEATHER], "tool_choice": "none"},
    "json_schema": {"json_schema": SCHEMA},
}


def test_any_change_of_a_keyed_field_misses_and_bookkeeping_does_not(
    tmp_path: Path, counted: EmbeddedSimulator
) -> None:
    cache = f"--cache={tmp_path / 'cache.sqlite'}"
    base = {**BASE, "max_tokens": 200}
    run(counted, write_lines(tmp_path / "base.jsonl", base), tmp_path / "base.out", cache)
    run(counted, write_lines(tmp_path / "with_tools.jsonl", {**base, "tools": [WEATHER]}),
        tmp_path / "with_tools.out", cache)  # fmt: skip
    assert received(counted) == 2
    # Only an id, metadata or the stream flag changed: the same request, answered from the cache.
    relabelled = {**base, "id": "other", "metadata": {"run": 2}}
    lines = run(counted, write_lines(tmp_path / "same.jsonl", relabelled), tmp_path / "same.out",
                cache, "--stream")  # fmt: skip
    assert received(counted) == 2 and lines[0]["cached"] is True
    for name, change in CHANGES.items():
        before = received(counted)
        origin = {**base, "tools": [WEATHER]} if name == "tool_choice" else base
        changed = write_lines(tmp_path / f"{name}.jsonl", {**origin, **change})
        lines = run(counted, changed, tmp_path / f"{name}.out", cache)
        assert received(counted) == before + 1, f"a change of {name} did not miss"
        assert "cached" not in lines[0], name


def test_errors_cut_streams_and_answers_cut_by_max_tokens_are_not_kept(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 3)
    cache = f"--cache={tmp_path / 'cache.sqlite'}"
    with EmbeddedSimulator(SimConfig(seed=1, faults=FaultPlan((("500", 1.0),)))) as failing:
        lines = run(failing, prompts, tmp_path / "e1.jsonl", cache, "--temperature", "0",
                    "--max-attempts", "1")  # fmt: skip
        assert [line["status"] for line in lines] == ["error"] * 3
        run(failing, prompts, tmp_path / "e2.jsonl", cache, "--temperature", "0",
            "--max-attempts", "1")  # fmt: skip
        assert received(failing) == 6  # nothing was kept: every request went out again
    with EmbeddedSimulator(SimConfig(seed=1, faults=FaultPlan((("cut", 1.0),)))) as cutting:
        for out in ("s1.jsonl", "s2.jsonl"):  # streams cut off before their end
            lines = run(cutting, prompts, tmp_path / out, cache, "--temperature", "0",
                        "--stream", "--max-attempts", "1")  # fmt: skip
            assert {line["error"]["type"] for line in lines} == {"TruncatedStreamError"}
        assert received(cutting) == 6
    with EmbeddedSimulator(SimConfig(seed=1)) as sim:
        for out in ("c1.jsonl", "c2.jsonl"):
            lines = run(sim, prompts, tmp_path / out, cache, "--temperature", "0",
                        "--max-tokens", "1")  # fmt: skip
            assert {line["finish_reason"] for line in lines} == {"length"}
        assert received(sim) == 6


def test_sampled_requests_are_sent_again_unless_cache_always(
    tmp_path: Path, counted: EmbeddedSimulator
) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 4)
    for out in ("t1.jsonl", "t2.jsonl"):  # no temperature: the provider's default, 1
        run(counted, prompts, tmp_path / out, "--cache")
    run(counted, prompts, tmp_path / "t3.jsonl", "--cache", "--temperature", "0.7")
    assert received(counted) == 12
    always = ("--cache", "always", f"--cache={tmp_path / 'always.sqlite'}", "--temperature", "0.7")
    run(counted, prompts, tmp_path / "a1.jsonl", *always)
    lines = run(counted, prompts, tmp_path / "a2.jsonl", *always)
    assert received(counted) == 16
    assert all(line["cached"] for line in lines)


def test_two_cache_places_are_refused_naming_the_flag(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 1)
    done = run_cli("run", str(prompts), "-o", str(tmp_path / "o.jsonl"),
                   "--cache=a.sqlite", "--cache=redis://127.0.0.1:1/0")  # fmt: skip
    assert done.returncode == 2
    assert "--cache names 2 places" in done.stderr


def test_a_redis_cache_is_shared_between_processes(
    tmp_path: Path, counted: EmbeddedSimulator, redis_url: str
) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 8, prefix="Shared question")
    shared = f"--cache={redis_url}"
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    run(counted, prompts, tmp_path / "one" / "out.jsonl", shared, "--temperature", "0")
    lines = run(counted, prompts, tmp_path / "two" / "out.jsonl", shared, "--temperature", "0")
    assert received(counted) == 8
    assert all(line["cached"] for line in lines)
    stats = run_cli("cache", "stats", redis_url, "--json")
    assert stats.returncode == 0, stats.stderr
    shown = orjson.loads(stats.stdout)
    assert shown["entries"] >= 8 and shown["hits"] >= 8
    assert run_cli("cache", "clear", redis_url).returncode == 0


def test_cache_stats_and_clear(tmp_path: Path, counted: EmbeddedSimulator) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 5)
    path = tmp_path / "cache.sqlite"
    run(counted, prompts, tmp_path / "1.jsonl", f"--cache={path}", "--temperature", "0")
    run(counted, prompts, tmp_path / "2.jsonl", f"--cache={path}", "--temperature", "0")
    stats = orjson.loads(run_cli("cache", "stats", str(path), "--json").stdout)
    assert stats["entries"] == 5 and stats["hits"] == 5 and stats["misses"] == 5
    assert stats["size_bytes"] > 0
    shown = run_cli("cache", "stats", str(path))
    assert "entries  5" in shown.stdout and "hits     5 (50% of lookups)" in shown.stdout
    cleared = run_cli("cache", "clear", str(path))
    assert cleared.returncode == 0 and "removed 5 entries" in cleared.stdout
    assert orjson.loads(run_cli("cache", "stats", str(path), "--json").stdout)["entries"] == 0
    run(counted, prompts, tmp_path / "3.jsonl", f"--cache={path}", "--temperature", "0")
    assert received(counted) == 10
    missing = run_cli("cache", "stats", str(tmp_path / "nothing.sqlite"))
    assert missing.returncode == 2 and "no cache at" in missing.stderr
