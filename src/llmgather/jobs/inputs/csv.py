"""CSV input: one prompt per record, from a named column, with an optional id column.

Records may span lines (quoted newlines); a record is numbered by its first line. A line that
cannot be decoded is blanked for the csv module and its record reported as an error item.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import IO

import orjson

from llmgather._errors import InvalidInputError
from llmgather._types import Request
from llmgather.jobs.inputs.item import InputItem, LineError, item_digest
from llmgather.jobs.inputs.lines import decode, raw_lines

__all__ = ["read_csv"]


def read_csv(
    stream: IO[bytes],
    source: str,
    column: str,
    id_column: str | None,
    system: str | None,
    max_line_bytes: int,
) -> Iterator[InputItem]:
    """One InputItem per CSV record after the header; InvalidInputError if a column is missing.

    An empty file (no header either) holds no items, like an empty file of any other format.
    """
    bad_lines: dict[int, str] = {}  # only lines not yet consumed by a record; pruned as we go
    reader = csv.reader(_csv_text_lines(stream, source, max_line_bytes, bad_lines), strict=True)
    # The csv module's per-field cap is process-wide; raise it to at least our per-line cap.
    csv.field_size_limit(max(csv.field_size_limit(), max_line_bytes))
    header = next((row for row in reader if row), None)  # blank lines before it are no header
    if header is None:
        return
    names = ", ".join(repr(h) for h in header)
    for wanted, flag in ((column, "--column"), (id_column, "--id-column")):
        if wanted is not None and wanted not in header:
            raise InvalidInputError(
                f"{source}: {flag} {wanted!r} is not a column of the CSV header; the columns are: {names}"
            )
    prompt_at = header.index(column)
    id_at = header.index(id_column) if id_column is not None else None
    end = reader.line_num
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            end = reader.line_num
            for n in range(start, end + 1):
                bad_lines.pop(n, None)
            yield InputItem(start, str(start), None, f"{source}:{start}: malformed CSV record: {e}")
            continue
        end = reader.line_num
        yield _csv_item(
            row, start, end, source, bad_lines, prompt_at, id_at, column, id_column, system
        )


def _csv_item(
    row: list[str], start: int, end: int, source: str, bad_lines: dict[int, str],
    prompt_at: int, id_at: int | None, column: str, id_column: str | None, system: str | None,
) -> InputItem:  # fmt: skip
    id = row[id_at] if id_at is not None and id_at < len(row) and row[id_at] else str(start)
    problems = [bad_lines.pop(n) for n in range(start, end + 1) if n in bad_lines]
    digest = item_digest(orjson.dumps(row))  # the fields, whatever quoting the file used
    if problems:
        return InputItem(start, id, None, problems[0], digest=digest)
    where = f"{source}:{start}"
    if not row:
        return InputItem(
            start,
            id,
            None,
            f'{where}: empty line; expected a CSV record with a "{column}" column',
            digest=digest,
        )
    if id_at is not None and not (id_at < len(row) and row[id_at]):
        return InputItem(
            start,
            id,
            None,
            f'{where}: column "{id_column}" (the id) is empty; expected a non-empty id',
            digest=digest,
        )
    if prompt_at >= len(row):
        return InputItem(
            start,
            id,
            None,
            f'{where}: record has {len(row)} fields, so no column "{column}"; expected the header\'s columns',
            digest=digest,
        )
    prompt = row[prompt_at]
    if not prompt.strip():
        return InputItem(
            start,
            id,
            None,
            f'{where}: column "{column}" is empty; expected the prompt text',
            digest=digest,
        )
    request = Request.from_prompt(prompt, system=system, id=id)
    return InputItem(start, id, request, None, digest=digest)


def _csv_text_lines(
    stream: IO[bytes], source: str, max_line_bytes: int, bad_lines: dict[int, str]
) -> Iterator[str]:
    """Decoded lines for the csv module; a line that cannot be decoded is noted and blanked."""
    for raw in raw_lines(stream, max_line_bytes, source):
        try:
            text = decode(raw, source, max_line_bytes)
        except LineError as e:
            bad_lines[raw.number] = e.message
            # Keep the line's shape (quotes, the id) so the record around it is still found.
            text = "" if raw.data is None else raw.data.decode("utf-8", "replace")
        yield text + "\n"
