"""Request bodies read as raw bytes and parsed once with orjson: the relay path sends the
bytes on unchanged, and no validation model stands between the client and the upstream."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request

# The providers' own bodies stop at tens of megabytes (Anthropic's at 32 MB): one larger is a
# mistake, and the whole body is held in memory.
MAX_BODY_BYTES = 32 * 1024 * 1024


class BodyTooLarge(Exception):
    """A request body over MAX_BODY_BYTES: a 413."""


async def read_json(request: Request) -> tuple[bytes, dict[str, Any] | None]:
    """The body's bytes, and its JSON object (None when it is not one); BodyTooLarge past
    MAX_BODY_BYTES, found out before it is all read where the client says its length."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BodyTooLarge(_too_large())
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLarge(_too_large())
        chunks.append(chunk)
    body = b"".join(chunks)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body, None
    return body, data if isinstance(data, dict) else None


def _too_large() -> str:
    return f"the request body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB"


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
