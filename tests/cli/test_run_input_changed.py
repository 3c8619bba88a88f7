"""`llmgather run` whose input is edited in place while it runs: nothing changed is sent, the
run stops with exit 4, every result paid for is kept, and the job never claims to be complete."""

from __future__ import annotations

from pathlib import Path

import orjson

from llmgather.sim import EmbeddedSimulator, SimConfig
from tests.cli.runprocess import run_args, start, wait_for_progress
from tests.clihelpers import read_jsonl, run_cli, write_prompts

N = 1000
# Far past what the run has read when the test edits (the lines done, those admitted ahead
# and one page of read-ahead: a few hundred at most), and reached within seconds after.
EDITED = (800, 900)


def edit_in_place(path: Path, line_index: int, old: bytes, new: bytes) -> None:
    """Replace `old` by `new` (as long) on one line, writing only those bytes, as an editor
    that saves in place or a script with r+ does: the file keeps its inode and its size."""
    assert len(old) == len(new)
    data = path.read_bytes()
    start = sum(len(line) + 1 for line in data.split(b"\n")[:line_index])
    at = data.index(old, start)
    with path.open("r+b") as f:
        f.seek(at)
        f.write(new)


def run_and_edit(tmp_path: Path, edits: list[tuple[int, bytes, bytes]]) -> str:
    """Run, edit the input meanwhile, check what the run did, restore it and resume; the
    stopped run's stderr."""
    prompts = write_prompts(tmp_path / "prompts.jsonl", N)
    original = prompts.read_bytes()
    out = tmp_path / "results.jsonl"
    with EmbeddedSimulator(SimConfig(latency_ms=50, seed=3)) as sim:
        args = run_args(sim, prompts, out)
        process = start(args)
        try:
            wait_for_progress(out, at_least=20)
            for index, old, new in edits:
                edit_in_place(prompts, index, old, new)
            _, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == 4, stderr
        first_line = edits[0][0] + 1
        assert f"line {first_line} of the input" in stderr, stderr
        assert "the input changed while the job ran" in stderr
        assert "rerun the same command to go on with the input as it is now" in stderr
        received = sim.stats["received"]

        # Every request that went out has its result committed, in the store and the output.
        status = orjson.loads(run_cli("status", str(out), "--json").stdout)
        assert status["state"] == "interrupted", status
        assert status["done"] == received, (status, received)
        assert status["pending"] == N - received > 0
        assert len(read_jsonl(out)) == received
        assert received < first_line  # the edited lines were never sent

        prompts.write_bytes(original)  # restored: the same command resumes and finishes
        finished = run_cli(*args)
        assert finished.returncode == 0, finished.stderr
        assert sim.stats["received"] == N  # nothing sent twice
    assert sorted(line["id"] for line in read_jsonl(out)) == sorted(f"q{i}" for i in range(N))
    return stderr


def test_ids_edited_in_place_during_a_first_run_stop_it_and_lose_nothing(tmp_path: Path) -> None:
    stderr = run_and_edit(
        tmp_path,
        [(index, f'"q{index}"'.encode(), f'"x{index}"'.encode()) for index in EDITED],
    )
    assert (
        f"line {EDITED[0] + 1} of the input is pending in the job store but had the id " in stderr
    )
    assert f"'q{EDITED[0]}' and now has 'x{EDITED[0]}'" in stderr


def test_a_prompt_edited_under_the_same_id_is_never_sent(tmp_path: Path) -> None:
    index = EDITED[0]
    stderr = run_and_edit(
        tmp_path, [(index, f"Question {index}?".encode(), f"Questiom {index}?".encode())]
    )
    assert f"(id 'q{index}') is not what it was when the job read it first" in stderr
