"""Field validators for JSON input lines: each returns the field's value or raises LineError.

Their messages name the line (`where`), the field, what was found and what is expected. The
checks a prompt dict's fields share are the one prompt parser's (`llmgather._prompt`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from llmgather._errors import InvalidInputError
from llmgather._prompt import (
    content_value,
    json_type,
    messages_value,
    positive_int,
    show_value,
    temperature_value,
)
from llmgather._types import Message
from llmgather.jobs.inputs.item import LineError

__all__ = [
    "MAX_NESTING",
    "check_nesting",
    "content_field",
    "json_type",
    "max_tokens_field",
    "messages_field",
    "optional_field",
    "optional_id_field",
    "recover_id",
    "show_value",
    "temperature_field",
]

_ID_PATTERN = re.compile(r'"(custom_id|id)"\s*:\s*(?:"((?:[^"\\]|\\.){1,200})"|(-?\d{1,20})\b)')
# Levels of arrays and objects one field may nest. orjson writes at most 254 and an output
# line or a request body wraps the field in a few more: past this, the line is refused as
# invalid rather than crash the run when its result is written.
MAX_NESTING = 128


def messages_field(value: Any, where: str, name: str) -> list[Message]:
    """A non-empty list of {"role", "content"} messages, checked as a prompt dict's are."""
    with _at(where):
        return messages_value(value, name.strip('"'))


def content_field(value: Any, where: str, at: str) -> str:
    """A message's content: a string, or OpenAI's list of text parts joined by newlines."""
    with _at(where):
        return content_value(value, at.strip('"'))


@contextmanager
def _at(where: str) -> Iterator[None]:
    """The prompt parser's InvalidInputError (which names the field) as this line's LineError."""
    try:
        yield
    except InvalidInputError as error:
        raise LineError(f"{where}: {error}") from None


def optional_id_field(obj: dict[str, Any], key: str, where: str) -> str | None:
    """An id given as a non-empty string or an integer (as its string), or None if absent."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise LineError(
        f'{where}: field "{key}" must be a non-empty string or an integer, got {show_value(value)}'
    )


def optional_field(
    obj: dict[str, Any],
    key: str,
    kind: type,
    expected: str,
    where: str,
    *,
    nonempty: bool = False,
    prefix: str = "",
) -> Any:
    """A field of type `kind` (described as `expected` in errors), or None if absent."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (nonempty and not value):
        raise LineError(
            f'{where}: field "{prefix}{key}" must be {expected}, got {show_value(value)}'
        )
    return value


def max_tokens_field(obj: dict[str, Any], key: str, where: str, *, prefix: str = "") -> int | None:
    """A positive integer, or None if absent."""
    with _at(where):
        return positive_int(obj, key, prefix=prefix)


def temperature_field(
    obj: dict[str, Any], key: str, where: str, *, prefix: str = ""
) -> float | None:
    """A number from 0 to 2, as a float, or None if absent."""
    with _at(where):
        return temperature_value(obj, key, prefix=prefix)


def recover_id(text: str) -> tuple[str, str] | None:
    """Best effort: the id of a line whose JSON is broken, so its result keeps the caller's id.

    Returns the field that held it ("id" or "custom_id") and the id.
    """
    match = _ID_PATTERN.search(text)
    if match is None:
        return None
    key = match.group(1)
    if match.group(3) is not None:
        return key, match.group(3)
    try:
        value = orjson.loads(f'"{match.group(2)}"')
    except orjson.JSONDecodeError:
        return None
    return (key, value) if isinstance(value, str) and value else None


def check_nesting(obj: dict[str, Any], where: str, *, prefix: str = "") -> None:
    """LineError naming the first field of `obj` nested more than MAX_NESTING levels deep."""
    for key, value in obj.items():
        if isinstance(value, dict | list) and _nesting(value) > MAX_NESTING:
            raise LineError(
                f'{where}: field "{prefix}{key}" is nested more than {MAX_NESTING} levels deep '
                "(arrays and objects inside each other); flatten it"
            )


def _nesting(value: Any) -> int:
    """Levels of arrays and objects in `value`; counting stops just past MAX_NESTING.

    A loop, not recursion: the input decides the depth, Python's stack must not.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_NESTING:
            break
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return deepest
