"""An upstream that tells: it quotes every request's key, URL and headers back, as a debugging
proxy or a careless server does, in whichever provider's dialect the request's path speaks.

    async with tattling() as tattler:          # tattler.url: http://127.0.0.1:PORT
        tattler.mode = "ok"                     # or "refuse", "page"

- "refuse": a 401 in the dialect's error JSON, whose message quotes everything;
- "page": a 502 HTML page quoting everything (a body that is no error JSON);
- "ok": a 200 answer whose text quotes everything, plain or streamed (the stream written in
  small pieces, so that a quoted secret straddles the chunks the gateway relays).

A request whose prompt holds `tattle:MODE` (`tattle:refuse`…) gets that mode instead.
`tattler.seen` holds every request's quote, to check what reached the upstream.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Literal

import orjson
from aiohttp import web

from tests.loopbackserver import serving_handler

Mode = Literal["ok", "refuse", "page"]
_PIECE_BYTES = 7


class Tattler:
    def __init__(self) -> None:
        self.mode: Mode = "ok"
        self.url = ""
        self.seen: list[str] = []

    async def answer(self, request: web.Request) -> web.StreamResponse:
        body: Any = orjson.loads(await request.read() or b"{}")
        quote = self._quote(request)
        self.seen.append(quote)
        path = request.path
        dialect = (
            "gemini" if "/models/" in path else "anthropic" if "messages" in path else "openai"
        )
        asked = orjson.dumps(body).decode()
        mode = next((m for m in ("refuse", "page", "ok") if f"tattle:{m}" in asked), self.mode)
        if mode == "refuse":
            return web.json_response(_error(dialect, quote), status=401)
        if mode == "page":
            page = f"<html><body><h1>502 Bad Gateway</h1><pre>{quote}</pre></body></html>"
            return web.Response(status=502, text=page, content_type="text/html")
        if body.get("stream") is True or ":streamGenerateContent" in path:
            return await _streamed(request, _events(dialect, quote))
        return web.json_response(_answer(dialect, quote))

    @staticmethod
    def _quote(request: web.Request) -> str:
        headers = request.headers
        key = (
            headers.get("x-api-key")
            or headers.get("x-goog-api-key")
            or headers.get("authorization", "").partition(" ")[2]
        )
        dump = "; ".join(f"{name}: {value}" for name, value in headers.items())
        return f"the key {key} is not valid for {request.method} {request.path_qs} ({dump})"


@contextlib.asynccontextmanager
async def tattling() -> AsyncIterator[Tattler]:
    tattler = Tattler()
    # No access log: the test's own log holds what llmgather logs.
    async with serving_handler(tattler.answer, access_log=False) as url:
        tattler.url = url
        yield tattler


def _error(dialect: str, message: str) -> dict[str, Any]:
    if dialect == "gemini":
        return {"error": {"code": 401, "status": "UNAUTHENTICATED", "message": message}}
    if dialect == "anthropic":
        return {"type": "error", "error": {"type": "authentication_error", "message": message}}
    return {
        "error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}
    }


def _answer(dialect: str, text: str) -> dict[str, Any]:
    if dialect == "gemini":
        return {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}
            ],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 5},
        }
    if dialect == "anthropic":
        return {
            "id": "msg_tattle",
            "type": "message",
            "role": "assistant",
            "model": "claude-tattle",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 5},
        }
    return {
        "id": "chatcmpl-tattle",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-tattle",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
    }


def _events(dialect: str, text: str) -> list[bytes]:
    if dialect == "gemini":
        return [b"data: " + orjson.dumps(_answer("gemini", text)) + b"\r\n\r\n"]
    if dialect == "anthropic":
        message = {**_answer("anthropic", ""), "content": [], "stop_reason": None}
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": message}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": text},
                },
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 5},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        return [
            f"event: {name}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"
            for name, data in events
        ]
    chunk = {
        "id": "chatcmpl-tattle",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "gpt-tattle",
    }
    first = {
        **chunk,
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}
        ],
    }
    last = {
        **chunk,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
    }
    return [
        b"data: " + orjson.dumps(first) + b"\n\n",
        b"data: " + orjson.dumps(last) + b"\n\n",
        b"data: [DONE]\n\n",
    ]


async def _streamed(request: web.Request, events: list[bytes]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    data = b"".join(events)
    for start in range(0, len(data), _PIECE_BYTES):
        await response.write(data[start : start + _PIECE_BYTES])
    await response.write_eof()
    return response
