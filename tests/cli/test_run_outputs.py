"""`llmgather run -o`: what it writes to, and what it refuses to write over.

A device, a named pipe or a folder is refused before anything is made; a symbolic link is
followed (the file it names is written, and the job store lives beside that file); a file
that no job store claims is left as it is unless `--force` or `--restart`.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest

import llmgather
from llmgather import OutputExistsError
from llmgather.jobs.store import store_path_for
from llmgather.sim import EmbeddedSimulator
from tests.clihelpers import read_jsonl, run_cli, write_prompts

N = 5


def run_args(sim: EmbeddedSimulator, prompts: Path, out: Path | str, *extra: str) -> list[str]:
    return [
        "run", str(prompts), "-o", str(out), "-m", "openai:gpt-4o-mini",
        "--base-url", sim.base_url + "/v1", "--api-key", "k", "--quiet", *extra,
    ]  # fmt: skip


def ids(path: Path) -> list[str]:
    return sorted(line["id"] for line in read_jsonl(path))


def assert_dev_null_intact() -> None:
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert not os.path.exists("/dev/null.llmgather.sqlite")


def test_a_named_pipe_as_output_is_refused_and_nothing_is_made(
    tmp_path: Path, threaded_sim: EmbeddedSimulator
) -> None:
    sim = threaded_sim
    prompts = write_prompts(tmp_path / "prompts.jsonl", N)
    fifo = tmp_path / "out.jsonl"
    os.mkfifo(fifo)
    result = run_cli(*run_args(sim, prompts, fifo), timeout=30)
    assert result.returncode == 2, result.stderr
    assert f"the output {fifo} is a named pipe" in result.stderr
    assert "Give the path of a file" in result.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # not replaced by a file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "prompts.jsonl"]
    assert sim.stats["received"] == 0


def test_a_link_to_the_null_device_is_refused_and_the_device_left_alone(
    tmp_path: Path, threaded_sim: EmbeddedSimulator
) -> None:
    sim = threaded_sim
    prompts = write_prompts(tmp_path / "prompts.jsonl", N)
    link = tmp_path / "out.jsonl"
    link.symlink_to("/dev/null")
    try:
        result = run_cli(*run_args(sim, prompts, link), timeout=30)
        assert result.returncode == 2, result.stderr
        assert f"{link} (a link to /dev/null) is a character device" in result.stderr
        assert link.is_symlink() and os.readlink(link) == "/dev/null"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "prompts.jsonl"]
        assert sim.stats["received"] == 0
    finally:
        assert_dev_null_intact()


def test_a_link_to_the_standard_output_is_refused_when_that_is_a_pipe(
    tmp_path: Path, threaded_sim: EmbeddedSimulator
) -> None:
    sim = threaded_sim
    prompts = write_prompts(tmp_path / "prompts.jsonl", N)
    # What /dev/stdout is, made in tmp_path: a test must never risk replacing the real one.
    stdout = tmp_path / "stdout"
    stdout.symlink_to("/proc/self/fd/1")
    result = run_cli(*run_args(sim, prompts, stdout), timeout=30)  # its stdout: a pipe
    assert result.returncode == 2, result.stderr
    assert "is a named pipe" in result.stderr and result.stdout == ""
    assert stdout.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.jsonl", "stdout"]
    assert sim.stats["received"] == 0


def test_a_linked_output_writes_the_file_it_names_and_resumes_there(
    tmp_path: Path, threaded_sim: EmbeddedSimulator
) -> None:
    sim = threaded_sim
    prompts = write_prompts(tmp_path / "prompts.jsonl", N)
    (tmp_path / "data").mkdir()
    target = tmp_path / "data" / "results.jsonl"
    link = tmp_path / "out.jsonl"
    link.symlink_to(target)  # dangling until the run writes the file
    args = run_args(sim, prompts, link, "--json")
    first = run_cli(*args, timeout=30)
    assert first.returncode == 0, first.stderr
    assert link.is_symlink() and link.resolve() == target
    assert ids(target) == [f"q{i}" for i in range(N)]
    assert Path(store_path_for(str(target))).exists()
    assert not Path(f"{link}.llmgather.sqlite").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out.jsonl", "prompts.jsonl"]

    again = run_cli(*args, timeout=30)  # the job beside the target is found: nothing resent
    assert again.returncode == 0, again.stderr
    assert orjson.loads(again.stdout)["sent"] == 0
    status = run_cli("status", str(link), "--json")
    assert status.returncode == 0, status.stderr
    assert orjson.loads(status.stdout)["done"] == N
    assert link.is_symlink() and ids(target) == [f"q{i}" for i in range(N)]


def test_a_file_no_job_store_claims_is_left_as_it_is_unless_forced(
    tmp_path: Path, threaded_sim: EmbeddedSimulator
) -> None:
    sim = threaded_sim
    prompts = write_prompts(tmp_path / "prompts.jsonl", N)
    precious = tmp_path / "p.jsonl"
    precious.write_text("precious\n")
    refused = run_cli(*run_args(sim, prompts, precious), timeout=30)
    assert refused.returncode == 2, refused.stderr
    assert f"{precious} already exists (9 bytes)" in refused.stderr
    assert "Give -o another file, or pass --force to overwrite it" in refused.stderr
    assert precious.read_text() == "precious\n"
    assert not Path(store_path_for(str(precious))).exists()
    assert sim.stats["received"] == 0

    from_stdin = run_cli(
        "run", "-", *run_args(sim, prompts, precious)[2:], stdin=prompts.read_bytes(), timeout=30
    )
    assert from_stdin.returncode == 2, from_stdin.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl", "prompts.jsonl"]  # no spool

    forced = run_cli(*run_args(sim, prompts, precious, "--force"), timeout=30)
    assert forced.returncode == 0, forced.stderr
    assert ids(precious) == [f"q{i}" for i in range(N)]


def test_an_earlier_output_whose_store_was_removed_is_not_sent_again_unless_restarted(
    tmp_path: Path, threaded_sim: EmbeddedSimulator
) -> None:
    sim = threaded_sim
    prompts = write_prompts(tmp_path / "prompts.jsonl", N)
    out = tmp_path / "results.jsonl"
    assert run_cli(*run_args(sim, prompts, out), timeout=30).returncode == 0
    Path(store_path_for(str(out))).unlink()
    before, sent = out.read_bytes(), sim.stats["received"]
    refused = run_cli(*run_args(sim, prompts, out), timeout=30)
    assert refused.returncode == 2, refused.stderr
    assert "--force" in refused.stderr
    assert out.read_bytes() == before and sim.stats["received"] == sent
    restarted = run_cli(*run_args(sim, prompts, out, "--restart"), timeout=30)
    assert restarted.returncode == 0, restarted.stderr
    assert ids(out) == [f"q{i}" for i in range(N)]


def test_an_empty_file_at_the_output_is_written(
    tmp_path: Path, threaded_sim: EmbeddedSimulator
) -> None:
    sim = threaded_sim
    prompts = write_prompts(tmp_path / "prompts.jsonl", N)
    out = tmp_path / "results.jsonl"
    out.touch()  # as `touch` or a shell's `>` leaves it: nothing to lose
    result = run_cli(*run_args(sim, prompts, out), timeout=30)
    assert result.returncode == 0, result.stderr
    assert ids(out) == [f"q{i}" for i in range(N)]


async def echo(line: dict[str, Any]) -> str:
    return str(line["prompt"])


def test_run_job_refuses_a_file_no_store_claims_without_naming_cli_flags(
    tmp_path: Path,
) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", N)
    out = tmp_path / "values.jsonl"
    out.write_text("precious\n")
    with pytest.raises(OutputExistsError) as refused:
        asyncio.run(llmgather.run_job(echo, str(prompts), str(out), name="echo"))
    assert str(out) in str(refused.value) and "restart=True" in str(refused.value)
    assert "--" not in str(refused.value)
    assert out.read_text() == "precious\n"
    assert not Path(store_path_for(str(out))).exists()

    summary = asyncio.run(
        llmgather.run_job(echo, str(prompts), str(out), name="echo", restart=True)
    )
    assert summary.ok == N
    assert [line["value"] for line in read_jsonl(out)] == [f"Question {i}?" for i in range(N)]
