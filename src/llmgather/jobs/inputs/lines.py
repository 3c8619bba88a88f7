"""Bounded line reading: a binary stream as numbered lines of at most `max_line_bytes`, as UTF-8.

An overlong line is skipped to its newline, never held whole, so memory does not depend on the
length of the longest line. A UTF-8 byte order mark is dropped; a file in UTF-16 or UTF-32 is
refused whole, once, with how to convert it, rather than as a million lines of bad UTF-8.
"""

from __future__ import annotations

import codecs
import os
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from llmgather._errors import InvalidInputError
from llmgather.jobs.inputs.item import LineError

__all__ = ["RawLine", "decode", "raw_lines"]

_BOM = codecs.BOM_UTF8
# UTF-32's marks first: UTF-32LE's begins with UTF-16LE's.
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
_SNIFF_BYTES = 64


@dataclass(slots=True)
class RawLine:
    number: int
    offset: int  # byte offset of the line's start in the file
    data: bytes | None  # None when the line is longer than the limit
    size: int  # the line's length in bytes, without its line ending


def raw_lines(stream: IO[bytes], max_line_bytes: int, source: str) -> Iterator[RawLine]:
    """Lines without their ending; an overlong line is skipped to its newline, never held whole.

    InvalidInputError, before any line, when the file is UTF-16 or UTF-32 (`source` names it).
    """
    number, offset = 0, 0
    chunk = max(max_line_bytes + 2, 65_536)
    while True:
        raw = stream.readline(max_line_bytes + 2)
        if not raw:
            return
        number += 1
        if number == 1:
            _refuse_wide_encoding(raw, source)
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


def _refuse_wide_encoding(first: bytes, source: str) -> None:
    """InvalidInputError when the file's first line says it is UTF-16 or UTF-32: by its byte
    order mark, or by a NUL beside every ASCII character (no UTF-8 text has those)."""
    encoding = next((name for bom, name in _WIDE_BOMS if first.startswith(bom)), None)
    head = first[:_SNIFF_BYTES].removesuffix(b"\n")
    if encoding is None and len(head) >= 2 and b"\x00" in head:
        # Without a mark, iconv must be told the byte order.
        if not any(head[1::2]):
            encoding = "UTF-16LE"
        elif not any(head[0::2]):
            encoding = "UTF-16BE"
    if encoding is None:
        return
    stem, ext = os.path.splitext(source)
    if ext:  # a file's name: the command to convert it, ready to copy
        what = "this file"
        converted = shlex.quote(f"{stem}-utf8{ext}")
        how = f"e.g. iconv -f {encoding} -t UTF-8 {shlex.quote(source)} > {converted}"
    else:  # standard input, a request's body
        what, how = "this input", f"e.g. pipe it through iconv -f {encoding} -t UTF-8"
    raise InvalidInputError(
        f"{source}: {what} is {encoding}; convert it to UTF-8 ({how}), the encoding llmgather reads"
    )


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
