"""Request bodies read as raw bytes and parsed once with orjson: the relay path sends the
bytes on unchanged, and no validation model stands between the client and the upstream."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from starlette.types import Message

# The providers' own bodies stop at tens of megabytes (Anthropic's at 32 MB): one larger is a
# mistake, and the whole body is held in memory.
MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_JSON_DEPTH = 1024  # orjson's: it parses no deeper


class BodyTooLarge(Exception):
    """A request body over MAX_BODY_BYTES: a 413."""


class NotAnObject(Exception):
    """A request body that is not one JSON object (empty, malformed, nested too deeply, or
    another JSON value): a 400 that says which, and where."""


async def read_json(request: Request) -> tuple[bytes, dict[str, Any]]:
    """The body's bytes, and its JSON object; NotAnObject when it is not one; BodyTooLarge past
    MAX_BODY_BYTES, found out before it is all read where the client says its length."""
    _check_declared(request, MAX_BODY_BYTES)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLarge(_too_large(MAX_BODY_BYTES))
        chunks.append(chunk)
    body = b"".join(chunks)
    return body, json_object(body)


def json_object(body: bytes) -> dict[str, Any]:
    """The JSON object `body` holds, or NotAnObject saying what is wrong with it."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise NotAnObject(_why_not_json(body, error)) from None
    if not isinstance(data, dict):
        raise NotAnObject(f"the body must be a JSON object, not {_json_kind(data)}")
    return data


def _why_not_json(body: bytes, error: orjson.JSONDecodeError) -> str:
    if not body.strip():
        return "the body is empty; it must be a JSON object"
    where = f"line {error.lineno}, column {error.colno}"
    if error.msg.startswith("depth limit exceeded"):
        # orjson's own limit: past it, nothing is parsed at all.
        return (
            f"the body's JSON is nested too deeply (arrays and objects more than "
            f"{MAX_JSON_DEPTH} levels deep, at {where})"
        )
    if "UTF-8" in error.msg:
        return f"the body is not UTF-8 text (at {where}); send JSON encoded as UTF-8"
    return f"the body is not valid JSON: {error.msg} at {where}"


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true or false"
    if value is None:
        return "null"
    return "a number"


def capped(request: Request, max_bytes: int) -> Request:
    """The request, whose body (however it is read: streamed, or parsed as a form) raises
    BodyTooLarge as soon as more than `max_bytes` of it has arrived, or at once where its
    Content-Length says it will."""
    _check_declared(request, max_bytes)
    receive, size = request.receive, 0

    async def counted() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > max_bytes:
                raise BodyTooLarge(_too_large(max_bytes))
        return message

    return Request(request.scope, counted)


def _check_declared(request: Request, max_bytes: int) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge(_too_large(max_bytes))


def _too_large(max_bytes: int) -> str:
    return f"the request body is larger than {max_bytes / (1024 * 1024):g} MB"


class JSONBody:
    @staticmethod
    def openapi(description: str) -> dict[str, Any]:
        """An OpenAPI requestBody for a route that reads its JSON itself."""
        return {
            "requestBody": {
                "required": True,
                "description": description,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        }
