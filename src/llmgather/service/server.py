"""uvicorn's server, telling the app the moment a shutdown begins."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn


class ServiceServer(uvicorn.Server):
    """On SIGINT or SIGTERM, at once (before uvicorn drains the open connections, which may
    take its whole graceful timeout): the jobs stop sending, /readyz says "not ready", the
    dashboards' event streams end."""

    def __init__(self, config: uvicorn.Config, state: Any) -> None:
        super().__init__(config)
        self._state = state
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: Any) -> None:
        self._state.stopping = True
        jobs = getattr(self._state, "jobs", None)
        if jobs is not None and self._loop is not None:
            # A signal handler may run between any two bytecodes of the loop's own work.
            self._loop.call_soon_threadsafe(jobs.stop_sending)
        super().handle_exit(sig, frame)
