"""`llmgather demo`: the classic experiment on the embedded simulator, in about 20 seconds.

1-3. The same few requests three ways: a synchronous loop, plain `asyncio.gather`, llmgather.
4.   More requests than the rate limit allows: plain `gather` (some fail with 429) against
     llmgather told the limit (all succeed by waiting).
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from typing import Any

import aiohttp
import click
import orjson
from rich.console import Console
from rich.table import Table

from llmgather._client import Client
from llmgather.cli._console import new_console, print_json
from llmgather.sim import EmbeddedSimulator, SimConfig

TIMING_REQUESTS = 5
# Every answer is cut at MAX_TOKENS and latency is not jittered, so all requests take the same
# simulated time (about one second) and the comparison measures the calling pattern, not luck.
LATENCY_MS = 1800.0
MAX_TOKENS = 16
SIM_RPM = 600  # 10 requests per second, at most 10 at once
BURST_REQUESTS = 40
BURST_LATENCY_MS = 400.0


@click.command("demo")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def demo_command(as_json: bool) -> None:
    """Sync loop vs asyncio.gather vs llmgather, then a burst past the rate limit (offline)."""
    console = new_console(stderr=as_json)
    console.print(
        "[bold]llmgather demo[/] on the built-in simulator (127.0.0.1, no API key needed)"
    )
    report = run_demo(console)
    if as_json:
        print_json(report)
    else:
        _print_tables(console, report)


def run_demo(console: Console) -> dict[str, Any]:
    timing = SimConfig(latency_ms=LATENCY_MS, latency_jitter=0.0, seed=7)
    limited = SimConfig(latency_ms=BURST_LATENCY_MS, latency_jitter=0.0, rpm=SIM_RPM, seed=7)
    prompts = [f"Explain idea number {i} in one sentence." for i in range(TIMING_REQUESTS)]
    with EmbeddedSimulator(timing) as sim:
        url = sim.base_url + "/v1/chat/completions"
        console.print(f"1. {TIMING_REQUESTS} requests in a synchronous loop …")
        sync_s = _timed(lambda: _sync_loop(url, prompts))
        console.print("2. the same with plain asyncio.gather …")
        gather_s, _ = _timed_async(_naive_gather(url, prompts))
        console.print("3. the same with llmgather …")
        llmgather_s, _ = _timed_async(_with_llmgather(sim.base_url, prompts, rpm=None))
    burst = [f"Summarise document {i}." for i in range(BURST_REQUESTS)]
    with EmbeddedSimulator(limited) as sim:
        url = sim.base_url + "/v1/chat/completions"
        console.print(
            f"4. {BURST_REQUESTS} requests against a limit of {SIM_RPM} requests/min "
            f"(at most {SIM_RPM // 60} a second): plain gather, then llmgather …"
        )
        naive_s, naive_statuses = _timed_async(_naive_gather(url, burst))
        time.sleep(1.0)  # let the simulator's budget refill, so both start equal
        limited_s, results = _timed_async(_with_llmgather(sim.base_url, burst, rpm=SIM_RPM))
        time.sleep(1.0)
        learned_s, learned = _timed_async(_with_llmgather(sim.base_url, burst, rpm=None))
    return {
        "requests": TIMING_REQUESTS,
        "sync_s": round(sync_s, 3),
        "gather_s": round(gather_s, 3),
        "llmgather_s": round(llmgather_s, 3),
        "speedup": round(sync_s / llmgather_s, 2),
        "rate_limit": {
            "requests": BURST_REQUESTS,
            "rpm": SIM_RPM,
            "naive_failed": sum(1 for status in naive_statuses if status != 200),
            "naive_429": sum(1 for status in naive_statuses if status == 429),
            "naive_s": round(naive_s, 3),
            "llmgather_failed": sum(1 for r in results if not r.ok),
            "llmgather_s": round(limited_s, 3),
            # Told nothing: it learns the limit from the x-ratelimit-* headers of the first
            # answers, and the 429s of the first wave are retried after their Retry-After.
            "llmgather_untold_failed": sum(1 for r in learned if not r.ok),
            "llmgather_untold_s": round(learned_s, 3),
        },
    }


def _body(prompt: str) -> bytes:
    return orjson.dumps(
        {
            "model": "gpt-4o-mini",
            "max_tokens": MAX_TOKENS,
            "messages": [{"role": "user", "content": prompt}],
        }
    )


def _sync_loop(url: str, prompts: list[str]) -> None:
    """What most scripts start as: one blocking call after another."""
    for prompt in prompts:
        request = urllib.request.Request(
            url, data=_body(prompt), headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()


async def _naive_gather(url: str, prompts: list[str]) -> list[int]:
    """Everything at once, no limits, no retries: the usual first async attempt."""
    async with aiohttp.ClientSession() as session:

        async def one(prompt: str) -> int:
            async with session.post(
                url, data=_body(prompt), headers={"content-type": "application/json"}
            ) as response:
                await response.read()
                return response.status

        return list(await asyncio.gather(*(one(p) for p in prompts)))


async def _with_llmgather(root: str, prompts: list[str], *, rpm: float | None) -> list[Any]:
    async with Client(
        "openai:gpt-4o-mini",
        base_url=root + "/v1",
        api_key="sim",
        rpm=rpm,
        defaults={"max_tokens": MAX_TOKENS},
    ) as client:
        return await client.gather(prompts)


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _timed_async(coro: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    value = asyncio.run(coro)
    return time.perf_counter() - started, value


def _print_tables(console: Console, report: dict[str, Any]) -> None:
    each = report["sync_s"] / report["requests"]
    timing = Table(title=f"{report['requests']} requests of ~{each:.1f} s each")
    timing.add_column("approach")
    timing.add_column("wall time", justify="right")
    timing.add_column("speedup", justify="right")
    sync_s = report["sync_s"]
    for name, key in [
        ("synchronous loop", "sync_s"),
        ("asyncio.gather", "gather_s"),
        ("llmgather", "llmgather_s"),
    ]:
        timing.add_row(name, f"{report[key]:.2f} s", f"{sync_s / report[key]:.1f}×")
    console.print(timing)
    limit = report["rate_limit"]
    burst = Table(title=f"{limit['requests']} requests, limit {limit['rpm']} requests/min")
    burst.add_column("approach")
    burst.add_column("failed", justify="right")
    burst.add_column("wall time", justify="right")
    burst.add_row("asyncio.gather", f"{limit['naive_failed']} (429)", f"{limit['naive_s']:.2f} s")
    burst.add_row(
        "llmgather, told the limit", str(limit["llmgather_failed"]), f"{limit['llmgather_s']:.2f} s"
    )
    burst.add_row(
        "llmgather, told nothing",
        str(limit["llmgather_untold_failed"]),
        f"{limit['llmgather_untold_s']:.2f} s",
    )
    console.print(burst)
    console.print(
        "llmgather waits for the rate limit instead of failing, retries what is transient, and "
        "writes every result. Try: llmgather run prompts.jsonl -o results.jsonl"
    )
