"""The service started for real in a test: `create_app` on uvicorn, on a free 127.0.0.1 port,
as a task of the test's own event loop.

    async with serving(ServiceSettings(model="openai:gpt-4o-mini", base_url=sim.base_url,
                                       api_key="k")) as base_url:
        client = AsyncOpenAI(base_url=base_url + "/v1", api_key="x", max_retries=0)

`base_url` is `http://127.0.0.1:PORT`, without a trailing slash. The app's lifespan runs (so
the upstream is started, and stopped at the end of the block).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Generator, Mapping

import uvicorn

from llmgather.service.app import create_app
from llmgather.service.settings import ServiceSettings


class _TestServer(uvicorn.Server):
    """uvicorn's server, telling when it listens, and leaving the test runner's signal
    handlers alone (Ctrl+C must still stop pytest)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.listening.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serving(
    settings: ServiceSettings, *, env: Mapping[str, str] | None = None
) -> AsyncIterator[str]:
    """The app for `settings` served on a free loopback port for the duration of the block;
    yields its base URL. `env` is what `create_app` resolves the upstream's key from (default:
    nothing, so no developer's key is ever used)."""
    app = create_app(settings, env={} if env is None else env)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=5,  # an open stream must not hold the test forever
    )
    server = _TestServer(config)
    task = asyncio.create_task(server.serve())
    listening = asyncio.create_task(server.listening.wait())
    try:
        await asyncio.wait((task, listening), return_when=asyncio.FIRST_COMPLETED)
        if not server.listening.is_set():
            raise RuntimeError("the service did not start (see the log above)")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        listening.cancel()
        server.should_exit = True
        await task
