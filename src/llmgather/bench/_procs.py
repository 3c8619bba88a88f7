"""Subprocesses: the `llmgather sim` server and the contenders, each pinned, timed and reaped.

The simulator runs on CPU 1 and the contenders on CPU 0 (where the machine has two), so the
client being measured never shares a core with the server answering it. Every child has a
deadline and is killed on it; its CPU time and peak RSS come from `wait4`, so they are its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SIM_CPU = 1
CLIENT_CPU = 0
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _pinning() -> bool:
    return hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2


def pin(pid: int, cpu: int) -> bool:
    """Pin a process to one CPU where the platform allows; False if it could not."""
    if not _pinning():
        return False
    try:
        os.sched_setaffinity(pid, {cpu})
    except OSError:
        return False
    return True


def process_cpu_seconds(pid: int) -> float | None:
    """user + system CPU seconds of a live process, from /proc (None where unavailable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


class SimProcess:
    """A `llmgather sim` subprocess on 127.0.0.1 and a free port."""

    def __init__(
        self,
        *,
        latency_ms: float,
        rpm: float | None = None,
        rpd: float | None = None,
        tpm: float | None = None,
        itpm: float | None = None,
        otpm: float | None = None,
        seed: int = 0,
        limit_headers: bool = True,
        log: Path | None = None,
    ) -> None:
        args = [
            sys.executable,
            "-m",
            "llmgather",
            "sim",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--latency-ms",
            str(latency_ms),
            "--seed",
            str(seed),
        ]
        limits = {"rpm": rpm, "rpd": rpd, "tpm": tpm, "itpm": itpm, "otpm": otpm}
        for name, limit in limits.items():
            if limit:
                args += [f"--{name}", str(limit)]
        if not limit_headers:
            args.append("--no-limit-headers")
        self._log = open(log, "ab") if log else None  # closed in stop()
        self._proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self._log or subprocess.DEVNULL
        )
        self.pinned = pin(self._proc.pid, SIM_CPU)
        self.base_url = self._await_address(timeout=20.0)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _await_address(self, timeout: float) -> str:
        timer = threading.Timer(timeout, self._proc.kill)
        timer.start()
        try:
            assert self._proc.stdout is not None
            line = self._proc.stdout.readline().decode()
        finally:
            timer.cancel()
        if "listening on " not in line:
            self.stop()
            raise RuntimeError(f"the simulator did not start: {line!r}")
        return line.split("listening on ", 1)[1].split()[0]

    def _call(self, method: str, path: str, body: object = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else b"" if method == "POST" else None
        request = urllib.request.Request(self.base_url + path, method=method, data=data)
        with urllib.request.urlopen(request, timeout=10) as response:  # 127.0.0.1 only
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_sim/stats")

    def reset(self) -> None:
        self._call("POST", "/_sim/reset")

    def change_limits(self, **limits: float | None) -> dict[str, Any]:
        """Change the simulator's limits while it serves (None removes one)."""
        return self._call("POST", "/_sim/limits", limits)

    def cpu_seconds(self) -> float | None:
        return process_cpu_seconds(self._proc.pid)

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@dataclass(slots=True)
class ChildRun:
    """One finished child: its last stdout line parsed as JSON (if any) and what wait4 saw."""

    returncode: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    timed_out: bool
    report: dict[str, Any] | None = None  # the last JSON line
    reports: list[dict[str, Any]] = field(default_factory=list)  # every JSON line, in order
    stderr_tail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def run_child(
    args: list[str],
    *,
    timeout: float,
    log_path: Path | None = None,
    env: dict[str, str] | None = None,
) -> ChildRun:
    """Run `args` pinned to the client CPU, kill it at `timeout`, and reap it with wait4."""
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, env=env)
    pin(proc.pid, CLIENT_CPU)
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
        if log is not subprocess.DEVNULL:
            log.close()  # type: ignore[union-attr]
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    reports = []
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                reports.append(json.loads(line))
            except ValueError:
                continue
    tail = ""
    if log_path is not None and proc.returncode != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
    return ChildRun(
        returncode=proc.returncode,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        # Includes the parent's RSS at fork on Linux: children report their own VmHWM instead.
        peak_rss_mb=usage.ru_maxrss / 1024.0,
        timed_out=killed.is_set(),
        report=reports[-1] if reports else None,
        reports=reports,
        stderr_tail=tail,
    )


def run_contender(
    contender: str, spec: dict[str, Any], *, timeout: float, log_path: Path | None = None
) -> ChildRun:
    """Run `llmgather.bench.runner` for one contender module with a JSON spec."""
    args = [sys.executable, "-m", "llmgather.bench.runner", contender, json.dumps(spec)]
    return run_child(args, timeout=timeout, log_path=log_path)
