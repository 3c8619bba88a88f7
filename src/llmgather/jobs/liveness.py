"""Job liveness: which process claims a running job, whether it is still alive, how long it ran.

A running job's meta names the process that runs it (pid and host). A claim by a live process
makes another run refuse (JobBusyError); a claim by a dead one is a run that crashed.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from llmgather._errors import JobBusyError

__all__ = ["check_not_busy", "process_alive", "running_claim", "unclosed_run_s"]


def process_alive(meta: dict[str, Any]) -> bool:
    """Whether the process that marked the job running may still exist.

    Only a process on this host can be checked; one on another host is assumed alive.
    """
    pid, host = meta.get("pid"), meta.get("host")
    if pid is None:
        return False
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_claim(now: float) -> dict[str, Any]:
    """The meta fields that say this process runs the job, from `now`."""
    return {
        "state": "running",
        "run_started_at": now,
        "last_activity_at": now,
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }


def check_not_busy(meta: dict[str, Any]) -> None:
    """Raise JobBusyError when another live process runs the job."""
    if meta.get("state") == "running" and meta.get("pid") != os.getpid() and process_alive(meta):
        raise JobBusyError(meta.get("pid"), meta.get("host"))


def unclosed_run_s(meta: dict[str, Any], now: float) -> float:
    """Running time of the current or last unclosed run, up to its last sign of life."""
    started = meta.get("run_started_at")
    if started is None:
        return 0.0
    end = now if meta.get("pid") == os.getpid() else float(meta.get("last_activity_at") or started)
    return max(end - float(started), 0.0)
