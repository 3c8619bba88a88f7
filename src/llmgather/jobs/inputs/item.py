"""What one input line becomes: an InputItem, and LineError, why a line cannot be a request.

The format readers raise LineError for a bad line and turn it into an InputItem with
`request=None`, so one bad line never stops the others. Each item carries the `digest` of
its own bytes in the file; its `content_digest`, of what is sent for it, is how a job tells
an item read again (in this run, or in a rerun on an edited input) from the one it stored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from llmgather._types import Request

__all__ = ["InputItem", "LineError", "item_digest", "request_digest"]

DIGEST_BYTES = 16  # a collision between a line and its edit is then beyond any file's size


def item_digest(content: bytes) -> bytes:
    """What identifies an item's content from one read of its file to the next."""
    return hashlib.blake2b(content, digest_size=DIGEST_BYTES).digest()


def request_digest(request: Request) -> bytes:
    """What identifies what is sent for an item: every field of its request that reaches the
    provider, not its id nor its metadata (passed through untouched), nor how the line spelt
    it (key order, spacing, a CSV's quoting)."""
    sent = (
        request.messages,
        request.model,
        request.max_tokens,
        request.temperature,
        request.extra,
        request.tools,
        request.tool_choice,
        request.json_schema,
    )
    return item_digest(orjson.dumps(sent, option=orjson.OPT_SORT_KEYS))


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

    @property
    def content_digest(self) -> bytes | None:
        """What a job knows this item by from one run to the next, beside its id: the digest
        of what is sent for it (`request_digest`), or of its line when it cannot be sent or
        is not a prompt (a call job's object is passed whole, so its line is what is sent)."""
        if self.request is None or type(self.request) is not Request:
            return self.digest
        return request_digest(self.request)


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
