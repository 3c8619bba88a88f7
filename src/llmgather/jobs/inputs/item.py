"""What one input line becomes: an InputItem, and LineError, why a line cannot be a request.

The format readers raise LineError for a bad line and turn it into an InputItem with
`request=None`, so one bad line never stops the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmgather._types import Request

__all__ = ["InputItem", "LineError"]


@dataclass(frozen=True, slots=True)
class InputItem:
    """One input line: a request to send, or the reason it cannot be sent."""

    line: int
    id: str
    request: Request | None
    error: str | None
    output_fields: dict[str, Any] | None = None


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
