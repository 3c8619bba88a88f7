"""Many workers driving a `Limiter` on a fake clock against a model server that answers 429
at a fixed share whatever the pace (noise), or beyond a token bucket (a limit): what each send
met, for the limiter tests to judge."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from llmgather import Cost, Limiter, Usage
from llmgather.limits.bucket import TokenBucket
from tests.fakeclock import FakeClock

Server = Callable[[float], bool]  # given the time a request arrives: True if answered 429


def noise(share: float) -> Server:
    """Refuses every `1 / share`-th request, whatever the rate."""
    every = round(1 / share)
    count = 0

    def refuses(now: float) -> bool:
        nonlocal count
        count += 1
        return count % every == 0

    return refuses


def limit(rpm: float) -> Server:
    """Refuses what a bucket of `rpm` with a second's burst cannot take, as the simulator."""
    bucket: TokenBucket | None = None

    def refuses(now: float) -> bool:
        nonlocal bucket
        bucket = bucket or TokenBucket.per_minute(rpm, burst_seconds=1.0, now=now)
        return bucket.try_take(now, 1) > 0

    return refuses


class Run:
    """What the workers saw: each send's time and whether it was refused."""

    def __init__(self) -> None:
        self.sends: list[tuple[float, bool]] = []

    def between(self, start: float, end: float) -> tuple[int, int]:
        """(sends, 429s) in [start, end) seconds of the run."""
        picked = [refused for at, refused in self.sends if start <= at < end]
        return len(picked), sum(picked)


async def drive(
    limiter: Limiter,
    clock: FakeClock,
    server: Server,
    *,
    seconds: float,
    workers: int = 64,
    latency: float = 0.05,
    refused_after: float = 0.0,
) -> Run:
    """`workers` send one request after another for `seconds`: a 429 comes back after
    `refused_after` (0: at once, before anything else is sent), an answer after `latency`."""
    run = Run()

    async def worker() -> None:
        while clock.elapsed < seconds:
            permit = await limiter.acquire(Cost())
            refused = server(clock.now())
            run.sends.append((clock.elapsed, refused))
            if refused:
                if refused_after:
                    await clock.sleep(refused_after)
                await limiter.release(permit, Usage(0, 0), outcome="limited")
                await clock.sleep(0.01)  # the item's own retry waits; the others do not
            else:
                await clock.sleep(latency)
                await limiter.release(permit, Usage(1, 1), outcome="ok")

    async def all_workers() -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(worker())

    await clock.run(all_workers(), limit=seconds + 60)
    return run
