"""Running the simulator: in the caller's event loop, in a background thread, or as the CLI."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from llmgather.sim.config import SimConfig
from llmgather.sim.handler import SimHandler

# How long a shutdown lets in-flight answers finish before cancelling them.
SHUTDOWN_TIMEOUT_S = 2.0
DIALECT_NAMES = "openai, gemini, anthropic"


class RunningSimulator:
    """A simulator serving on a port of this event loop; `close()` (or `async with`) stops it."""

    def __init__(self, runner: web.ServerRunner, handler: SimHandler, host: str, port: int) -> None:
        self._runner = runner
        self.handler = handler
        self.host = host
        self.port = port
        self.base_url = f"http://{_url_host(host)}:{port}"
        self._closed = False

    @property
    def config(self) -> SimConfig:
        return self.handler.config

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.handler.closing.set()
        await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<RunningSimulator {self.base_url}>"


async def start_simulator(
    config: SimConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    sock: socket.socket | None = None,
) -> RunningSimulator:
    """Start serving all three dialects on `host:port` (0 = a free port) in this event loop,
    or on `sock`, bound and listening already (the CLI binds it, to fail cleanly)."""
    handler = SimHandler(config or SimConfig())
    loop = asyncio.get_running_loop()
    # aiohttp refuses bodies over 1 MiB by default; long prompts are legitimate.
    max_body = handler.config.max_body_bytes

    def make_request(
        message: Any, payload: Any, protocol: Any, writer: Any, task: Any
    ) -> web.BaseRequest:
        return web.BaseRequest(
            message, payload, protocol, writer, task, loop, client_max_size=max_body
        )

    # handler_cancellation: a client that hangs up (e.g. on a stall) frees its handler at once.
    server = web.Server(
        handler, request_factory=make_request, handler_cancellation=True, access_log=None
    )
    runner = web.ServerRunner(server, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    site: web.BaseSite = (
        web.TCPSite(runner, host, port, reuse_address=True)
        if sock is None
        else web.SockSite(runner, sock)
    )
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = _bound_port(runner, port)
    return RunningSimulator(runner, handler, host, bound)


def _bound_port(runner: web.ServerRunner, requested: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return requested


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class EmbeddedSimulator:
    """A simulator on 127.0.0.1 and a free port, served by a daemon thread with its own loop.

    with EmbeddedSimulator(SimConfig(rpm=60)) as sim:
        client = AsyncOpenAI(base_url=sim.base_url + "/v1", api_key="k")
    """

    def __init__(self, config: SimConfig | None = None, *, host: str = "127.0.0.1") -> None:
        self.config = config or SimConfig()
        self.host = host
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._running: RunningSimulator | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return self._require().base_url

    @property
    def port(self) -> int:
        return self._require().port

    @property
    def stats(self) -> dict[str, object]:
        """A snapshot of `/_sim/stats`, read on the simulator's own loop."""
        running, loop = self._require(), self._loop
        assert loop is not None
        future = asyncio.run_coroutine_threadsafe(_snapshot(running), loop)
        return future.result(timeout=5)

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("the simulator is already started")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._serve, name="llmgather-sim", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("the simulator failed to start") from self._error
        return self

    def stop(self) -> None:
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
        thread.join()
        self._thread = None
        self._running = None

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start() if it never got ready
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                raise

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self._running = await start_simulator(self.config, self.host, 0)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self._running.close()

    def _require(self) -> RunningSimulator:
        if self._running is None:
            raise RuntimeError("the simulator is not running: use start() or `with`")
        return self._running

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self._running.base_url if self._running else "stopped"
        return f"<EmbeddedSimulator {where}>"


async def _snapshot(running: RunningSimulator) -> dict[str, object]:
    return running.handler.stats.snapshot()


def run_forever(
    config: SimConfig,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    sock: socket.socket | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, printing one line with the address first (for the CLI);
    on `sock` when given (bound to `host:port`)."""
    asyncio.run(_run_until_signal(config, host, port, sock))


async def _run_until_signal(
    config: SimConfig, host: str, port: int, sock: socket.socket | None
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            pass
    try:
        async with await start_simulator(config, host, port, sock=sock) as running:
            print(f"llmgather sim listening on {running.base_url} ({DIALECT_NAMES})", flush=True)
            await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
