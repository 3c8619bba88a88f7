"""Helpers every adapter shares: retry hints from headers, JSON bodies, safe error messages."""

from __future__ import annotations

import email.utils
import math
import time
from typing import Any

import orjson

from llmgather._errors import APIError, MalformedResponseError, error_for_status
from llmgather.providers.base import Headers

MAX_MESSAGE_CHARS = 500


def retry_after_from_headers(headers: Headers, *, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` as seconds or an HTTP date."""
    millis = _seconds(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _seconds(value: str | None) -> float | None:
    """A non-negative finite number, or None: `inf` or `nan` from a server must not stall a job."""
    number = _number(value)
    return max(0.0, number) if number is not None and math.isfinite(number) else None


def _number(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def announced_limits(
    headers: Headers, requests_header: str, tokens_header: str
) -> tuple[float | None, float | None]:
    """(requests, tokens) per minute as a server announces them on its answers, if it does."""
    return _positive(headers.get(requests_header)), _positive(headers.get(tokens_header))


def _positive(value: str | None) -> float | None:
    number = _number(value)
    return number if number is not None and number > 0 else None


def with_extra(payload: dict[str, Any], extra: dict[str, Any] | None) -> dict[str, Any]:
    """The body with the caller's extra fields added; where both set an object, the two merge.

    The adapter's own fields win a conflict: they are what the Request says explicitly.
    """
    if not extra:
        return payload
    merged = dict(extra)
    for key, value in payload.items():
        theirs = merged.get(key)
        if isinstance(value, dict) and isinstance(theirs, dict):
            merged[key] = {**theirs, **value}
        else:
            merged[key] = value
    return merged


def load_json(body: bytes, what: str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedResponseError(f"{what} is not valid JSON: {exc}") from None


def error_body(body: bytes) -> Any:
    """The parsed error body, or None if it is not JSON (a proxy's HTML page, say)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def redact(text: str, secret: str | None) -> str:
    """Cut a message to size and remove the API key if a server echoed it back."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, "[redacted]")
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[:MAX_MESSAGE_CHARS] + "…"
    return text


def status_error(
    status: int,
    message: str,
    *,
    retry_after: float | None,
    cls: type[APIError] | None = None,
) -> APIError:
    return (cls or error_for_status(status))(message, status_code=status, retry_after=retry_after)


def fallback_message(status: int, body: bytes) -> str:
    snippet = body[:200].decode("utf-8", errors="replace").strip()
    return f"unexpected answer: {snippet}" if snippet else "no error message in the body"
