"""Bearer-token auth for every route but the health checks, as pure ASGI (no per-request
middleware machinery). The token is compared in constant time and never logged.

The service binds 127.0.0.1 by default; another address requires a token (see `cli/serve`).
Clients send it as the SDKs send their keys: `Authorization: Bearer T`, `x-api-key: T`
(Anthropic's SDK) or `x-goog-api-key: T` (Gemini's). The dashboard's page and its event
stream also take it as `?token=T`, since a browser cannot add a header to either.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import parse_qs

import orjson

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
_KEY_HEADERS = (b"x-api-key", b"x-goog-api-key")
QUERY_TOKEN_PATHS = frozenset({"/", "/dashboard/events"})


class BearerAuth:
    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.state = app.state  # the FastAPI app's, as for the unwrapped app
        self._token = token.encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan" or scope["path"] in OPEN_PATHS or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # a websocket: closed as a policy violation
            await send({"type": "websocket.close", "code": 1008})
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
        if not given and scope["path"] in QUERY_TOKEN_PATHS:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = query.get("token", [""])[0].encode()
        return hmac.compare_digest(given, self._token)
