"""Helpers shared by the simulator tests: a running simulator and raw HTTP calls to it."""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict

from llmgather.sim import FaultPlan, RunningSimulator, SimConfig, start_simulator

OPENAI = "/v1/chat/completions"
ANTHROPIC = "/v1/messages"
GEMINI = "/v1beta/models/gemini-2.0-flash:generateContent"
GEMINI_STREAM = "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
PROMPT = "Why do some birds migrate?"


@contextlib.asynccontextmanager
async def running(faults: str | None = None, **settings: Any) -> AsyncIterator[RunningSimulator]:
    """A simulator on a free loopback port for the duration of the block."""
    config = SimConfig(faults=FaultPlan.parse(faults), **settings)
    async with await start_simulator(config) as sim:
        yield sim


def body_for(path: str, prompt: str = PROMPT, *, stream: bool = False, **extra: Any) -> dict:
    """A minimal valid request body of the dialect that serves `path`."""
    if path.startswith("/v1beta"):
        return {"contents": [{"role": "user", "parts": [{"text": prompt}]}], **extra}
    body: dict[str, Any] = {
        "model": "claude-sim" if path == ANTHROPIC else "gpt-4o-mini",
        "messages": [{"role": "user", "content": prompt}],
        **extra,
    }
    if path == ANTHROPIC:
        body.setdefault("max_tokens", 256)
    if stream:
        body["stream"] = True
    return body


HEADERS = {
    OPENAI: {"Authorization": "Bearer k"},
    ANTHROPIC: {"x-api-key": "k", "anthropic-version": "2023-06-01"},
    GEMINI: {"x-goog-api-key": "k"},
    GEMINI_STREAM: {"x-goog-api-key": "k"},
}


async def post(
    session: aiohttp.ClientSession,
    sim: RunningSimulator,
    path: str,
    body: dict | None = None,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, CIMultiDict[str], bytes]:
    """POST a JSON body and return (status, headers (case-insensitive), raw body)."""
    async with session.post(
        sim.base_url + path,
        data=orjson.dumps(body if body is not None else body_for(path)),
        headers={"Content-Type": "application/json", **HEADERS.get(path, {}), **(headers or {})},
        **kwargs,
    ) as response:
        return response.status, CIMultiDict(response.headers), await response.read()


async def get_json(session: aiohttp.ClientSession, sim: RunningSimulator, path: str) -> Any:
    async with session.get(sim.base_url + path) as response:
        assert response.status == 200
        return orjson.loads(await response.read())


async def sim_stats(
    sim: RunningSimulator, session: aiohttp.ClientSession | None = None
) -> dict[str, Any]:
    """The simulator's counters (`GET /_sim/stats`), through `session` or a session of its own."""
    if session is not None:
        stats: dict[str, Any] = await get_json(session, sim, "/_sim/stats")
        return stats
    async with aiohttp.ClientSession() as own:
        return await sim_stats(sim, own)


def sim_stats_blocking(base_url: str) -> dict[str, Any]:
    """The same counters from a test's own thread, of a simulator in a thread or a process."""
    with urllib.request.urlopen(base_url + "/_sim/stats", timeout=10) as answer:
        stats: dict[str, Any] = orjson.loads(answer.read())
        return stats


def sse_data(raw: bytes) -> list[str]:
    """The `data:` payloads of an SSE body, in order (either line ending)."""
    text = raw.decode().replace("\r\n", "\n")
    return [
        line[len("data: ") :]
        for block in text.split("\n\n")
        for line in block.split("\n")
        if line.startswith("data: ")
    ]
