"""JSONL of plain objects: each line one JSON object, the input of a user's callable as it is.

Not prompt lines: no field but `id` is read or checked, since the callable alone knows what
its input holds. The id is the line's `id` (a non-empty string or an integer), else its line
number, as for `llmgather run`. A line that is not a JSON object is an item with an error.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import orjson

from llmgather._types import Request
from llmgather.jobs.inputs.fields import json_type, optional_id_field, recover_id
from llmgather.jobs.inputs.item import InputItem, LineError, item_digest
from llmgather.jobs.inputs.lines import decode, raw_lines

__all__ = ["read_objects"]

# What makes an item's request: the callable's `CallRequest` for the id and the object.
ToRequest = Callable[[str, dict[str, Any]], Request]


def read_objects(
    path: str,
    to_request: ToRequest,
    *,
    max_line_bytes: int,
    display_name: str | None = None,
) -> Generator[InputItem, None, None]:
    """One InputItem per line of `path`, in line order; `display_name` is what messages call
    the file (standard input spooled to a file is still "<stdin>")."""
    shown = display_name or path
    source = "<stdin>" if shown == "-" else shown
    with open(path, "rb") as stream:
        for raw in raw_lines(stream, max_line_bytes, source):
            digest = item_digest(raw.data) if raw.data is not None else None
            try:
                text = decode(raw, source, max_line_bytes)
                yield _item(text, f"{source}:{raw.number}", raw.number, to_request, digest)
            except LineError as e:
                id = e.id or str(raw.number)
                yield InputItem(raw.number, id, None, e.message, e.output_fields, digest)


def _item(
    text: str, where: str, line: int, to_request: ToRequest, digest: bytes | None
) -> InputItem:
    if not text.strip():
        raise LineError(f"{where}: empty line; expected one JSON object per line")
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        reason = e.msg.split(": line ")[0]
        recovered = recover_id(text)
        raise LineError(
            f"{where}: malformed JSON at column {e.pos + 1}: {reason}; "
            "expected one JSON object per line",
            recovered[1] if recovered is not None and recovered[0] == "id" else None,
        ) from None
    if not isinstance(obj, dict):
        raise LineError(f"{where}: expected a JSON object, got {json_type(obj)}")
    id = optional_id_field(obj, "id", where) or str(line)
    # Ids are strings inside llmgather; an integer id goes back out as the integer it was.
    as_given = {"id": obj["id"]} if isinstance(obj.get("id"), int) else None
    try:
        request = to_request(id, obj)
    except Exception as e:  # the user's cost(): this line fails, not the job
        raise LineError(
            f"{where}: its cost could not be estimated ({type(e).__name__}: {e})", id
        ) from None
    return InputItem(line, id, request, None, as_given, digest)
