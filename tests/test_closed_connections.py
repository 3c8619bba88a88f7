"""A server that reads a request and then closes the connection received it: each such failure
spends an attempt, and every request that went out is counted (`attempts`, and `resent` for
what the transport resent on its own), through `llmgather run` and through the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson

from llmgather import Client, RetryPolicy
from llmgather.service import ServiceSettings
from llmgather.transport import AiohttpTransport
from tests.clihelpers import cli_env, read_jsonl, run_cli, write_prompts
from tests.servicefixtures import serving
from tests.simfixtures import body_for, get_json, running, sim_stats_blocking

CLOSED = "sent 2 times; the server closed the connection without answering"


@contextlib.contextmanager
def llmgather_sim(*args: str) -> Iterator[str]:
    """`llmgather sim --port 0 ARGS…` as a user starts it; yields its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "llmgather", "sim", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=cli_env(),
    )
    with process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()  # "llmgather sim listening on http://127.0.0.1:P …"
            assert " on http://127.0.0.1:" in line, line
            yield line.split(" on ")[1].split()[0]
        finally:
            process.terminate()
            process.wait(timeout=10)


def run_against(base_url: str, prompts: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli(
        "run", str(prompts), "-o", str(out), "--model", "openai:gpt-4o-mini",
        "--base-url", base_url + "/v1", "--api-key", "k", "--json", *args,
    )  # fmt: skip


def test_a_server_that_closes_every_connection_after_reading_spends_the_attempts(
    tmp_path: Path,
) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 3)
    out = tmp_path / "results.jsonl"
    with llmgather_sim("--faults", "reset=1") as base_url:
        started = time.monotonic()
        done = run_against(base_url, prompts, out, "--max-attempts", "2", "--max-retry-wait", "20")
        took = time.monotonic() - started
        received = sim_stats_blocking(base_url)["received"]
    assert done.returncode == 1, done.stderr
    lines = read_jsonl(out)
    assert [line["attempts"] for line in lines] == [2, 2, 2]
    assert all(line["error"]["type"] == "APIConnectionError" for line in lines)
    assert all(line["error"]["message"] == CLOSED for line in lines)
    summary = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert received == sum(line["attempts"] for line in lines) + summary["resent"] == 6
    assert summary["failed"] == 3 and summary["top_errors"][0]["message"] == CLOSED
    assert took < 15.0  # two attempts and a backoff, not the 20 s retry ceiling


def test_every_request_a_random_disconnect_made_is_counted(tmp_path: Path) -> None:
    """Resets on kept-alive connections: the transport resends at once on a fresh one (not an
    attempt), and the summary counts those resends, so nothing that went out is uncounted."""
    prompts = write_prompts(tmp_path / "prompts.jsonl", 60)
    out = tmp_path / "results.jsonl"
    with llmgather_sim("--faults", "reset=0.3", "--seed", "4", "--latency-ms", "5") as base_url:
        done = run_against(base_url, prompts, out, "--max-attempts", "20", "-c", "4")
        received = sim_stats_blocking(base_url)["received"]
    assert done.returncode == 0, done.stderr
    lines = read_jsonl(out)
    assert len(lines) == 60 and all(line["status"] == "ok" for line in lines)
    assert all(line["attempts"] <= 20 for line in lines)
    summary = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert summary["resent"] > 0
    assert sum(line["attempts"] for line in lines) + summary["resent"] == received


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_the_gateway_gives_up_after_its_attempts_not_after_the_retry_ceiling() -> None:
    retry = RetryPolicy(max_attempts=2, max_retry_wait=20)
    async with running(faults="reset=1") as sim:
        settings = ServiceSettings(
            model="openai:gpt-4o-mini", base_url=sim.base_url + "/v1", api_key="k", retry=retry
        )
        async with serving(settings) as base_url, aiohttp.ClientSession() as session:

            async def ask(i: int) -> int:
                body = orjson.dumps(body_for("/v1/chat/completions", f"closed {i}"))
                async with session.post(
                    base_url + "/v1/chat/completions",
                    data=body,
                    headers={"Content-Type": "application/json"},
                ) as response:
                    await response.read()
                    return response.status

            started = time.monotonic()
            statuses = await asyncio.gather(*(ask(i) for i in range(3)))
            took = time.monotonic() - started
            stats = await get_json(session, sim, "/_sim/stats")
    assert statuses == [502, 502, 502]
    assert stats["received"] == 3 * 2  # each client request sent upstream max_attempts times
    assert took < 10.0


async def test_the_gateway_counts_resent_requests_in_its_metrics() -> None:
    retry = RetryPolicy(max_attempts=20, base_delay=0.01, max_delay=0.05)
    async with running(faults="reset=0.3", seed=4, latency_ms=5) as sim:
        settings = ServiceSettings(
            model="openai:gpt-4o-mini", base_url=sim.base_url + "/v1", api_key="k", retry=retry
        )
        async with serving(settings) as base_url, aiohttp.ClientSession() as session:
            for i in range(40):  # one at a time: each goes on the connection the last left
                async with session.post(
                    base_url + "/v1/chat/completions",
                    data=orjson.dumps(body_for("/v1/chat/completions", f"kept alive {i}")),
                    headers={"Content-Type": "application/json"},
                ) as response:
                    assert response.status == 200, await response.text()
            async with session.get(base_url + "/metrics") as response:
                metrics = await response.text()
            stats = await get_json(session, sim, "/_sim/stats")
    resent = metric(metrics, "llmgather_upstream_resent_total")
    sent = metric(metrics, "llmgather_upstream_sent_total")
    retries = metric(metrics, "llmgather_upstream_retries_total")
    assert resent > 0
    assert sent + retries + resent == stats["received"]


async def test_the_aiohttp_transport_counts_what_it_sends_the_same_way() -> None:
    """aiohttp cannot tell a pooled connection's close from a server that read the request, so
    it resends after either: every resend is counted, and each item's attempts stay bounded."""
    retry = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.05)
    transport = AiohttpTransport()
    try:
        async with running(faults="reset=1") as sim:
            async with Client(
                "openai:gpt-4o-mini",
                base_url=sim.base_url + "/v1",
                api_key="k",
                transport=transport,
                retry=retry,
            ) as client:
                results = await client.gather([f"closed {i}" for i in range(3)])
                resent = client.statistics().resent
            async with aiohttp.ClientSession() as session:
                received = (await get_json(session, sim, "/_sim/stats"))["received"]
    finally:
        await transport.aclose()
    assert [r.attempts for r in results] == [2, 2, 2]
    assert all(r.error is not None and r.error.type == "APIConnectionError" for r in results)
    assert sum(r.attempts for r in results) + resent == received
