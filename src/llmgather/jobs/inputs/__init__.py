"""Input readers: turn JSONL, OpenAI Batch, CSV and text files into a stream of InputItems.

Every line becomes exactly one InputItem. A line that cannot become a request is not an
exception: it is an item with `request=None` and an `error` that names the file, the line, the
field, what was found and what is expected, so one bad line never stops the other million.
Files are read in binary, one bounded line at a time, so memory does not depend on file size
or on the length of the longest line.

This module picks the format and opens the file; the readers live beside it: `lines`
(bounded lines, UTF-8), `jsonl` (plain and Batch API lines, with the validators of
`fields`), `csv` and `txt`. `InputItem` is defined in `item`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import IO

from llmgather._errors import InvalidInputError
from llmgather.jobs.inputs.csv import read_csv
from llmgather.jobs.inputs.item import InputItem
from llmgather.jobs.inputs.jsonl import read_jsonl
from llmgather.jobs.inputs.txt import read_txt

__all__ = ["FORMATS", "InputItem", "detect_format", "read_inputs"]

FORMATS = ("jsonl", "csv", "txt")
_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".txt": "txt",
}


def detect_format(path: str, fmt: str | None = None) -> str:
    """The input format: `fmt` if given, else from the extension; standard input is JSONL."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise InvalidInputError(
                f"unknown input format {fmt!r}; expected one of {', '.join(FORMATS)}"
            )
        return fmt
    if path == "-":
        return "jsonl"
    ext = os.path.splitext(path)[1].lower()
    try:
        return _EXTENSIONS[ext]
    except KeyError:
        known = ", ".join(sorted(_EXTENSIONS))
        raise InvalidInputError(
            f"cannot tell the format of {path!r} from its extension {ext or '(none)'!r}; "
            f"use one of {known} or pass --format {{{','.join(FORMATS)}}}"
        ) from None


def read_inputs(
    path: str,
    *,
    fmt: str | None = None,
    column: str | None = None,
    id_column: str | None = None,
    system: str | None = None,
    max_line_bytes: int = 1_048_576,
    display_name: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> Generator[InputItem, None, None]:
    """Yield one InputItem per input line (per CSV record; per non-blank line of a .txt file).

    `display_name` is what messages call the file (standard input spooled to a temporary file
    is still "<stdin>" to the user). Items come in ascending `line` order. Errors about the
    whole file (it cannot be opened, a CSV without the column) raise InvalidInputError or
    OSError on the first `next()`. An empty file yields nothing. `warn` hears about what is
    ignored but not invalid (an unknown JSONL field), once per kind.
    """
    fmt = detect_format(display_name or path, fmt)
    source = "<stdin>" if (display_name or path) == "-" else (display_name or path)
    with _open_binary(path) as stream:
        if fmt == "jsonl":
            yield from read_jsonl(stream, source, system, max_line_bytes, warn)
        elif fmt == "txt":
            yield from read_txt(stream, source, system, max_line_bytes)
        else:
            if not column:
                raise InvalidInputError(
                    f"{source}: CSV input needs --column NAME to say which column holds the prompt"
                )
            yield from read_csv(stream, source, column, id_column, system, max_line_bytes)


@contextmanager
def _open_binary(path: str) -> Iterator[IO[bytes]]:
    if path == "-":
        yield sys.stdin.buffer
        return
    with open(path, "rb") as f:
        yield f
