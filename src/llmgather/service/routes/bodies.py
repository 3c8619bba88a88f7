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


class BodyTooLarge(Exception):
    """A request body over MAX_BODY_BYTES: a 413."""


async def read_json(request: Request) -> tuple[bytes, dict[str, Any] | None]:
    """The body's bytes, and its JSON object (None when it is not one); BodyTooLarge past
    MAX_BODY_BYTES, found out before it is all read where the client says its length."""
    _check_declared(request, MAX_BODY_BYTES)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLarge(_too_large(MAX_BODY_BYTES))
        chunks.append(chunk)
    body = b"".join(chunks)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body, None
    return body, data if isinstance(data, dict) else None


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
