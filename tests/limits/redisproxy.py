"""A TCP relay between a client and a real redis-server on 127.0.0.1 that can hold Redis's
replies back, or lose one: what a slow network or a timeout does to a call, made on purpose.

    async with RedisRelay(redis_url) as relay:
        limiter = RedisLimiter(relay.url, ...)
        relay.hold()                  # replies wait in the relay ...
        relay.let_go()                # ... until now
        relay.lose_reply_to(b"…")     # the next call that sends these bytes runs in Redis, and
                                      # its client sees the connection drop instead of the reply
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit


class RedisRelay:
    def __init__(self, redis_url: str) -> None:
        parts = urlsplit(redis_url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._path = parts.path
        self._server: asyncio.Server | None = None
        self._open = asyncio.Event()
        self._open.set()
        self._lose: bytes | None = None
        self.lost = 0  # replies lost on purpose
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}{self._path}"

    def hold(self) -> None:
        self._open.clear()

    def let_go(self) -> None:
        self._open.set()

    def lose_reply_to(self, marker: bytes) -> None:
        self._lose = marker

    async def __aenter__(self) -> RedisRelay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._writers.update((writer, up_writer))
        watching = asyncio.Event()  # set: the reply coming is the one to lose
        pumps = [
            asyncio.ensure_future(self._requests(reader, up_writer, watching)),
            asyncio.ensure_future(self._replies(up_reader, writer, watching)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for each in (writer, up_writer):
                each.close()
                with contextlib.suppress(Exception):
                    await each.wait_closed()
            self._writers.difference_update((writer, up_writer))
            self._tasks.difference_update(pumps)

    async def _requests(
        self, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter, watching: asyncio.Event
    ) -> None:
        while data := await reader.read(65536):
            if self._lose is not None and self._lose in data:
                watching.set()
            upstream.write(data)
            await upstream.drain()

    async def _replies(
        self, upstream: asyncio.StreamReader, writer: asyncio.StreamWriter, watching: asyncio.Event
    ) -> None:
        while data := await upstream.read(65536):
            await self._open.wait()
            if watching.is_set():
                watching.clear()
                if not data.startswith(b"-NOSCRIPT"):  # redis-py loads the script and asks again
                    self._lose = None
                    self.lost += 1
                    return  # the command ran in Redis; its client sees the connection drop
            writer.write(data)
            await writer.drain()
