"""An aiohttp handler served on a free 127.0.0.1 port for the duration of a block: the one way
the tests stand up a small HTTP server of their own (an upstream that records, echoes or
misbehaves)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

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


@contextlib.contextmanager
def refusing_ports() -> Iterator[Callable[[], int]]:
    """Ports of 127.0.0.1 that refuse every connection until the block ends: each bound and
    never listening (Linux answers a connection there with a reset). A port found free and let
    go at once could be taken meanwhile by a server another test process starts on port 0,
    and the "refused" connection would reach it."""
    held: list[socket.socket] = []

    def port() -> int:
        sock = socket.socket()
        held.append(sock)
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

    try:
        yield port
    finally:
        for sock in held:
            sock.close()
