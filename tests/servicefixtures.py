"""The service started for real in a test: `create_app` on uvicorn, on a free 127.0.0.1 port,
as a task of the test's own event loop.

    async with serving(ServiceSettings(model="openai:gpt-4o-mini", base_url=sim.base_url,
                                       api_key="k")) as base_url:
        client = AsyncOpenAI(base_url=base_url + "/v1", api_key="x", max_retries=0)

`base_url` is `http://127.0.0.1:PORT`, without a trailing slash. The app's lifespan runs (so
the upstream is started, and stopped at the end of the block).

`served_by_cli` starts it as users do instead: `llmgather serve` as a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Generator, Mapping
from pathlib import Path

import uvicorn

from llmgather.service.app import create_app
from llmgather.service.settings import ServiceSettings
from tests.clihelpers import cli_env

WAIT_S = 30.0  # a bound on the subprocess's start and stop, never an assertion on time


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


class Served:
    """A `llmgather serve` subprocess: its URL, and everything it wrote to stderr."""

    def __init__(self, process: asyncio.subprocess.Process, url: str, banner: bytes) -> None:
        self.process = process
        self.url = url
        self.stderr = banner


@contextlib.asynccontextmanager
async def served_by_cli(tmp_path: Path, *args: str, **env: str) -> AsyncIterator[Served]:
    """`llmgather serve --port 0 ARGS…` with `env` added to a clean environment, until the
    block ends (then SIGTERM, and its stderr is complete)."""
    process = await asyncio.create_subprocess_exec(
        os.path.join(os.path.dirname(sys.executable), "llmgather"),
        "serve",
        "--port",
        "0",
        "--jobs-dir",
        str(tmp_path / "jobs"),
        *args,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(**env),
        cwd=tmp_path,
    )
    assert process.stderr is not None
    banner = b""
    try:
        while b"llmgather serve:" not in banner:
            line = await asyncio.wait_for(process.stderr.readline(), timeout=WAIT_S)
            assert line, f"serve exited early: {banner.decode(errors='replace')}"
            banner += line
        found = re.search(rb"http://(127\.\d+\.\d+\.\d+|\[::1\]|localhost):\d+", banner)
        assert found is not None, banner
        served = Served(process, found.group(0).decode(), banner)
        yield served
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(process.stderr.read(), timeout=WAIT_S)
        await asyncio.wait_for(process.wait(), timeout=WAIT_S)
    served.stderr += rest


async def post_head_only(base_url: str, path: str, headers: Mapping[str, str]) -> tuple[int, bytes]:
    """A POST whose head declares a body that is never sent, as a client about to upload a
    huge one: the status and body of the answer it gets without sending it."""
    host, _, port = base_url.removeprefix("http://").partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        lines = [
            f"POST {path} HTTP/1.1",
            f"Host: {host}",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        async with asyncio.timeout(WAIT_S):
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            body = await reader.readexactly(length)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return status, body
