"""An aiohttp handler served on a free 127.0.0.1 port for the duration of a block: the one way
the tests stand up a small HTTP server of their own (an upstream that records, echoes or
misbehaves)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def serving_handler(
    handler: Handler, *, method: str = "*", path: str = "/{tail:.*}", access_log: bool = True
) -> AsyncIterator[str]:
    """`handler` answering `method` requests to `path` (by default: every request); yields the
    base URL, `http://127.0.0.1:PORT` without a trailing slash. `access_log=False` keeps
    aiohttp's lines out of a test that reads the log."""
    app = web.Application()
    app.router.add_route(method, path, handler)
    runner = web.AppRunner(app, **({} if access_log else {"access_log": None}))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
