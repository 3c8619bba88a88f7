"""Request bodies read as raw bytes and parsed once with orjson: the relay path sends the
bytes on unchanged, and no validation model stands between the client and the upstream."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request


async def read_json(request: Request) -> tuple[bytes, dict[str, Any] | None]:
    """The body's bytes, and its JSON object (None when it is not one)."""
    body = await request.body()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body, None
    return body, data if isinstance(data, dict) else None


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
