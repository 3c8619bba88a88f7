"""How `llmgather run` reads a file's bytes and its ids, as a user meets them: a UTF-8 byte
order mark is dropped in every format, a UTF-16 or UTF-32 file is refused once with how to
convert it, and an id two lines share is explained when one of them has it as its number."""

from __future__ import annotations

import codecs
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from llmgather.jobs.store import store_path_for
from tests.clihelpers import cli_env, read_jsonl, run_cli

PROMPTS = b'{"id": "a", "prompt": "First?"}\n{"id": "b", "prompt": "Second?"}\n'


@pytest.mark.parametrize(
    ("name", "data", "args"),
    [
        ("p.jsonl", PROMPTS, []),
        ("p.csv", b"id,prompt\r\na,First?\r\nb,Second?\r\n", ["--column", "prompt", "--id-column", "id"]),
        ("p.txt", b"First?\nSecond?\n", []),
    ],
)  # fmt: skip
def test_a_utf8_byte_order_mark_is_dropped_in_every_format(
    tmp_path: Path, name: str, data: bytes, args: list[str]
) -> None:
    inputs = tmp_path / name
    inputs.write_bytes(codecs.BOM_UTF8 + data)
    output = tmp_path / "out.jsonl"
    done = run_cli("run", str(inputs), "-o", str(output), "--quiet", *args, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [line["status"] for line in read_jsonl(output)] == ["ok", "ok"]


def test_a_utf8_byte_order_mark_on_standard_input_is_dropped(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    done = run_cli("run", "-", "-o", str(output), stdin=codecs.BOM_UTF8 + PROMPTS, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [line["id"] for line in read_jsonl(output)] == ["a", "b"]


@pytest.mark.parametrize(
    ("encoding", "named"),
    [
        ("utf-16", "UTF-16"),  # with its byte order mark, as Windows tools write it
        ("utf-16-le", "UTF-16LE"),  # without one: the NULs beside the ASCII give it away
        ("utf-16-be", "UTF-16BE"),
        ("utf-32", "UTF-32"),
    ],
)
@pytest.mark.parametrize("name", ["prompts.jsonl", "prompts.txt"])
def test_a_utf16_file_is_refused_once_saying_how_to_convert_it(
    tmp_path: Path, encoding: str, named: str, name: str
) -> None:
    inputs = tmp_path / name
    inputs.write_bytes(PROMPTS.decode().encode(encoding))
    output = tmp_path / "out.jsonl"
    done = run_cli("run", str(inputs), "-o", str(output), "--quiet", timeout=60)
    assert done.returncode == 2, done.stderr
    converted = inputs.with_name(inputs.stem + "-utf8" + inputs.suffix)
    assert done.stderr.count(f"{inputs}: this file is {named}; convert it to UTF-8") == 1
    assert f"iconv -f {named} -t UTF-8 {inputs} > {converted}" in done.stderr
    assert "invalid UTF-8" not in done.stderr and "Traceback" not in done.stderr
    assert not output.exists() and not Path(store_path_for(str(output))).exists()


def test_a_utf16_file_on_standard_input_is_refused_too(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    done = subprocess.run(  # run_cli's stdin is text; this one is not UTF-8
        [sys.executable, "-m", "llmgather", "run", "-", "-o", str(output)],
        input=PROMPTS.decode().encode("utf-16"),
        capture_output=True,
        timeout=60,
        env=cli_env(),
    )
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert "<stdin>: this input is UTF-16; convert it to UTF-8" in stderr
    assert "pipe it through iconv -f UTF-16 -t UTF-8" in stderr


def test_an_id_shared_with_a_line_numbered_by_default_says_so(tmp_path: Path) -> None:
    lines = [{"id": f"q{n}", "prompt": f"Question {n}?"} for n in range(1, 12)]
    lines += [{"prompt": "Line twelve has no id."}, {"id": 12, "prompt": "Line 13 says 12."}]
    inputs = tmp_path / "in.jsonl"
    inputs.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    done = run_cli("run", str(inputs), "-o", str(tmp_path / "out.jsonl"), timeout=60)
    assert done.returncode == 2, done.stderr
    message = " ".join(done.stderr.split())  # as one line, however the terminal wrapped it
    assert (
        "'12' on lines 12, 13 (12 is line 12's number, the id of a line that gives none)" in message
    )
    assert "give every line an id of its own, or give none" in message
    assert "drop them" not in message  # dropping some ids is how this came about


def test_ids_that_are_all_given_and_shared_are_reported_without_the_note(tmp_path: Path) -> None:
    inputs = tmp_path / "in.jsonl"
    inputs.write_bytes(b'{"id": "x", "prompt": "a"}\n{"id": "x", "prompt": "b"}\n')
    done = run_cli("run", str(inputs), "-o", str(tmp_path / "out.jsonl"), timeout=60)
    assert done.returncode == 2, done.stderr
    message = " ".join(done.stderr.split())
    assert "'x' on lines 1, 2." in message and "number, the id of a line" not in message
