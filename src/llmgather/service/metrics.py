"""The service's Prometheus metrics, in a registry of the app's own (never the global one:
one process may hold many apps, and tests create many).

Two sources. What only the HTTP layer sees (requests by route template and status, their
latency) is recorded by `RequestMetrics`, a pure ASGI layer that costs about 5 µs a request
(two clock readings, a dictionary lookup, three locked updates). Everything else (the queue,
the engine's counters, the limiter's budgets) is read from the live objects when `/metrics` is
scraped, by `StateCollector`: nothing is counted twice, nothing is updated on the hot path.

No label ever holds a raw path, a header or a key: a route is its template
("/v1/chat/completions"), a path no route matched is "(unmatched)".
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

UNMATCHED = "(unmatched)"
# From a health check's microseconds to a long answer's minutes: an LLM call takes seconds.
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ServiceMetrics:
    """The app's registry, with the HTTP layer's two instruments and the state collector."""

    def __init__(self, state: Any) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "llmgather_http_requests",
            "HTTP requests answered, by route template, method and status",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "llmgather_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response (a stream's last event)",
            ("route",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.first_byte = Histogram(
            "llmgather_http_response_start_seconds",
            "Time from a request's arrival to its response's headers (a stream's first piece)",
            ("route",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(StateCollector(state))
        self._children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}

    def record(
        self, route: str, method: str, status: int, took: float, start: float | None
    ) -> None:
        """One request answered: `took` seconds in all, its headers after `start` (None: it
        sent none)."""
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:  # labels() locks and checks: once per route, method and status
            children = (
                self.requests.labels(route, method, str(status)),
                self.duration.labels(route),
                self.first_byte.labels(route),
            )
            self._children[key] = children
        requests, duration, first_byte = children
        requests.inc()
        duration.observe(took)
        if start is not None:
            first_byte.observe(start)


class RequestMetrics:
    """Pure ASGI layer counting requests by route and status, and timing them; added with
    `app.add_middleware(RequestMetrics, metrics=...)`, so the router has set `scope["route"]`
    by the time the response ends."""

    def __init__(self, app: Any, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering
        headers_at: float | None = None

        async def timed_send(message: Any) -> None:
            nonlocal status, headers_at
            if message["type"] == "http.response.start":
                status = message["status"]
                headers_at = time.perf_counter()
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            took = time.perf_counter() - started
            start = None if headers_at is None else headers_at - started
            self.metrics.record(_route_of(scope), scope["method"], status, took, start)


def _route_of(scope: Any) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class StateCollector(Collector):
    """Reads the queue, the engine and the limiter of `state` (the app's `app.state`) at
    scrape time. The engine's metrics are absent until the upstream has started."""

    def __init__(self, state: Any) -> None:
        self._state = state

    def describe(self) -> list[Any]:
        return []  # registering must not read an upstream that has not started

    def collect(self) -> Iterator[Any]:
        state = self._state
        queue = state.gateway.queue
        yield _gauge(
            "queue_waiting", "Requests waiting in the gateway's queue (its depth)", queue.waiting
        )
        yield _counter(
            "queue_refused", "Requests refused with a 429 by the queue's bound", queue.refused
        )
        yield from _engine(state.upstream)
        yield from _limiter(state.upstream.limiter)


def _engine(upstream: Any) -> Iterator[Any]:
    try:
        engine = upstream.engine
    except RuntimeError:  # not started yet, or stopped
        return
    stats = engine.statistics()
    yield _gauge("upstream_in_flight", "Calls sent upstream and not yet answered", stats.in_flight)
    yield _gauge("upstream_waiting_retry", "Calls waiting to be retried", stats.waiting_retry)
    yield _counter("upstream_submitted", "Calls handed to the engine", stats.submitted)
    yield _counter("upstream_sent", "Calls sent upstream at least once", stats.sent)
    yield _counter("upstream_done", "Calls answered", stats.done)
    yield _counter("upstream_failed", "Calls that failed for good", stats.failed)
    yield _counter("upstream_retries", "Attempts retried after an error", stats.retries)
    yield _counter(
        "upstream_resent",
        "Requests resent at once on a fresh connection after a pooled one closed unanswered",
        stats.resent,
    )
    yield _counter("upstream_http_429", "429 answers from the upstream", stats.http_429)
    tokens = CounterMetricFamily(
        "llmgather_upstream_tokens", "Tokens the upstream reported, by kind", labels=("kind",)
    )
    tokens.add_metric(("input",), stats.input_tokens)
    tokens.add_metric(("output",), stats.output_tokens)
    yield tokens
    cost = CounterMetricFamily(
        "llmgather_upstream_cost_usd",
        "What the upstream's answers cost in USD, by the model they were priced as "
        "(answers of a model with no price are not counted)",
        labels=("model",),
    )
    for model, spent in sorted(stats.cost_by_model.items()):
        cost.add_metric((model,), float(spent))
    yield cost
    yield _gauge(
        "upstream_unreachable_seconds",
        "How long the upstream has been unreachable (0 while it answers)",
        stats.unreachable_s,
    )


def _limiter(limiter: Any) -> Iterator[Any]:
    stats = limiter.statistics()
    yield _gauge("limiter_concurrency", "The concurrency cap in force", stats.concurrency)
    yield _gauge("limiter_max_concurrency", "The configured concurrency cap", stats.max_concurrency)
    yield _gauge(
        "limiter_pause_remaining_seconds",
        "How long every send is still held by a 429 or an outage",
        stats.pause_remaining,
    )
    yield _counter("limiter_penalties", "429s and outages reported to the limiter", stats.penalties)
    limits = GaugeMetricFamily(
        "llmgather_limiter_limit",
        "Budgets in force, per window (a minute, or a day for rpd); origin: set by the user, "
        "or learned (announced by the provider or found from its 429s)",
        labels=("budget", "origin"),
    )
    for name, limit in stats.limits.items():
        limits.add_metric((name, "learned" if name in stats.learned else "set"), limit)
    yield limits
    remaining = GaugeMetricFamily(
        "llmgather_limiter_budget_remaining",
        "What each budget lets out at once now: a per-minute budget's burst (at most "
        "burst_seconds of its limit), what is left of a day's window",
        labels=("budget",),
    )
    for name, left in limiter.remaining().items():
        remaining.add_metric((name,), left)
    yield remaining


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"llmgather_{name}", doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"llmgather_{name}", doc, value=value)
