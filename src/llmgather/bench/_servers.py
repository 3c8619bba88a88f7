"""Gateways under test as subprocesses: each on a free 127.0.0.1 port, ready when its health
URL answers 200, stopped with its whole process group (a server may fork workers).

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
from pathlib import Path

from llmgather.bench.redis_server import free_port

SIM_KEY = "sim-key"  # the simulator takes any key: nothing secret crosses these processes
MODEL = "openai:gpt-4o-mini"


class GatewayUnavailable(RuntimeError):
    """A gateway that could not be installed or started: its row says why, the others go on."""


class ServerProcess:
    """`args` started in a new process group, its output to `log`, ready once `ready_path`
    answers 200 on `port` (within `startup_s`, else `GatewayUnavailable`)."""

    def __init__(
        self,
        name: str,
        args: list[str],
        *,
        port: int,
        ready_path: str,
        log: Path,
        env: dict[str, str] | None = None,
        startup_s: float = 60.0,
    ) -> None:
        self.name = name
        self.port = port
        self._args = args
        self._ready_url = f"http://127.0.0.1:{port}{ready_path}"
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
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self._args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                start_new_session=True,  # its own group: stop() reaps any worker it forks
            )
        deadline = time.monotonic() + self._startup_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self.stop()
                raise GatewayUnavailable(f"{self.name} exited at start: {self._last_line()}")
            if self._answers():
                return self
            time.sleep(0.1)  # start-up only: a server gives no other signal that it is ready
        self.stop()
        raise GatewayUnavailable(f"{self.name} not ready within {self._startup_s:.0f}s")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self._ready_url, timeout=2) as response:  # 127.0.0.1
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
    port = free_port()
    args = [sys.executable, "-m", "llmgather", "serve", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--model", MODEL, "--base-url", upstream, "--api-key", SIM_KEY]
    args += ["--jobs-dir", str(work / f"serve-jobs-{port}")]
    if rpm:
        args += ["--rpm", str(rpm)]
    return ServerProcess(
        "llmgather serve", args, port=port, ready_path="/readyz", log=work / "serve.log"
    )
