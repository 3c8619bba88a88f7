"""The simulator's own endpoints, routing, keys, capacity, and the ways to run it."""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import urllib.request

import aiohttp
import orjson
import pytest

from llmgather.sim import EmbeddedSimulator, SimConfig
from tests.simfixtures import (
    ANTHROPIC,
    GEMINI,
    OPENAI,
    PROMPT,
    body_for,
    get_json,
    post,
    running,
)


async def test_stats_and_log_record_each_api_request() -> None:
    async with running(faults="500=0.5", seed=1) as sim, aiohttp.ClientSession() as session:
        for path in (OPENAI, ANTHROPIC, GEMINI, OPENAI):
            await post(session, sim, path)
        stats = await get_json(session, sim, "/_sim/stats")
        log = await get_json(session, sim, "/_sim/log")
        async with session.post(sim.base_url + "/_sim/reset") as response:
            assert response.status == 200
        after = await get_json(session, sim, "/_sim/stats")
        assert await get_json(session, sim, "/_sim/log") == []
    assert stats["received"] == stats["answered"] == 4
    assert sum(stats["by_status"].values()) == 4
    assert stats["by_status"].get("500", 0) == stats["faults"].get("500", 0)
    assert stats["in_flight"] == 0 and stats["max_in_flight"] >= 1
    assert [entry["dialect"] for entry in log] == ["openai", "anthropic", "gemini", "openai"]
    assert log[2]["path"] == GEMINI
    sha = hashlib.sha256(PROMPT.encode()).hexdigest()[:12]
    assert all(entry["prompt_sha"] == sha for entry in log)
    assert [entry["status"] for entry in log] == [
        500 if entry["fault"] == "500" else 200 for entry in log
    ]
    assert all(0 <= a["t"] <= b["t"] for a, b in itertools.pairwise(log))
    assert after == {
        "received": 0,
        "answered": 0,
        "by_status": {},
        "faults": {},
        "in_flight": 0,
        "max_in_flight": 0,
    }


async def test_unknown_paths_and_methods_are_404_and_not_counted() -> None:
    async with running() as sim, aiohttp.ClientSession() as session:
        async with session.post(sim.base_url + "/v1/nothing") as response:
            assert response.status == 404
            assert orjson.loads(await response.read())["error"]["code"] == 404
        async with session.get(sim.base_url + OPENAI) as response:
            assert response.status == 404
        stats = await get_json(session, sim, "/_sim/stats")
    assert stats["received"] == 1 and stats["by_status"] == {"404": 1}


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        (OPENAI, {"Authorization": "Bearer wrong-key-0000"}, 401),
        (OPENAI, {"Authorization": ""}, 401),
        (ANTHROPIC, {"x-api-key": "wrong-key-0000"}, 401),
        (GEMINI, {"x-goog-api-key": "wrong-key-0000"}, 400),
        (GEMINI, {"x-goog-api-key": ""}, 403),
    ],
)
async def test_require_key_refuses_other_keys(
    path: str, headers: dict[str, str], status: int
) -> None:
    async with running(require_key="the-right-key") as sim, aiohttp.ClientSession() as session:
        got, _, raw = await post(session, sim, path, headers=headers)
        ok, _, _ = await post(
            session,
            sim,
            path,
            headers={
                k: ("Bearer " if k == "Authorization" else "") + "the-right-key" for k in headers
            },
        )
    assert got == status and b"wrong-key-0000" not in raw and b"the-right-key" not in raw
    assert ok == 200


async def test_gemini_key_in_the_query_string() -> None:
    async with running(require_key="qkey-123") as sim, aiohttp.ClientSession() as session:
        status, _, _ = await post(
            session, sim, GEMINI + "?key=qkey-123", body_for(GEMINI), headers={"x-goog-api-key": ""}
        )
    assert status == 200


async def test_bad_bodies_are_400_in_the_providers_shape() -> None:
    async with running() as sim, aiohttp.ClientSession() as session:
        async with session.post(
            sim.base_url + OPENAI, data=b"{not json", headers={"Authorization": "Bearer k"}
        ) as response:
            assert response.status == 400
            assert orjson.loads(await response.read())["error"]["type"] == "invalid_request_error"
        status, _, raw = await post(session, sim, GEMINI, {"contents": []})
        assert status == 400 and orjson.loads(raw)["error"]["status"] == "INVALID_ARGUMENT"
        status, _, raw = await post(session, sim, OPENAI, body_for(OPENAI, max_tokens=0))
        assert status == 400


async def test_latency_and_capacity_queue_requests() -> None:
    loop = asyncio.get_running_loop()
    async with running(latency_ms=100, capacity=1) as sim, aiohttp.ClientSession() as session:
        started = loop.time()
        results = await asyncio.gather(*(post(session, sim, OPENAI) for _ in range(4)))
        elapsed = loop.time() - started
        stats = await get_json(session, sim, "/_sim/stats")
    assert all(status == 200 for status, _, _ in results)
    # Each answer takes at least half the mean latency; one at a time, four take >= 0.2 s.
    assert elapsed >= 0.2
    assert stats["max_in_flight"] == 4


async def test_streaming_with_latency_spreads_the_tokens() -> None:
    loop = asyncio.get_running_loop()
    async with running(latency_ms=120) as sim, aiohttp.ClientSession() as session:
        started = loop.time()
        async with session.post(
            sim.base_url + ANTHROPIC,
            data=orjson.dumps(body_for(ANTHROPIC, stream=True)),
            headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        ) as response:
            arrivals = []
            async for _ in response.content.iter_any():
                arrivals.append(loop.time() - started)
    assert arrivals[0] >= 0.015  # the first bytes wait for the time to first token
    assert arrivals[-1] - arrivals[0] > 0.02  # the rest arrive over time, not at once


def test_embedded_simulator_serves_from_its_own_thread() -> None:
    with EmbeddedSimulator(SimConfig(seed=2)) as sim:
        request = urllib.request.Request(
            sim.base_url + OPENAI,
            data=orjson.dumps(body_for(OPENAI)),
            headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert orjson.loads(response.read())["object"] == "chat.completion"
        assert sim.stats["by_status"] == {"200": 1}
        assert sim.base_url == f"http://127.0.0.1:{sim.port}"
    with pytest.raises(RuntimeError):
        _ = sim.base_url
    sim.start()  # a stopped simulator can start again, on a new port
    sim.stop()
    sim.stop()  # stopping twice is harmless


async def test_a_long_prompt_is_accepted() -> None:
    long_prompt = "word " * 400_000  # 2 MB, past aiohttp's default 1 MiB body limit
    async with running() as sim, aiohttp.ClientSession() as session:
        async with session.post(
            sim.base_url + OPENAI,
            data=io.BytesIO(orjson.dumps(body_for(OPENAI, long_prompt))),
            headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
        ) as response:
            status, raw = response.status, await response.read()
    assert status == 200
    assert orjson.loads(raw)["usage"]["prompt_tokens"] > 400_000


def test_latency_model_means_and_jitter() -> None:
    from llmgather.sim.latency import LatencyModel
    from llmgather.sim.text import MEAN_WORDS

    exact = LatencyModel(400, seed=1, jitter=0.0)
    ttft, per_token = exact.draw()
    assert ttft == pytest.approx(0.1) and ttft + per_token * MEAN_WORDS == pytest.approx(0.4)
    jittered = [LatencyModel(400, seed=1).draw() for _ in range(2)]
    assert jittered[0] == jittered[1]  # seeded
    assert 0.05 <= jittered[0][0] <= 0.15
    assert LatencyModel(0, seed=1).draw() == (0.0, 0.0)
    with pytest.raises(ValueError, match="latency_jitter"):
        SimConfig(latency_jitter=2)


def _shape(path: str, raw: bytes) -> str:
    """The error kind as each provider's body names it."""
    data = orjson.loads(raw)
    if path == ANTHROPIC:
        assert data["type"] == "error"
    error = data["error"]
    return str(error["status"] if path == GEMINI else error["type"])


@pytest.mark.parametrize(
    ("path", "body", "kind"),
    [
        pytest.param(
            OPENAI,
            {
                "model": "m",
                "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}],
            },
            "invalid_request_error",
            id="openai-text-int",
        ),
        pytest.param(
            OPENAI,
            {"model": "m", "messages": [{"role": ["user"], "content": "hi"}]},
            "invalid_request_error",
            id="openai-role-list",
        ),
        pytest.param(
            GEMINI,
            {"contents": [{"role": "user", "parts": [{"text": 5}]}]},
            "INVALID_ARGUMENT",
            id="gemini-text-int",
        ),
        pytest.param(
            ANTHROPIC,
            {
                "model": "m",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": [{"type": "text", "text": None}]}],
            },
            "invalid_request_error",
            id="anthropic-text-null",
        ),
    ],
)
async def test_wrongly_typed_fields_are_the_providers_400(path: str, body: dict, kind: str) -> None:
    async with running() as sim, aiohttp.ClientSession() as session:
        status, headers, raw = await post(session, sim, path, body)
        stats = await get_json(session, sim, "/_sim/stats")
    assert status == 400  # not aiohttp's plain-text 500, which every client retries
    assert headers["Content-Type"] == "application/json"
    assert _shape(path, raw) == kind
    assert stats["by_status"] == {"400": 1}
    assert stats["received"] == stats["answered"] == 1


@pytest.mark.parametrize(
    ("path", "status", "kind"),
    [
        (OPENAI, 413, "invalid_request_error"),
        (ANTHROPIC, 413, "request_too_large"),
        (GEMINI, 400, "INVALID_ARGUMENT"),  # Google refuses an over-size payload as a 400
    ],
)
async def test_a_body_over_the_limit_is_the_providers_json_error(
    path: str, status: int, kind: str
) -> None:
    body = body_for(path, "word " * 400)  # about 2 kB
    async with running(max_body_bytes=1000) as sim, aiohttp.ClientSession() as session:
        got, headers, raw = await post(session, sim, path, body)
        stats = await get_json(session, sim, "/_sim/stats")
        ok, _, _ = await post(session, sim, path)  # a small body still fits
    assert got == status
    assert headers["Content-Type"] == "application/json"
    assert _shape(path, raw) == kind
    if path != ANTHROPIC:  # Anthropic's real message names no limit
        assert "1000 bytes" in orjson.loads(raw)["error"]["message"]
    assert stats["by_status"] == {str(status): 1}
    assert ok == 200


def test_max_body_bytes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_body_bytes"):
        SimConfig(max_body_bytes=0)
