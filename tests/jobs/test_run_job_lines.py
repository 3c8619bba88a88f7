"""`run_job`'s output lines have `llmgather run`'s shape: the input's `metadata` carried to its
line, `text` the answer's (null where the value has none, and on a failed line, never ""), plus
the call's `value`; its hint speaks to a library caller (`retry_failed=True`, not a flag)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

import llmgather
from llmgather import ConnectError, RetryPolicy
from tests.clihelpers import read_jsonl, run_cli

META = {"source": "crm", "row": 17}


async def answer(obj: dict[str, Any]) -> Any:
    if obj["q"] == "fail":
        raise ValueError("this one fails")
    if obj["q"] == "text":
        return "a plain answer"
    return {"answer": obj["q"]}


def write(path: Path, *objects: dict[str, Any], broken: bool = True) -> Path:
    lines = [orjson.dumps(obj) for obj in objects] + ([b"{not json"] if broken else [])
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


async def test_run_job_lines_carry_metadata_and_have_runs_shape(tmp_path: Path) -> None:
    source = write(
        tmp_path / "in.jsonl",
        {"id": "dict", "q": "dict", "metadata": META},
        {"id": "text", "q": "text", "metadata": ["a", 1]},
        {"id": "fail", "q": "fail", "metadata": META},
        {"id": "bare", "q": "dict"},
    )
    out = tmp_path / "out.jsonl"
    summary = await llmgather.run_job(answer, str(source), str(out), rpm=6000)
    lines = {line["id"]: line for line in read_jsonl(out)}

    assert lines["dict"]["metadata"] == META and lines["dict"]["value"] == {"answer": "dict"}
    assert lines["dict"]["text"] is None  # a dict has no text: null, not ""
    assert lines["text"]["metadata"] == ["a", 1] and lines["text"]["text"] == "a plain answer"
    assert lines["fail"]["metadata"] == META and lines["fail"]["text"] is None
    assert lines["fail"]["error"]["message"] == "this one fails"
    assert lines["bare"]["metadata"] is None
    assert lines["5"]["status"] == "error" and lines["5"]["text"] is None

    # The same shape as `llmgather run`'s lines for prompts, plus `value` on an ok line.
    prompts = write(tmp_path / "prompts.jsonl", {"id": "p", "prompt": "Why?", "metadata": META})
    done = run_cli(
        "run", str(prompts), "-o", str(tmp_path / "run.jsonl"), "--model", "sim:openai:gpt-4o-mini"
    )
    assert done.returncode == 1, done.stderr  # 1: an invalid line, the broken one
    run_lines = read_jsonl(tmp_path / "run.jsonl")
    assert run_lines[0]["metadata"] == META  # what run_job's lines now match
    shape = set(run_lines[0])
    assert set(lines["dict"]) == shape | {"value"}
    assert set(lines["fail"]) == set(run_lines[1]) == shape

    assert summary.hint is not None
    assert "retry_failed=True" in summary.hint and "--retry-failed" not in summary.hint


async def test_a_rerun_keeps_the_metadata_of_lines_finished_before_and_sent_again(
    tmp_path: Path,
) -> None:
    source = write(
        tmp_path / "in.jsonl",
        {"id": "a", "q": "dict", "metadata": META},
        {"id": "b", "q": "fail", "metadata": {"row": 18}},
        broken=False,
    )
    out = tmp_path / "out.jsonl"
    first = await llmgather.run_job(answer, str(source), str(out), rpm=6000, name="answers")

    async def fixed(obj: dict[str, Any]) -> Any:
        return {"answer": "fixed"}

    again = await llmgather.run_job(
        fixed, str(source), str(out), rpm=6000, name="answers", retry_failed=True
    )
    assert (first.failed, again.sent, again.failed) == (1, 1, 0)
    lines = read_jsonl(out)
    assert [line["metadata"] for line in lines] == [META, {"row": 18}]
    assert lines[1]["value"] == {"answer": "fixed"} and lines[1]["text"] is None


def test_an_item_given_up_on_a_server_down_names_the_library_words_too() -> None:
    # What a run_job line's error says when the server stayed down past the retry ceiling.
    error = RetryPolicy(max_retry_wait=60).unreachable_error(
        ConnectError("connection refused"), 75, sent=False
    )
    assert "retry_failed=True" in error.message and "RetryPolicy(max_retry_wait=" in error.message
    assert "--retry-failed" in error.message  # and the CLI's, for the same message in `run`
