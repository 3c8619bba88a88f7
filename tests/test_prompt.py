"""One parser of a prompt dict: the library and a JSONL line read the same dict the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from llmgather import Client, InvalidInputError, Request
from llmgather._prompt import PROMPT_FIELDS, request_from_dict
from llmgather.jobs.inputs import read_inputs

DICTS: list[dict[str, Any]] = [
    {"prompt": "Why?", "id": 42, "metadata": {"row": [1, 2]}, "model": "m1", "max_tokens": 7},
    {"messages": [{"role": "user", "content": "Hi"}], "id": "abc", "temperature": 1},
    # the default system prompt goes before the messages, as the CLI always did
    {"messages": [{"role": "developer", "content": "own"}, {"role": "user", "content": "Hi"}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}], "id": "p"},
    {"prompt": "p", "system": "line system", "id": "s"},
    {"messages": [{"role": "user", "content": "u"}], "system": "line system", "id": "m"},
]


def through_a_jsonl_line(tmp_path: Path, data: dict[str, Any], system: str | None) -> Request:
    path = tmp_path / "one.jsonl"
    path.write_bytes(orjson.dumps(data) + b"\n")
    [item] = read_inputs(str(path), system=system)
    assert item.error is None and item.request is not None
    return item.request


@pytest.mark.parametrize("data", DICTS)
@pytest.mark.parametrize("system", [None, "global"])
def test_a_jsonl_line_is_read_by_the_one_parser(
    tmp_path: Path, data: dict[str, Any], system: str | None
) -> None:
    request = request_from_dict(data, system=system)
    line = through_a_jsonl_line(tmp_path, data, system)
    assert line == request.replace(id=request.id or "1")  # a line without an id is its number


def test_system_goes_before_messages() -> None:
    messages = [{"role": "user", "content": "Hi"}]
    request = request_from_dict({"messages": messages}, system="global")
    assert request.messages == ({"role": "system", "content": "global"}, *messages)
    own = request_from_dict({"messages": messages, "system": "own"}, system="global")
    assert own.messages[0] == {"role": "system", "content": "own"}
    prompt = request_from_dict({"prompt": "Hi"}, system="global")
    assert prompt.messages == request.messages


@pytest.mark.parametrize("data", DICTS)
def test_the_client_reads_a_dict_as_the_cli_reads_a_line(
    tmp_path: Path, data: dict[str, Any]
) -> None:
    # `Client.request` fills the same defaults in both; what differs would be the parsing.
    client = Client("sim:gpt-4o-mini", defaults={"system": "global"}, env={})
    line = through_a_jsonl_line(tmp_path, data, "global")
    assert client.build_request(data) == client.build_request(
        line.replace(id=str(data.get("id", "")))
    )


def test_extra_is_read_by_the_library_but_not_from_a_plain_line(tmp_path: Path) -> None:
    data = {"prompt": "x", "id": "e", "extra": {"seed": 3}}
    assert request_from_dict(data).extra == {"seed": 3}
    assert through_a_jsonl_line(tmp_path, data, None).extra is None
    assert "extra" in PROMPT_FIELDS


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"prompt": 12}, 'field "prompt" must be a non-empty string, got 12'),
        ({"prompt": "x", "id": 1.5}, 'field "id" must be a non-empty string or an integer'),
        ({"prompt": "x", "id": True}, 'field "id" must be a non-empty string or an integer'),
        ({"prompt": "x", "max_tokens": 0}, 'field "max_tokens" must be a positive integer, got 0'),
        ({"prompt": "x", "temperature": 3}, 'field "temperature" must be a number from 0 to 2'),
        ({"prompt": "x", "model": ""}, 'field "model" must be a non-empty string, got ""'),
        ({"prompt": "x", "system": 1}, 'field "system" must be a string, got 1'),
        ({"prompt": "x", "extra": [1]}, 'field "extra" must be an object of provider-native'),
        ({"messages": [{"role": "tool", "content": "x"}]}, 'field "messages[0].role" must be one'),
        ({"messages": "hi"}, 'field "messages" must be a non-empty list'),
        ({"prompt": "x", "messages": []}, 'has both "prompt" and "messages"; give one'),
        ({"id": "x"}, 'no "prompt" or "messages" field; expected {"prompt": "..."}'),
        ({"prompt": [object()]}, 'field "prompt" must be a non-empty string, got <list>'),
        (
            {"system": "s", "messages": [{"role": "system", "content": "t"}]},
            'field "system" conflicts with the system message in "messages"',
        ),
    ],
)
def test_a_bad_field_is_named_with_what_it_must_be(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        request_from_dict(data)
    assert str(caught.value).startswith(expected)


def test_a_jsonl_line_puts_its_place_before_the_parsers_message(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(
        b'{"prompt": "fine"}\n{"id": 7, "prompt": "x", "extra": 1, "max_tokens": -1}\n'
    )
    bad = list(read_inputs(str(path)))[1]
    assert bad.request is None and bad.id == "7" and bad.output_fields == {"id": 7}
    assert bad.error == f'{path}:2: field "max_tokens" must be a positive integer, got -1'
