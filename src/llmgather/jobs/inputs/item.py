"""What one input line becomes: an InputItem, and LineError, why a line cannot be a request.

The format readers raise LineError for a bad line and turn it into an InputItem with
`request=None`, so one bad line never stops the others. Each item carries the `digest` of
its own bytes in the file, so a job can tell a line read again from the line it ingested.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from llmgather._types import Request

__all__ = ["InputItem", "LineError", "item_digest"]

DIGEST_BYTES = 16  # a collision between a line and its edit is then beyond any file's size


def item_digest(content: bytes) -> bytes:
    """What identifies an item's content from one read of its file to the next."""
    return hashlib.blake2b(content, digest_size=DIGEST_BYTES).digest()


@dataclass(frozen=True, slots=True)
class InputItem:
    """One input line: a request to send, or the reason it cannot be sent.

    `digest`: `item_digest` of what the line holds (a CSV record's fields), or None when the
    reader kept none (a line over the length limit is never held whole).
    """

    line: int
    id: str
    request: Request | None
    error: str | None
    output_fields: dict[str, Any] | None = None
    digest: bytes | None = None


class LineError(Exception):
    """A problem with one line; `id` is the line's own id when it could be recovered, and
    `output_fields` what its output line must still carry (a Batch API line's `custom_id`)."""

    def __init__(
        self, message: str, id: str | None = None, output_fields: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.id = id
        self.output_fields = output_fields
