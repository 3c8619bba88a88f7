"""A result as bytes: the JSON object the job store keeps and the output line it renders to.

One encoding shared by the store (`jobs.store.rows`, which records `encode_result`) and the
output file (`jobs.output`, which writes the lines): both import it, neither imports the other.
Every line of the output, appended live or rebuilt from the store, is `render_line` of the
result's JSON object (under the input's id) with the input's own output fields set over it: a
Batch API line's `custom_id`, an integer id as the input gave it.
"""

from __future__ import annotations

from typing import Any

import orjson

from llmgather._types import Result

__all__ = ["encode_result", "render_line", "render_result", "render_stored", "result_object"]


def result_object(id: str, result: Result) -> dict[str, Any]:
    """The result as the output line's JSON object, known by the input's id (not the engine's).

    A callable's job (`jobs.calls`) gives each ok result its return value made JSON
    (`jobs.values`): the line carries it as `value`.
    """
    data = result.to_dict()
    data["id"] = id
    if isinstance(result.value, orjson.Fragment):
        data["value"] = result.value
    return data


def encode_result(id: str, result: Result) -> bytes:
    """`result_object` as JSON: what the store keeps, and with no output fields the output
    line itself less its newline, so a result is serialised once for both."""
    return orjson.dumps(result_object(id, result))


def render_line(result: dict[str, Any], fields: dict[str, Any] | None) -> bytes:
    """One line of the output: the result's object with the input's fields set over it.

    The input's fields lead the line, so a Batch API `custom_id` comes first as OpenAI's does.
    """
    if fields:
        result = {**fields, **result, **fields}
    return orjson.dumps(result) + b"\n"


def render_result(
    id: str, result: Result, fields: dict[str, Any] | None, encoded: bytes | None = None
) -> bytes:
    """The output line of a result as it arrives (the live view); `encoded`, its
    `encode_result` when the caller has it already, is the line itself when there are no fields."""
    if fields:
        return render_line(result_object(id, result), fields)
    return (encoded if encoded is not None else encode_result(id, result)) + b"\n"


def render_stored(result: bytes, fields: bytes | None) -> bytes:
    """The output line of a result and fields as the store keeps them (JSON of the same objects)."""
    if fields is None:
        # The stored object is `render_line`'s own serialisation of it, byte for byte: a
        # million-line export need not parse and dump every line again.
        return result + b"\n"
    return render_line(orjson.loads(result), orjson.loads(fields))
