"""Gateways under test as subprocesses: each on a free 127.0.0.1 port, ready when its health
URL answers 200, stopped with its whole process group (a server may fork workers).

A free port is only free until someone binds it (another xdist worker, another benchmark): a
server that exits at start because its port was taken is started again on another.

`ServerProcess` is the one way a gateway is run; `ours()` is `llmgather serve` in front of a
simulator, `bench._litellm.litellm_proxy()` the LiteLLM proxy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from llmgather.bench.redis_server import PORT_ATTEMPTS, free_port

SIM_KEY = "sim-key"  # the simulator takes any key: nothing secret crosses these processes
MODEL = "openai:gpt-4o-mini"
# What a server prints when it cannot bind its port (uvicorn, and Python's own OSError).
BIND_FAILED = ("address already in use", "errno 98")


class GatewayUnavailable(RuntimeError):
    """A gateway that could not be installed or started: its row says why, the others go on."""


class ServerProcess:
    """`command(port)` started in a new process group on a free port, its output to `log`,
    ready once `ready_path` answers 200 there (within `startup_s`, else `GatewayUnavailable`)."""

    def __init__(
        self,
        name: str,
        command: Callable[[int], list[str]],
        *,
        ready_path: str,
        log: Path,
        env: dict[str, str] | None = None,
        startup_s: float = 60.0,
    ) -> None:
        self.name = name
        self.port = 0  # chosen as it starts
        self._command = command
        self._ready_path = ready_path
        self._log_path = log
        self._env = env
        self._startup_s = startup_s
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL clients are given."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> ServerProcess:
        for _ in range(PORT_ATTEMPTS):
            if self._start_on(free_port()):
                return self
        raise GatewayUnavailable(
            f"{self.name}: each of {PORT_ATTEMPTS} free ports was taken before it could bind it"
        )

    def _start_on(self, port: int) -> bool:
        """Started on `port`: True once ready, False if the port was taken before the server
        bound it (another may be tried)."""
        self.port = port
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("ab") as log:
            logged_before = log.tell()
            self._proc = subprocess.Popen(
                self._command(port),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                start_new_session=True,  # its own group: stop() reaps any worker it forks
            )
        deadline = time.monotonic() + self._startup_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self.stop()
                if self._said_since(logged_before, BIND_FAILED):
                    return False
                raise GatewayUnavailable(f"{self.name} exited at start: {self._last_line()}")
            if self._answers() and self._proc.poll() is None:  # not another one on the port
                return True
            time.sleep(0.1)  # start-up only: a server gives no other signal that it is ready
        self.stop()
        raise GatewayUnavailable(f"{self.name} not ready within {self._startup_s:.0f}s")

    def _said_since(self, offset: int, signs: tuple[str, ...]) -> bool:
        try:
            with self._log_path.open("rb") as log:
                log.seek(offset)
                said = log.read().decode(errors="replace").lower()
        except OSError:
            return False
        return any(sign in said for sign in signs)

    def _answers(self) -> bool:
        url = f"http://127.0.0.1:{self.port}{self._ready_path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # 127.0.0.1
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _last_line(self) -> str:
        try:
            lines = self._log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return lines[-1][-300:] if lines else "(no output)"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        else:
            try:  # the leader is gone; a forked worker may not be
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def ours(upstream: str, work: Path, *, rpm: float | None = None) -> ServerProcess:
    """`llmgather serve` with its default settings in front of the simulator at `upstream`
    (an OpenAI base URL), told the upstream's request limit when there is one."""

    def command(port: int) -> list[str]:
        args = [sys.executable, "-m", "llmgather", "serve", "--host", "127.0.0.1"]
        args += ["--port", str(port), "--model", MODEL, "--base-url", upstream]
        args += ["--api-key", SIM_KEY, "--jobs-dir", str(work / f"serve-jobs-{port}")]
        return args + (["--rpm", str(rpm)] if rpm else [])

    return ServerProcess("llmgather serve", command, ready_path="/readyz", log=work / "serve.log")
