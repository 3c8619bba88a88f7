"""Bounded line reading: a binary stream as numbered lines of at most `max_line_bytes`, as UTF-8.

An overlong line is skipped to its newline, never held whole, so memory does not depend on the
length of the longest line.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from llmgather.jobs.inputs.item import LineError

__all__ = ["RawLine", "decode", "raw_lines"]

_BOM = codecs.BOM_UTF8


@dataclass(slots=True)
class RawLine:
    number: int
    offset: int  # byte offset of the line's start in the file
    data: bytes | None  # None when the line is longer than the limit
    size: int  # the line's length in bytes, without its line ending


def raw_lines(stream: IO[bytes], max_line_bytes: int) -> Iterator[RawLine]:
    """Lines without their ending; an overlong line is skipped to its newline, never held whole."""
    number, offset = 0, 0
    chunk = max(max_line_bytes + 2, 65_536)
    while True:
        raw = stream.readline(max_line_bytes + 2)
        if not raw:
            return
        number += 1
        start, size = offset, len(raw)
        if not raw.endswith(b"\n") and len(raw) == max_line_bytes + 2:
            while more := stream.readline(chunk):  # drop the rest of the line, chunk by chunk
                size += len(more)
                if more.endswith(b"\n"):
                    break
            offset += size
            yield RawLine(number, start, None, size - more.endswith(b"\n"))
            continue
        offset += size
        data = raw.removesuffix(b"\n").removesuffix(b"\r")
        if number == 1 and data.startswith(_BOM):
            data, start = data[len(_BOM) :], start + len(_BOM)
        yield RawLine(number, start, data if len(data) <= max_line_bytes else None, len(data))


def decode(raw: RawLine, source: str, max_line_bytes: int) -> str:
    """The line as text; LineError when it was too long or is not valid UTF-8."""
    if raw.data is None:
        raise LineError(
            f"{source}:{raw.number}: line is {raw.size:,} bytes, longer than the limit of "
            f"{max_line_bytes:,} bytes (raise it with --max-line-bytes); the line was skipped"
        )
    try:
        return raw.data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LineError(
            f"{source}:{raw.number}: invalid UTF-8 at byte offset {e.start} in the line "
            f"(offset {raw.offset + e.start} in the file): {raw.data[e.start : e.start + 4]!r}; "
            "the input must be encoded as UTF-8"
        ) from None
