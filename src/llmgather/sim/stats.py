"""What the simulator saw: counters for `/_sim/stats` and a bounded request log for `/_sim/log`."""

from __future__ import annotations

import hashlib
import time
from collections import deque
from typing import Any

LOG_LIMIT = 100_000


class LogEntry:
    """One received API request; `status` and `fault` are filled in as the request proceeds."""

    __slots__ = ("dialect", "fault", "path", "prompt_sha", "status", "t")

    def __init__(self, t: float, dialect: str, path: str) -> None:
        self.t = t
        self.dialect = dialect
        self.path = path
        self.status: int | None = None
        self.fault: str | None = None
        self.prompt_sha: str | None = None

    def set_prompt(self, prompt: str) -> None:
        self.prompt_sha = hashlib.sha256(prompt.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": round(self.t, 6),
            "dialect": self.dialect,
            "path": self.path,
            "status": self.status,
            "fault": self.fault,
            "prompt_sha": self.prompt_sha,
        }


class SimStats:
    """Counters and log of one simulator; owned by its event loop (no locking needed)."""

    __slots__ = (
        "_log",
        "_started",
        "answered",
        "by_status",
        "faults",
        "in_flight",
        "max_in_flight",
        "received",
    )

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._log: deque[LogEntry] = deque(maxlen=LOG_LIMIT)
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        """Zero the counters and the log; `in_flight` is a gauge of live requests, so it stays."""
        self.received = 0
        self.answered = 0
        self.by_status: dict[int, int] = {}
        self.faults: dict[str, int] = {}
        self.max_in_flight = self.in_flight
        self._log.clear()

    def begin(self, dialect: str, path: str) -> LogEntry:
        """Count a received API request and open its log entry."""
        self.received += 1
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight
        entry = LogEntry(time.monotonic() - self._started, dialect, path)
        self._log.append(entry)
        return entry

    def fault(self, entry: LogEntry, kind: str) -> None:
        """Count a fault; the log entry keeps the first one its request met."""
        if entry.fault is None:
            entry.fault = kind
        self.faults[kind] = self.faults.get(kind, 0) + 1

    def answer(self, entry: LogEntry, status: int) -> None:
        """Record the status of a response that was (at least) started."""
        entry.status = status
        self.answered += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1

    def end(self) -> None:
        self.in_flight -= 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "answered": self.answered,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "faults": dict(self.faults),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
        }

    def log(self) -> list[dict[str, Any]]:
        return [entry.to_dict() for entry in self._log]
