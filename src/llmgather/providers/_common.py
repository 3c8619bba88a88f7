"""Helpers every adapter shares: retry hints from headers, JSON bodies, safe error messages,
announced limits, and the URL an adapter builds from its base URL."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import orjson

from llmgather._errors import APIError, MalformedResponseError, error_for_status
from llmgather._redact import Redactor, basic_credentials, url_secrets
from llmgather._types import remaining_key
from llmgather.providers.base import Headers

MAX_MESSAGE_CHARS = 500
# A body that is not the provider's error JSON (a proxy's HTML page) is quoted this far.
SNIPPET_CHARS = 200


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


def announced_limits(headers: Headers, names: Mapping[str, str]) -> dict[str, float]:
    """The limits a server announces on its answers, by budget name ("rpm", "tpm", …), and
    what remains of each (under `remaining_key`): `names` maps each budget to the header that
    announces its limit, whose "limit" the remaining header spells "remaining" (as OpenAI's
    and Anthropic's do). Only positive limits count (Azure sends -1 for "none")."""
    limits: dict[str, float] = {}
    for budget, header in names.items():
        value = _positive(headers.get(header))
        if value is not None:
            limits[budget] = value
            left = _number(headers.get(_remaining_header(header)))
            if left is not None and 0 <= left <= value:
                limits[remaining_key(budget)] = left
    return limits


def _remaining_header(limit_header: str) -> str:
    """x-ratelimit-limit-requests → x-ratelimit-remaining-requests (OpenAI's spelling),
    anthropic-ratelimit-requests-limit → anthropic-ratelimit-requests-remaining."""
    if limit_header.endswith("-limit"):
        return limit_header.removesuffix("-limit") + "-remaining"
    return limit_header.replace("-limit-", "-remaining-")


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


def word(value: Any) -> str | None:
    """A field a server should send as a string (a finish reason), as one, or None."""
    return None if value is None else str(value)


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


def safe_message(text: str, redactor: Redactor) -> str:
    """The message without any secret a server echoed back, then cut to size.

    Redaction comes first: cut first, a secret straddling the cut would survive in part.
    """
    return _cut(redactor.text(text), MAX_MESSAGE_CHARS)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def status_error(
    status: int,
    message: str,
    *,
    retry_after: float | None,
    cls: type[APIError] | None = None,
) -> APIError:
    return (cls or error_for_status(status))(message, status_code=status, retry_after=retry_after)


def fallback_message(status: int, body: bytes, redactor: Redactor) -> str:
    """The message for a body that is not the provider's error JSON: its start, quoted with
    every secret removed from the whole body before it is cut (a proxy may echo the request's
    headers, key included, at any offset)."""
    text = redactor.text(body.decode("utf-8", errors="replace")).strip()
    if not text:
        return f"HTTP {status} with no error message in the body"
    return f"unexpected answer: {_cut(text, SNIPPET_CHARS)}"


class BaseURL:
    """A base URL taken apart, so that an adapter puts its path in the path and keeps the
    base's query a query (`?api-version=…` before `/chat/completions` would be a new path).

    A `user:password@` in the URL is not left for the HTTP library (aiohttp refuses a URL with
    credentials beside an Authorization header, per request): it becomes `basic_auth`, an
    `Authorization: Basic …` value an adapter sends where no key already takes that header.
    The registry refuses credentials in the URL for a provider whose key goes in Authorization
    (OpenAI's `Bearer`), before anything is sent. `secrets` are the URL's credentials (the
    `Basic` value too) and query values, which messages must not echo (see `_redact`).
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.hostname = parts.hostname
        self._scheme = parts.scheme
        userinfo, at, host = parts.netloc.rpartition("@")
        self._netloc = host
        self._path = parts.path.rstrip("/")
        self._query = parts.query
        self.basic_auth: str | None = None
        if at:
            user, _, password = userinfo.partition(":")
            self.basic_auth = basic_credentials(unquote(user), unquote(password))
        self.secrets = url_secrets(url)

    def join(self, path: str, query: str = "") -> str:
        """The URL with `path` after the base's path and `query` after the base's query."""
        full_query = "&".join(q for q in (self._query, query) if q)
        return urlunsplit((self._scheme, self._netloc, self._path + path, full_query, ""))
