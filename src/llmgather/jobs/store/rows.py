"""Rows of the job store: an input item or a result as an `items` row."""

from __future__ import annotations

import re
import time
from typing import Any

import orjson

from llmgather._errors import BudgetExhaustedError
from llmgather._types import COST_QUANTUM, ErrorInfo, Result
from llmgather.jobs.encoding import encode_result
from llmgather.jobs.inputs import InputItem

__all__ = ["INVALID_INPUT", "UNSENT_FOR_COST", "item_row", "result_row"]

INVALID_INPUT = "invalid_input"  # the error type of an input line that cannot be sent
# The error type of an item a spent cost cap left unsent: neither failed nor done, a rerun
# with a higher cap sends it.
UNSENT_FOR_COST = BudgetExhaustedError.line_type
_ERROR_PREFIX_CHARS = 80
_LOCATION = re.compile(r"^.+?:\d+: ")


def item_row(item: InputItem) -> tuple[Any, ...]:
    """The values of an `items` row for a newly ingested input item, in insert column order:
    the digest is what is sent for it (`InputItem.content_digest`), the metadata its
    request's, which its result carries (kept apart, so a rerun can give a kept result the
    metadata the input has now)."""
    fields = orjson.dumps(item.output_fields) if item.output_fields else None
    digest = item.content_digest
    if item.request is not None:
        metadata = item.request.metadata
        shown = None if metadata is None else orjson.dumps(metadata)
        return (item.line, item.id, "pending", fields, None, None, None, None, None, digest, shown)
    message = item.error or "invalid input line"
    result = Result(
        id=item.id, status="error", error=ErrorInfo(type=INVALID_INPUT, message=message)
    )
    key = _LOCATION.sub("", message, count=1)[:_ERROR_PREFIX_CHARS]
    # A bad line without an id of its own is never sent: its line number, the id its output
    # line shows, must not collide with another line's real id and refuse the whole file.
    id = None if item.id == str(item.line) else item.id
    return (
        item.line,
        id,
        "error",
        fields,
        orjson.dumps(result.to_dict()),
        INVALID_INPUT,
        key,
        message,
        time.time(),
        digest,
        None,
    )


def result_row(
    id: str, result: Result, now: float, encoded: bytes | None = None
) -> tuple[Any, ...]:
    """The values that record a finished result, in update order, the id last.

    `encoded`: the result's `encode_result`, when the caller made it already (for its output
    line): what the output line shows, so the export can copy it.
    """
    usage = result.usage
    error = result.error
    status = "ok" if result.status == "ok" else "error"
    if status == "error" and error is None:
        error = ErrorInfo(type="Error", message="failed without an error description")
    return (
        status,
        encoded if encoded is not None else encode_result(id, result),
        result.attempts,
        usage.input_tokens if usage else 0,
        usage.output_tokens if usage else 0,
        error.type if error else None,
        error.message[:_ERROR_PREFIX_CHARS] if error else None,
        error.message if error else None,
        now,
        cost_nanos(result) if status == "ok" else None,
        id,
    )


def cost_nanos(result: Result) -> int | None:
    """The result's cost in whole nano-dollars, as its line shows it (`_types.cost_number`)."""
    if result.cost is None:
        return None
    return int(result.cost.quantize(COST_QUANTUM).scaleb(9))
