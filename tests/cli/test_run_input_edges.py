"""`llmgather run` on inputs at the edges: too deep, empty, misspelt, colliding ids, a folder as -o."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from llmgather.jobs.store import store_path_for
from llmgather.sim import EmbeddedSimulator, SimConfig
from tests.clihelpers import read_jsonl, run_cli, write_prompts


def sim_args(sim: EmbeddedSimulator) -> list[str]:
    return ["-m", "openai:gpt-4o-mini", "--base-url", sim.base_url + "/v1", "--api-key", "k"]


def nested(levels: int) -> str:
    return '{"a": ' * levels + "1" + "}" * levels


def test_a_field_nested_300_deep_is_an_invalid_line_and_the_rest_runs(tmp_path: Path) -> None:
    prompts = tmp_path / "deep.jsonl"
    prompts.write_text(
        '{"id": "a", "prompt": "fine"}\n'
        '{"id": "deep", "prompt": "x", "metadata": ' + nested(300) + "}\n"
        '{"custom_id": "batch", "method": "POST", "url": "/v1/chat/completions", "body": '
        '{"messages": [{"role": "user", "content": "x"}], "metadata": ' + nested(300) + "}}\n"
        '{"id": "b", "prompt": "fine too"}\n'
    )
    out = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(latency_ms=0)) as sim:
        args = ["run", str(prompts), "-o", str(out), *sim_args(sim), "--quiet"]
        first = run_cli(*args)
        again = run_cli(*args)  # the rerun finds nothing to send and does not crash either
        received = sim.stats["received"]
    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stderr + again.stderr
    assert again.returncode == 1, again.stderr
    assert received == 2
    lines = {line["id"]: line for line in read_jsonl(out)}
    assert [lines[i]["status"] for i in ("a", "deep", "batch", "b")] == [
        "ok",
        "error",
        "error",
        "ok",
    ]
    assert lines["deep"]["error"]["type"] == "invalid_input"
    assert lines["deep"]["error"]["message"].startswith(
        f'{prompts}:2: field "metadata" is nested more than 128 levels deep'
    )
    assert lines["batch"]["error"]["message"].startswith(f'{prompts}:3: field "body.metadata"')
    assert lines["batch"]["custom_id"] == "batch"


def test_no_two_output_lines_share_an_id(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    # Lines 2 and 3 are bad and have no id, so they are known by their numbers; "3" and 2 are
    # the ids of other lines, and "line-3" is taken as well.
    prompts.write_text(
        '{"id": "3", "prompt": "a"}\n'
        "not json\n"
        '{"prompt": 42}\n'
        '{"id": 2, "prompt": "b"}\n'
        '{"id": "line-3", "prompt": "c"}\n'
        "\n"
    )
    out = tmp_path / "out.jsonl"
    args = ["run", str(prompts), "-o", str(out), "--quiet"]
    first = run_cli(*args)
    assert first.returncode == 1, first.stderr
    ids = [line["id"] for line in read_jsonl(out)]
    assert ids == ["3", "line-2", "line-3-2", 2, "line-3", "6"]
    assert len({str(id) for id in ids}) == len(ids)
    # The same ids on every run of the file: a rerun resumes, a restart rebuilds them alike.
    assert run_cli(*args).returncode == 1
    assert [line["id"] for line in read_jsonl(out)] == ids
    assert run_cli(*args, "--restart").returncode == 1
    assert [line["id"] for line in read_jsonl(out)] == ids


def test_invalid_batch_lines_keep_their_custom_id_in_the_output(tmp_path: Path) -> None:
    prompts = tmp_path / "batch.jsonl"
    good = {"custom_id": "ok-1", "method": "POST", "url": "/v1/chat/completions",
            "body": {"messages": [{"role": "user", "content": "hi"}]}}  # fmt: skip
    bad = {"custom_id": "bad-2", "method": "GET", "url": "/v1/chat/completions", "body": {}}
    prompts.write_bytes(
        orjson.dumps(good) + b"\n" + orjson.dumps(bad) + b"\n"
        b'{"custom_id": "bad-3", "method": "POST", "body": {broken\n'
    )
    out = tmp_path / "out.jsonl"
    done = run_cli("run", str(prompts), "-o", str(out), "--quiet")
    assert done.returncode == 1, done.stderr
    lines = read_jsonl(out)
    assert [(line["custom_id"], line["id"], line["status"]) for line in lines] == [
        ("ok-1", "ok-1", "ok"), ("bad-2", "bad-2", "error"), ("bad-3", "bad-3", "error"),
    ]  # fmt: skip


def test_a_folder_as_output_is_refused_and_nothing_is_made(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 2)
    folder = tmp_path / "results"
    folder.mkdir()
    before = sorted(tmp_path.rglob("*"))
    done = run_cli("run", str(prompts), "-o", str(folder), "--quiet")
    assert done.returncode == 2, done.stderr
    assert f"the output {folder} is a folder" in done.stderr
    assert "results.jsonl" in done.stderr  # what to give instead
    assert ".tmp" not in done.stderr
    assert sorted(tmp_path.rglob("*")) == before  # no job store, no temporary file


EMPTY_INPUTS = [
    ("empty.jsonl", b"", []),
    ("empty.csv", b"", ["--column", "q"]),
    ("header.csv", b"id,q\n", ["--column", "q"]),
    ("blank.txt", b"\n \n", []),
    ("-", b"", []),
]


@pytest.mark.parametrize(("name", "data", "extra"), EMPTY_INPUTS)
def test_an_empty_input_of_any_format_exits_0_with_an_empty_output_and_no_store(
    tmp_path: Path, name: str, data: bytes, extra: list[str]
) -> None:
    path = "-" if name == "-" else str(tmp_path / name)
    if name != "-":
        Path(path).write_bytes(data)
    out = tmp_path / "out.jsonl"
    done = run_cli("run", path, "-o", str(out), *extra, stdin=data)
    assert done.returncode == 0, done.stderr
    shown = "<stdin>" if name == "-" else path
    assert f"{shown} holds no items: nothing to send" in done.stderr
    assert out.read_bytes() == b""
    assert not Path(store_path_for(str(out))).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        {"out.jsonl"} | ({name} if name != "-" else set())
    )  # no spool of standard input left either
    as_json = run_cli("run", path, "-o", str(out), *extra, "--json", stdin=data)
    assert as_json.returncode == 0, as_json.stderr
    summary = orjson.loads(as_json.stdout)
    assert (summary["total"], summary["sent"], summary["hint"]) == (0, 0, None)


def test_a_csv_header_without_the_column_is_still_an_error_and_leaves_no_store(
    tmp_path: Path,
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("id,question\n")
    out = tmp_path / "out.jsonl"
    done = run_cli("run", str(rows), "-o", str(out), "--column", "prompt")
    assert done.returncode == 2
    assert "--column 'prompt' is not a column" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv"]


def test_an_unknown_field_is_warned_about_once_with_the_likely_one(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        '{"id": "a", "prompt": "x"}\n'
        '{"id": "b", "prompt": "y", "max_token": 5}\n'
        '{"id": "c", "prompt": "z", "max_token": 5}\n'
        '{"custom_id": "d", "method": "POST", "url": "/v1/chat/completions", "body": '
        '{"messages": [{"role": "user", "content": "w"}], "response_format": {"type": "text"}}}\n'
    )
    out = tmp_path / "out.jsonl"
    done = run_cli("run", str(prompts), "-o", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    warning = f'{prompts}:2: unknown field "max_token" is ignored (did you mean "max_tokens"?)'
    assert done.stderr.count(warning) == 1, done.stderr
    assert done.stderr.count("unknown field") == 1  # a Batch body's own fields pass as they are
    assert len(read_jsonl(out)) == 4
