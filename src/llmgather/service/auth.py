"""Bearer-token auth for every route but the health checks, as pure ASGI (no per-request
middleware machinery). The token is compared in constant time and never logged.

The service binds 127.0.0.1 by default; another address requires a token (see `cli/serve`).
Clients send it as the SDKs send their keys: `Authorization: Bearer T`, `x-api-key: T`
(Anthropic's SDK) or `x-goog-api-key: T` (Gemini's).
"""

from __future__ import annotations

import hmac
from typing import Any

import orjson

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
_KEY_HEADERS = (b"x-api-key", b"x-goog-api-key")


class BearerAuth:
    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        body = orjson.dumps(
            {
                "error": {
                    "message": "a valid bearer token is required",
                    "type": "authentication_error",
                }
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _allowed(self, scope: Any) -> bool:
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                given = value[7:].strip()
                break
            if name in _KEY_HEADERS:
                given = value.strip()
        return hmac.compare_digest(given, self._token)
