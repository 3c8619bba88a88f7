"""The output file: one line per input id, rewritten atomically from the store, one renderer.

Every line of the output, whether appended live as results arrive or rebuilt from the job store
at a run's start and end, is `render_line` of the result's JSON object (under the input's id)
with the input's own output fields set over it: a Batch API line's `custom_id`, an integer id
as the input gave it. The store only records and reads; this module writes the user's file.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from llmgather._types import Result

if TYPE_CHECKING:
    from llmgather.jobs.store import JobStore

__all__ = [
    "append_lines",
    "encode_result",
    "render_line",
    "render_result",
    "render_stored",
    "result_object",
    "rewrite_output",
]


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


def append_lines(output_path: str, lines: Sequence[bytes]) -> None:
    """Append rendered lines to the output: the live view for `tail -f`, never the truth."""
    with open(output_path, "ab") as out:
        out.write(b"".join(lines))


def rewrite_output(store: JobStore, output_path: str) -> int:
    """Atomically rewrite `output_path` with every finished item of `store`, in input order.

    A temporary file beside it, fsynced, then renamed over it: a reader or a crash sees the old
    file or the new one, never half of one. Returns the number of lines written.
    """
    directory = os.path.dirname(os.path.abspath(output_path))
    tmp = os.path.join(
        directory, f".{os.path.basename(output_path)}.{os.getpid()}.{threading.get_ident()}.tmp"
    )
    written = 0
    try:
        # umask decides the mode, as for any file the user creates
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        with (
            os.fdopen(fd, "wb", buffering=1 << 20) as out,
            contextlib.closing(store.finished_rows()) as rows,
        ):
            for fields, result in rows:
                out.write(render_stored(result, fields))
                written += 1
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, output_path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return written
