"""Input readers: every format, and every kind of bad line reported with its line and field."""

from __future__ import annotations

import io
import sys
import tracemalloc
from collections.abc import Mapping
from pathlib import Path

import orjson
import pytest

from llmgather._errors import InvalidInputError
from llmgather.jobs.inputs import detect_format, read_inputs


def write(tmp_path: Path, name: str, data: bytes | str) -> str:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def jsonl(
    tmp_path: Path, *lines: bytes | str | Mapping[str, object], name: str = "prompts.jsonl"
) -> str:
    return write(tmp_path, name, b"\n".join(_line_bytes(line) for line in lines) + b"\n")


def _line_bytes(line: bytes | str | Mapping[str, object]) -> bytes:
    if isinstance(line, bytes):
        return line
    return line.encode() if isinstance(line, str) else orjson.dumps(dict(line))


# -- format detection --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fmt", "expected"),
    [
        ("a.jsonl", None, "jsonl"),
        ("a.JSON", None, "jsonl"),
        ("a.ndjson", None, "jsonl"),
        ("a.csv", None, "csv"),
        ("a.txt", None, "txt"),
        ("-", None, "jsonl"),
        ("a.data", "csv", "csv"),
        ("-", "txt", "txt"),
    ],
)
def test_detect_format(path: str, fmt: str | None, expected: str) -> None:
    assert detect_format(path, fmt) == expected


def test_detect_format_unknown_extension_names_the_choices() -> None:
    with pytest.raises(InvalidInputError, match=r"\.xlsx.*--format"):
        detect_format("data.xlsx", None)
    with pytest.raises(InvalidInputError, match="unknown input format 'yaml'"):
        detect_format("a.jsonl", "yaml")


# -- JSONL -------------------------------------------------------------------------------------


def test_jsonl_prompts_messages_and_per_line_options(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path,
        {
            "prompt": "Why?",
            "id": 42,
            "metadata": {"row": [1, 2]},
            "model": "m1",
            "max_tokens": 7,
            "temperature": 1,
        },
        {"messages": [{"role": "user", "content": "Hi"}], "id": "abc"},
        {"messages": [{"role": "system", "content": "own"}, {"role": "user", "content": "Hi"}]},
        {"prompt": "p", "system": "line system"},
    )
    items = list(read_inputs(path, system="global"))
    assert [i.line for i in items] == [1, 2, 3, 4]
    assert [i.id for i in items] == ["42", "abc", "3", "4"]
    assert all(i.error is None for i in items)
    # The integer id goes back out as an integer; the others need nothing added.
    assert [i.output_fields for i in items] == [{"id": 42}, None, None, None]
    first = items[0].request
    assert first is not None
    assert first.messages == (
        {"role": "system", "content": "global"},
        {"role": "user", "content": "Why?"},
    )
    assert (first.id, first.model, first.max_tokens, first.temperature) == ("42", "m1", 7, 1.0)
    assert first.metadata == {"row": [1, 2]}
    assert items[1].request is not None and items[1].request.messages[0] == {
        "role": "system",
        "content": "global",
    }
    assert items[2].request is not None and items[2].request.messages[0]["content"] == "own"
    assert items[3].request is not None and items[3].request.messages[0]["content"] == "line system"


def test_jsonl_without_global_system_sends_only_the_prompt(tmp_path: Path) -> None:
    [item] = read_inputs(jsonl(tmp_path, {"prompt": "x"}))
    assert item.request is not None and item.request.messages == ({"role": "user", "content": "x"},)


def test_crlf_line_endings_and_bom(tmp_path: Path) -> None:
    path = write(tmp_path, "p.jsonl", b'\xef\xbb\xbf{"prompt": "a"}\r\n{"prompt": "b"}\r\n')
    items = list(read_inputs(path))
    assert [i.error for i in items] == [None, None]
    assert [i.request.messages[-1]["content"] for i in items if i.request] == ["a", "b"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '{"prompt": "x", "max_tokens": "ten"}',
            'field "max_tokens" must be a positive integer, got "ten"',
        ),
        (
            '{"prompt": "x", "max_tokens": 0}',
            'field "max_tokens" must be a positive integer, got 0',
        ),
        (
            '{"prompt": "x", "max_tokens": true}',
            'field "max_tokens" must be a positive integer, got true',
        ),
        (
            '{"prompt": "x", "temperature": 2.5}',
            'field "temperature" must be a number from 0 to 2, got 2.5',
        ),
        (
            '{"prompt": "x", "temperature": "hot"}',
            'field "temperature" must be a number from 0 to 2, got "hot"',
        ),
        ('{"prompt": "x", "model": 5}', 'field "model" must be a non-empty string, got 5'),
        ('{"prompt": "x", "system": ["a"]}', 'field "system" must be a string, got ["a"]'),
        ('{"prompt": 12}', 'field "prompt" must be a non-empty string, got 12'),
        ('{"prompt": "  "}', 'field "prompt" must be a non-empty string, got "  "'),
        (
            '{"prompt": "x", "id": 1.5}',
            'field "id" must be a non-empty string or an integer, got 1.5',
        ),
        ('{"prompt": "x", "id": {"a": 1}}', 'field "id" must be a non-empty string or an integer'),
        (
            '{"messages": []}',
            'field "messages" must be a non-empty list of {"role": ..., "content": ...} objects, got an empty list',
        ),
        ('{"messages": "hi"}', 'field "messages" must be a non-empty list'),
        (
            '{"messages": ["hi"]}',
            'field "messages[0]" must be an object with "role" and "content", got a string',
        ),
        (
            '{"messages": [{"role": "robot", "content": "x"}]}',
            'field "messages[0].role" must be one of system, user, assistant, got "robot"',
        ),
        (
            '{"messages": [{"role": "user", "content": "a"}, {"role": "user"}]}',
            'field "messages[1].content" must be a string',
        ),
        (
            '{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}',
            'field "messages[0].content" must be a string or a list',
        ),
        (
            '{"prompt": "x", "messages": [{"role": "user", "content": "y"}]}',
            'has both "prompt" and "messages"; give one',
        ),
        (
            '{"text": "x"}',
            'no "prompt" or "messages" field; expected {"prompt": "..."} or {"messages": ',
        ),
        (
            '{"system": "s", "messages": [{"role": "system", "content": "t"}, {"role": "user", "content": "u"}]}',
            'field "system" conflicts with the system message',
        ),
        ("[1, 2]", 'expected a JSON object such as {"prompt": "..."}'),
        ('"just a string"', "got a string"),
        ('{"prompt": "x",, }', "malformed JSON at column 16: unexpected character"),
        ('{"prompt": tru}', "malformed JSON at column 12: invalid literal"),
        ('{"prompt": "unterminated}', "malformed JSON at column"),
        ("", "empty line; expected one JSON object per line"),
        ("   \t", "empty line; expected one JSON object per line"),
    ],
)
def test_bad_jsonl_line_names_file_line_and_field(tmp_path: Path, line: str, expected: str) -> None:
    path = jsonl(tmp_path, {"prompt": "fine"}, {"prompt": "fine"}, line, {"prompt": "after"})
    items = list(read_inputs(path))
    assert [i.line for i in items] == [1, 2, 3, 4]
    bad = items[2]
    assert bad.request is None
    assert bad.error is not None and bad.error.startswith(f"{path}:3: ")
    assert expected in bad.error
    assert items[3].request is not None  # one bad line never stops the rest


def test_exact_message_for_bad_max_tokens(tmp_path: Path) -> None:
    lines = [{"prompt": f"p{i}"} for i in range(16)] + [{"prompt": "x", "max_tokens": "ten"}]
    path = jsonl(tmp_path, *lines)
    item = list(read_inputs(path))[16]
    assert item.error == f'{path}:17: field "max_tokens" must be a positive integer, got "ten"'
    assert item.id == "17"


def test_invalid_line_keeps_its_own_id_when_recoverable(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path,
        {"id": "a", "prompt": "x", "max_tokens": -1},
        '{"id": "b", "prompt": broken',
        '{"id": 7, "prompt": broken',
        {"custom_id": "c", "url": "/v1/embeddings", "method": "POST", "body": {}},
        '{"prompt": broken}',
    )
    assert [i.id for i in read_inputs(path)] == ["a", "b", "7", "c", "5"]


def test_invalid_utf8_reports_byte_offset(tmp_path: Path) -> None:
    path = write(
        tmp_path, "p.jsonl", b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n{"prompt": "next"}\n'
    )
    items = list(read_inputs(path))
    assert items[1].error is not None
    assert items[1].error.startswith(
        f"{path}:2: invalid UTF-8 at byte offset 15 in the line (offset 32 in the file)"
    )
    assert "UTF-8" in items[1].error and items[2].request is not None


def test_overlong_line_is_skipped_with_bounded_memory(tmp_path: Path) -> None:
    huge = b'{"prompt": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    path = write(tmp_path, "big.jsonl", b'{"prompt": "a"}\n' + huge + b'\n{"prompt": "b"}\n')
    tracemalloc.start()
    try:
        items = list(read_inputs(path, max_line_bytes=64 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024, f"peak {peak} bytes: the long line was loaded"
    assert [i.line for i in items] == [1, 2, 3]
    assert items[1].request is None and items[1].error is not None
    assert items[1].error.startswith(
        f"{path}:2: line is {len(huge):,} bytes, longer than the limit of 65,536 bytes"
    )
    assert items[2].request is not None and items[2].request.messages[-1]["content"] == "b"


def test_line_exactly_at_the_limit_is_accepted(tmp_path: Path) -> None:
    line = '{"prompt": "' + "y" * 100 + '"}'
    path = write(tmp_path, "p.jsonl", line + "\r\n" + line + "x\n" + line)
    items = list(read_inputs(path, max_line_bytes=len(line)))
    assert [i.error is None for i in items] == [True, False, True]


def test_batch_api_lines_run_unchanged(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path,
        {
            "custom_id": "request-1",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "developer", "content": "Be brief."},
                    {"role": "user", "content": "Hi"},
                ],
                "max_completion_tokens": 50,
                "temperature": 0.2,
            },
        },
        {
            "custom_id": "request-2",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "m",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}],
                "max_tokens": 9,
            },
        },
    )
    first, second = read_inputs(path, system="ignored when the line has one")
    assert first.id == "request-1" and first.output_fields == {"custom_id": "request-1"}
    assert first.request is not None
    assert first.request.messages == (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    )
    assert (first.request.model, first.request.max_tokens, first.request.temperature) == (
        "gpt-4o-mini",
        50,
        0.2,
    )
    assert second.request is not None and second.request.max_tokens == 9
    assert second.request.messages == ({"role": "user", "content": "a"},)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ({"custom_id": "r", "method": "POST", "url": "/v1/embeddings", "body": {"input": "x"}},
         'Batch API line: field "url" is "/v1/embeddings"; supported: /v1/chat/completions'),
        ({"custom_id": "r", "method": "GET", "url": "/v1/chat/completions", "body": {}},
         'field "method" must be "POST", got "GET"'),
        ({"custom_id": 5, "url": "/v1/chat/completions", "body": {}}, 'field "custom_id" must be a non-empty string, got 5'),
        ({"custom_id": "r", "url": "/v1/chat/completions", "body": []}, 'field "body" must be an object, got an array'),
        ({"custom_id": "r", "url": "/v1/chat/completions", "body": {"model": "m"}}, 'field "body.messages" is missing'),
        ({"custom_id": "r", "url": "/v1/chat/completions", "body": {"messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}},
         'field "body.max_tokens" must be a positive integer, got "many"'),
        ({"custom_id": "r", "url": "/v1/chat/completions", "body": {"messages": []}},
         'field "body.messages" must be a non-empty list'),
    ],
)  # fmt: skip
def test_bad_batch_lines(tmp_path: Path, line: dict[str, object], expected: str) -> None:
    [item] = read_inputs(jsonl(tmp_path, line))
    assert item.request is None and item.error is not None
    assert item.error.startswith(f"{tmp_path / 'prompts.jsonl'}:1: ")
    assert expected in item.error


# -- CSV, txt, stdin ---------------------------------------------------------------------------


def test_csv_with_quoted_multiline_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "rows.csv",
        "key,text,label\n"
        'a,"first line\nsecond line, with comma",x\n'
        "b,plain,y\n"
        'c,"say ""hi""\n\nthere",z\n'
        "d,last,w\n",
    )
    items = list(read_inputs(path, column="text", id_column="key", system="S"))
    assert [(i.line, i.id) for i in items] == [(2, "a"), (4, "b"), (5, "c"), (8, "d")]
    assert all(i.error is None for i in items)
    assert items[0].request is not None
    assert items[0].request.messages == (
        {"role": "system", "content": "S"},
        {"role": "user", "content": "first line\nsecond line, with comma"},
    )
    assert (
        items[2].request is not None
        and items[2].request.messages[-1]["content"] == 'say "hi"\n\nthere'
    )


def test_csv_default_ids_are_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "rows.csv", 'text\n"two\nlines"\nthree\n')
    assert [(i.line, i.id) for i in read_inputs(path, column="text")] == [(2, "2"), (4, "4")]


def test_csv_missing_column_lists_the_header(tmp_path: Path) -> None:
    path = write(tmp_path, "rows.csv", "id,question,answer\n1,q,a\n")
    with pytest.raises(
        InvalidInputError, match=r"--column 'prompt' is not a column.*'id', 'question', 'answer'"
    ):
        list(read_inputs(path, column="prompt"))
    with pytest.raises(InvalidInputError, match=r"--id-column 'key'.*'id', 'question', 'answer'"):
        list(read_inputs(path, column="question", id_column="key"))
    with pytest.raises(InvalidInputError, match="CSV input needs --column"):
        list(read_inputs(path))


@pytest.mark.parametrize(
    ("name", "data"),
    [("empty.csv", ""), ("blank.csv", "\n\n"), ("header.csv", "x,y\n"), ("empty.jsonl", ""),
     ("empty.txt", ""), ("blank.txt", "\n  \n\n")],
)  # fmt: skip
def test_an_empty_file_of_any_format_holds_no_items(tmp_path: Path, name: str, data: str) -> None:
    assert list(read_inputs(write(tmp_path, name, data), column="x")) == []


def test_csv_bad_records(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "rows.csv",
        b'id,text\n1,\n2\n3,"bad"quote\n4,caf\xe9\n,no id\n\n7,fine\n8,"never closed\n',
    )
    items = list(read_inputs(path, column="text", id_column="id"))
    errors = {i.line: i.error for i in items}
    assert errors[2] == f'{path}:2: column "text" is empty; expected the prompt text'
    assert errors[3] is not None and 'no column "text"' in errors[3]
    assert errors[4] is not None and errors[4].startswith(f"{path}:4: malformed CSV record")
    assert errors[5] is not None and errors[5].startswith(
        f"{path}:5: invalid UTF-8 at byte offset 5 in the line (offset 31 in the file)"
    )
    assert errors[6] is not None and 'column "id" (the id) is empty' in errors[6]
    assert errors[7] is not None and "empty line" in errors[7]
    assert errors[8] is None
    assert errors[9] is not None and "malformed CSV record" in errors[9]
    assert {i.line: i.id for i in items}[5] == "4"


def test_txt_one_prompt_per_line_blank_lines_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, "p.txt", b"first\n\n   \nsecond one\r\nbad \xff\n")
    items = list(read_inputs(path, system="S"))
    assert [(i.line, i.id) for i in items] == [(1, "1"), (4, "4"), (5, "5")]
    assert items[1].request is not None
    assert items[1].request.messages == (
        {"role": "system", "content": "S"},
        {"role": "user", "content": "second one"},
    )
    assert items[2].error is not None and items[2].error.startswith(
        f"{path}:5: invalid UTF-8 at byte offset 4 in the line"
    )


def test_stdin_is_read_in_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    data = b'{"prompt": "from stdin", "id": "s1"}\n{"prompt": 3}\n'
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    items = list(read_inputs("-"))
    assert items[0].id == "s1" and items[0].request is not None
    assert items[1].error == '<stdin>:2: field "prompt" must be a non-empty string, got 3'


def test_stdin_txt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a\nb\n"), encoding="utf-8"))
    assert [i.id for i in read_inputs("-", fmt="txt")] == ["1", "2"]


def test_reader_is_lazy(tmp_path: Path) -> None:
    path = jsonl(tmp_path, *({"prompt": str(i)} for i in range(1000)))
    items = read_inputs(path)
    assert next(items).line == 1
    items.close()  # closing the generator closes the file (warnings are errors here)


# -- what a reader must not crash on, lose or ignore silently ---------------------------------


def nested(levels: int) -> str:
    """JSON text of objects `levels` deep (orjson refuses to write past 254)."""
    return '{"a": ' * levels + '"leaf"' + "}" * levels


def test_a_field_nested_too_deep_is_an_invalid_line_naming_it(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path,
        '{"id": "p1", "prompt": "x", "metadata": ' + nested(300) + "}",
        '{"custom_id": "b1", "url": "/v1/chat/completions", "method": "POST", "body": '
        '{"messages": [{"role": "user", "content": "x"}], "metadata": ' + nested(300) + "}}",
        '{"id": "ok", "prompt": "y", "metadata": ' + nested(128) + "}",  # deep, but writable
        {"id": "s", "prompt": "{[" * 200},  # brackets inside a string are no nesting
    )
    plain, batch, fine, text = read_inputs(path)
    assert plain.request is None and plain.id == "p1"
    assert plain.error == (
        f'{path}:1: field "metadata" is nested more than 128 levels deep '
        "(arrays and objects inside each other); flatten it"
    )
    assert batch.request is None and batch.id == "b1"
    assert batch.error is not None
    assert batch.error.startswith(f'{path}:2: field "body.metadata" is nested more than 128')
    assert batch.output_fields == {"custom_id": "b1"}
    assert fine.request is not None and text.request is not None
    # What is accepted can be written: an output line wraps the field in a level or two more.
    assert orjson.dumps({"line": {"metadata": fine.request.metadata}})


def test_invalid_batch_lines_keep_their_custom_id(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path,
        {"custom_id": "r1", "method": "GET", "url": "/v1/chat/completions", "body": {}},
        {"custom_id": "r2", "url": "/v1/chat/completions", "body": {"messages": []}},
        '{"custom_id": "r3", "url": "/v1/chat/completions", "body": {broken',
        {"custom_id": 4, "url": "/v1/chat/completions", "body": {}},
        '{"id": "p5", "prompt": broken',
        {"id": 6, "prompt": 6},
    )
    items = list(read_inputs(path))
    assert all(item.request is None for item in items)
    assert [item.output_fields for item in items] == [
        {"custom_id": "r1"}, {"custom_id": "r2"}, {"custom_id": "r3"}, {"custom_id": 4},
        None, {"id": 6},
    ]  # fmt: skip
    assert [item.id for item in items] == ["r1", "r2", "r3", "4", "p5", "6"]


def test_unknown_fields_are_warned_about_once_each_with_a_close_match(tmp_path: Path) -> None:
    batch_body = {"messages": [{"role": "user", "content": "x"}], "max_completion_token": 5}
    path = jsonl(
        tmp_path,
        {"prompt": "a"},
        {"prompt": "b", "max_token": 5},
        {"prompt": "c", "max_token": 6, "temprature": 0.1},
        {"custom_id": "r", "url": "/v1/chat/completions", "method": "POST", "body": batch_body},
        {"prompt": "d", "colour": "blue"},
    )
    warnings: list[str] = []
    items = list(read_inputs(path, warn=warnings.append))
    assert all(item.request is not None for item in items)  # ignored, not invalid
    assert warnings == [
        f'{path}:2: unknown field "max_token" is ignored (did you mean "max_tokens"?); '
        "later lines with it are not reported",
        f'{path}:3: unknown field "temprature" is ignored (did you mean "temperature"?); '
        "later lines with it are not reported",
        f'{path}:5: unknown field "colour" is ignored (the fields read are: id, json_schema, '
        "max_tokens, messages, metadata, model, prompt, response_format, system, temperature, "
        "tool_choice, tools); later lines with it are not reported",
    ]
    # Without a listener (a second read of the same file) nothing is said.
    assert len(list(read_inputs(path))) == 5


def test_unknown_field_warnings_stop_after_twenty_names(tmp_path: Path) -> None:
    path = jsonl(tmp_path, *({"prompt": "x", f"field{i}": 1} for i in range(50)))
    warnings: list[str] = []
    list(read_inputs(path, warn=warnings.append))
    assert len(warnings) == 21 and "only the first 20 names" in warnings[-1]
