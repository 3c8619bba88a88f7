"""What the dashboard shows, as one JSON-ready snapshot of the service: the pace of requests
and tokens against the limits, the queue, the upstream's counters and the jobs.

The engine counts totals; a per-minute pace is the change of those totals over the last
minute, from samples this feed keeps as it is read (so the pace survives a page reload or a
reconnected event stream, and costs nothing while no dashboard is open).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

WINDOW_S = 60.0
# A pace over less than this is extrapolated as if over this: a burst of 20 requests in the
# first second seen reads 120/min, not 1,200/min.
MIN_SPAN_S = 10.0
MAX_JOBS = 50


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float
    requests: int
    input_tokens: int
    output_tokens: int


class DashboardFeed:
    """Snapshots of `state` (the app's `app.state`) for the dashboard."""

    def __init__(self, state: Any, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._state = state
        self._clock = clock
        self._samples: deque[_Sample] = deque()

    def snapshot(self) -> dict[str, Any]:
        state = self._state
        upstream = state.upstream
        queue = state.gateway.queue
        limiter = upstream.limiter.statistics()
        engine = _engine_stats(upstream)
        return {
            "model": upstream.model,
            "simulated": upstream.simulated,
            "queue": {"waiting": queue.waiting, "refused": queue.refused},
            "in_flight": engine.in_flight if engine else 0,
            "sent": engine.sent if engine else 0,
            "done": engine.done if engine else 0,
            "failed": engine.failed if engine else 0,
            "retries": engine.retries if engine else 0,
            "http_429": engine.http_429 if engine else 0,
            "tokens": {
                "input": engine.input_tokens if engine else 0,
                "output": engine.output_tokens if engine else 0,
            },
            "per_minute": self._pace(engine),
            "limits": dict(limiter.limits),
            "learned": sorted(limiter.learned),
            "concurrency": {"current": limiter.concurrency, "max": limiter.max_concurrency},
            "paused_s": round(limiter.pause_remaining, 1),
            "jobs": _jobs(state),
        }

    def _pace(self, engine: Any) -> dict[str, float]:
        """Requests (every attempt, as the limits count them) and tokens per minute."""
        now = self._clock()
        if engine is None:
            return {"requests": 0.0, "tokens": 0.0, "input_tokens": 0.0, "output_tokens": 0.0}
        sample = _Sample(
            now, engine.sent + engine.retries, engine.input_tokens, engine.output_tokens
        )
        samples = self._samples
        if not samples and engine.elapsed_s < WINDOW_S:
            samples.append(_Sample(now - engine.elapsed_s, 0, 0, 0))  # the engine's start
        if not samples or now - samples[-1].at >= 0.5:  # many open pages: one sample a beat
            samples.append(sample)
        # Keep the newest sample at least a minute old as the baseline, and nothing older.
        while len(samples) > 1 and samples[1].at <= now - WINDOW_S:
            samples.popleft()
        base = samples[0]
        scale = 60.0 / max(now - base.at, MIN_SPAN_S)
        inputs = (sample.input_tokens - base.input_tokens) * scale
        outputs = (sample.output_tokens - base.output_tokens) * scale
        return {
            "requests": round((sample.requests - base.requests) * scale, 1),
            "tokens": round(inputs + outputs, 1),
            "input_tokens": round(inputs, 1),
            "output_tokens": round(outputs, 1),
        }


def _engine_stats(upstream: Any) -> Any:
    try:
        return upstream.engine.statistics()
    except RuntimeError:  # not started yet, or stopped
        return None


def _jobs(state: Any) -> list[dict[str, Any]]:
    """The newest jobs, as the job manager lists them (none in an app without one)."""
    jobs = getattr(state, "jobs", None)
    return [] if jobs is None else jobs.snapshot()[:MAX_JOBS]
