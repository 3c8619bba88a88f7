"""Text input: every non-blank line of the file is one prompt, its id the line number."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from llmgather._types import Request
from llmgather.jobs.inputs.item import InputItem, LineError, item_digest
from llmgather.jobs.inputs.lines import decode, raw_lines

__all__ = ["read_txt"]


def read_txt(
    stream: IO[bytes], source: str, system: str | None, max_line_bytes: int
) -> Iterator[InputItem]:
    """One InputItem per non-blank line; blank lines are skipped, a bad one is an error item."""
    for raw in raw_lines(stream, max_line_bytes, source):
        id = str(raw.number)
        digest = item_digest(raw.data) if raw.data is not None else None
        try:
            text = decode(raw, source, max_line_bytes)
        except LineError as e:
            yield InputItem(raw.number, id, None, e.message, digest=digest)
            continue
        if text.strip():
            request = Request.from_prompt(text, system=system, id=id)
            yield InputItem(raw.number, id, request, None, digest=digest)
