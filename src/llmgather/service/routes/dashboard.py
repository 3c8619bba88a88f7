"""`GET /`: the dashboard page, and `GET /dashboard/events`: the server-sent events that feed
it, a snapshot at once and then every second (see `service.dashboard`).

An event stream ends by itself after `STREAM_S` and the browser's EventSource reconnects at
once: uvicorn waits for open responses before it shuts down, and tells them nothing, so an
endless stream would hold a stopping service for as long as a page stays open.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response, StreamingResponse

from llmgather.service.dashboard.feed import DashboardFeed

router = APIRouter(tags=["operations"])

INTERVAL_S = 1.0
STREAM_S = 5.0
RECONNECT_MS = 250


@router.get("/", include_in_schema=False)
async def page() -> Response:
    return HTMLResponse(_page(), headers={"cache-control": "no-store"})


@router.get("/dashboard/events", include_in_schema=False)
async def events(request: Request) -> Response:
    state = request.app.state
    return StreamingResponse(
        _snapshots(state.dashboard, state),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


async def _snapshots(feed: DashboardFeed, state: Any) -> AsyncIterator[bytes]:
    """Snapshots for `STREAM_S` or until the app stops; a client that leaves cancels this
    (Starlette's StreamingResponse watches for the disconnect)."""
    yield f"retry: {RECONNECT_MS}\n\n".encode()
    loop = asyncio.get_running_loop()
    ends = loop.time() + STREAM_S
    while not getattr(state, "stopping", False):
        snapshot = feed.snapshot()
        yield b"data: " + orjson.dumps(snapshot, default=str) + b"\n\n"
        if loop.time() + INTERVAL_S > ends:
            return
        await asyncio.sleep(INTERVAL_S)


@functools.cache
def _page() -> str:
    """index.html with its stylesheet and script inlined: the one page needs no other request
    (which a bearer token in the address could not authorise)."""
    folder = resources.files("llmgather.service.dashboard")
    html = (folder / "index.html").read_text("utf-8")
    css = (folder / "dashboard.css").read_text("utf-8")
    js = (folder / "dashboard.js").read_text("utf-8")
    return html.replace("/* dashboard.css */", css).replace("/* dashboard.js */", js)
