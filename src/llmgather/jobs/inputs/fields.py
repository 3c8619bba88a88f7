"""Field validators for JSON input lines: each returns the field's value or raises LineError.

Their messages name the line (`where`), the field, what was found and what is expected.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from llmgather._types import Message
from llmgather.jobs.inputs.item import LineError

__all__ = [
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

_ROLES = ("system", "user", "assistant")
_ID_PATTERN = re.compile(r'"(?:custom_id|id)"\s*:\s*(?:"((?:[^"\\]|\\.){1,200})"|(-?\d{1,20})\b)')


def messages_field(value: Any, where: str, name: str) -> list[Message]:
    """A non-empty list of {"role", "content"} messages; "developer" is read as "system"."""
    if not isinstance(value, list) or not value:
        got = "an empty list" if value == [] else show_value(value)
        raise LineError(
            f'{where}: field {name} must be a non-empty list of {{"role": ..., "content": ...}} objects, got {got}'
        )
    messages: list[Message] = []
    for i, m in enumerate(value):
        at = f'{name[:-1]}[{i}]"'
        if not isinstance(m, dict):
            raise LineError(
                f'{where}: field {at} must be an object with "role" and "content", got {json_type(m)}'
            )
        role = "system" if m.get("role") == "developer" else m.get("role")
        if role not in _ROLES:
            raise LineError(
                f'{where}: field {at[:-1]}.role" must be one of {", ".join(_ROLES)}, got {show_value(m.get("role"))}'
            )
        messages.append(
            {"role": role, "content": content_field(m.get("content"), where, f'{at[:-1]}.content"')}
        )
    return messages


def content_field(value: Any, where: str, at: str) -> str:
    """A message's content: a string, or OpenAI's list of text parts joined by newlines."""
    if isinstance(value, str):
        return value
    # OpenAI's list-of-parts form; only text parts can be sent to every provider.
    if (
        isinstance(value, list)
        and value
        and all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
            for p in value
        )
    ):
        return "\n".join(p["text"] for p in value)
    raise LineError(
        f'{where}: field {at} must be a string or a list of {{"type": "text", "text": ...}} parts, got {show_value(value)}'
    )


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
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise LineError(
            f'{where}: field "{prefix}{key}" must be a positive integer, got {show_value(value)}'
        )
    return value


def temperature_field(
    obj: dict[str, Any], key: str, where: str, *, prefix: str = ""
) -> float | None:
    """A number from 0 to 2, as a float, or None if absent."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 2:
        raise LineError(
            f'{where}: field "{prefix}{key}" must be a number from 0 to 2, got {show_value(value)}'
        )
    return float(value)


def recover_id(text: str) -> str | None:
    """Best effort: the id of a line whose JSON is broken, so its result keeps the caller's id."""
    match = _ID_PATTERN.search(text)
    if match is None:
        return None
    if match.group(2) is not None:
        return match.group(2)
    try:
        value = orjson.loads(f'"{match.group(1)}"')
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, str) and value else None


def show_value(value: Any) -> str:
    """A short JSON rendering of a bad value for an error message."""
    if value is None:
        return "null"
    text = orjson.dumps(value).decode() if json_type(value) != "?" else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def json_type(value: Any) -> str:
    """What kind of JSON value `value` is, with its article ("a string", "an array")."""
    for kind, name in ((bool, "a boolean"), (int, "a number"), (float, "a number"), (str, "a string"),
                       (list, "an array"), (dict, "an object")):  # fmt: skip
        if isinstance(value, kind):
            return name
    return "null" if value is None else "?"
