"""The load the gateway scenario sends, from this process: raw aiohttp on one pooled session
for latency and requests/s, and many `AsyncOpenAI(max_retries=0)` clients for the shared limit.

Every loop is bounded: by a request count, by a duration, and by an overall deadline after
which what has not finished counts as failed.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from llmgather.bench._servers import SIM_KEY

MAX_TOKENS = 16  # a short answer: the scenario measures the path, not the payload
MESSAGES = [{"role": "user", "content": "q0: name one reason birds migrate."}]
_BODY = orjson.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": MAX_TOKENS})
_HEADERS = {"content-type": "application/json", "authorization": f"Bearer {SIM_KEY}"}
REQUEST_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Latency:
    """Sequential requests (concurrency 1): their p50 and p99 in ms, and those not 200."""

    p50_ms: float
    p99_ms: float
    requests: int
    failed: int


@dataclass(frozen=True, slots=True)
class Rate:
    """Requests answered 200 per second at a concurrency, over a fixed duration."""

    concurrency: int
    ok: int
    failed: int
    elapsed_s: float

    @property
    def rps(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0


def _session(connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
    )


async def _post(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.post(url, data=_BODY, headers=_HEADERS) as response:
            await response.read()
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by the inclusive method: p50 is the median."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


async def latency(base_url: str, requests: int, warmup: int) -> Latency:
    """`requests` one after another after `warmup` unmeasured ones."""
    url = base_url + "/chat/completions"
    times: list[float] = []
    failed = 0
    async with _session(1) as session:
        for _ in range(warmup):
            await _post(session, url)
        for _ in range(requests):
            started = time.perf_counter()
            ok = await _post(session, url)
            times.append((time.perf_counter() - started) * 1000.0)
            failed += not ok
    return Latency(percentile(times, 50), percentile(times, 99), requests, failed)


async def rate(base_url: str, concurrency: int, duration_s: float, warmup_s: float) -> Rate:
    """`concurrency` workers sending back to back for `duration_s` (after `warmup_s` that opens
    the connections); the time runs until the last answer, so slow gateways are not flattered."""
    url = base_url + "/chat/completions"
    async with _session(concurrency) as session:
        if warmup_s:
            await _burst(session, url, concurrency, warmup_s)
        ok, failed, elapsed = await _burst(session, url, concurrency, duration_s)
    return Rate(concurrency, ok, failed, elapsed)


async def _burst(
    session: aiohttp.ClientSession, url: str, concurrency: int, duration_s: float
) -> tuple[int, int, float]:
    outcomes: list[bool] = []
    started = time.perf_counter()
    stop_at = started + duration_s

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            outcomes.append(await _post(session, url))

    async with asyncio.timeout(duration_s + REQUEST_TIMEOUT_S + 5), asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    ok = sum(outcomes)
    return ok, len(outcomes) - ok, time.perf_counter() - started


@dataclass(slots=True)
class SharedTally:
    """What the clients of the shared-limit run saw."""

    requests: int
    ok: int = 0
    http_429: int = 0
    failed: int = 0  # anything else: another status, a timeout, or never sent by the deadline
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "ok": self.ok,
            "http_429": self.http_429,
            "failed": self.failed,
            "elapsed_s": round(self.elapsed_s, 2),
        }


async def shared_limit(
    base_url: str, clients: int, requests: int, deadline_s: float
) -> SharedTally:
    """`clients` AsyncOpenAI(max_retries=0) clients, each sending one request after another,
    taking turns at `requests` in all; stopped at `deadline_s` (unsent requests fail)."""
    from openai import AsyncOpenAI, RateLimitError

    tally = SharedTally(requests)
    turns = iter(range(requests))  # shared: each client takes the next turn when it is free
    made = [
        AsyncOpenAI(base_url=base_url, api_key=SIM_KEY, max_retries=0, timeout=deadline_s)
        for _ in range(clients)
    ]

    async def client_loop(client: AsyncOpenAI) -> None:
        for _ in turns:
            try:
                await client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=MESSAGES,  # type: ignore[arg-type]
                    max_tokens=MAX_TOKENS,
                )
                tally.ok += 1
            except RateLimitError:
                tally.http_429 += 1
            except Exception:  # any other failure is counted, not raised: the run goes on
                tally.failed += 1

    started = time.perf_counter()
    try:
        async with asyncio.timeout(deadline_s), asyncio.TaskGroup() as group:
            for client in made:
                group.create_task(client_loop(client))
    except TimeoutError:
        pass
    finally:
        tally.elapsed_s = time.perf_counter() - started
        tally.failed = requests - tally.ok - tally.http_429
        for client in made:
            await client.close()
    return tally
