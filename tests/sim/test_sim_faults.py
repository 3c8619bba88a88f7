"""Injected faults as a raw HTTP client sees them on the wire."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter

import aiohttp
import orjson
import pytest

from llmgather.sim import RunningSimulator
from llmgather.sim.faults import FaultPicker, FaultPlan
from tests.simfixtures import (
    ANTHROPIC,
    GEMINI,
    GEMINI_STREAM,
    HEADERS,
    OPENAI,
    body_for,
    get_json,
    post,
    running,
    sse_data,
)

ALL_PATHS = (OPENAI, ANTHROPIC, GEMINI)


def test_parse_accepts_a_full_spec() -> None:
    plan = FaultPlan.parse(
        "500=0.1,503=0.05,429=0.05,529=0.02,reset=0.02,stall=0.01,malformed=0.01,cut=0.01"
    )
    assert dict(plan.rates)["500"] == 0.1 and len(plan.rates) == 8
    assert not FaultPlan.parse("") and not FaultPlan.parse(None)


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("500=0.1,boom=0.1", "boom=0.1"),
        ("500", "'500'"),
        ("reset=x", "reset=x"),
        ("cut=1.5", "cut=1.5"),
        ("500=0.6,503=0.6", "more than 1"),
    ],
)
def test_parse_names_the_bad_piece(spec: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        FaultPlan.parse(spec)


def test_picker_is_seeded_and_follows_the_rates() -> None:
    plan = FaultPlan.parse("500=0.2,reset=0.1")
    first = [FaultPicker(plan, 7).pick() for _ in range(1)]
    picker_a, picker_b = FaultPicker(plan, 7), FaultPicker(plan, 7)
    draws = [picker_a.pick() for _ in range(5000)]
    assert draws == [picker_b.pick() for _ in range(5000)]
    counts = Counter(draws)
    assert 800 < counts["500"] < 1200 and 350 < counts["reset"] < 650
    assert first[0] == draws[0]


@pytest.mark.parametrize("path", ALL_PATHS)
async def test_reset_drops_the_connection_without_a_response(path: str) -> None:
    async with running(faults="reset=1") as sim, aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await post(session, sim, path)
        stats = await get_json(session, sim, "/_sim/stats")
    assert stats["faults"] == {"reset": 1}
    assert stats["received"] == 1 and stats["answered"] == 0 and stats["by_status"] == {}


@pytest.mark.parametrize(
    ("path", "check"),
    [
        (OPENAI, lambda e: e["error"]["type"] == "server_error"),
        (ANTHROPIC, lambda e: e["type"] == "error" and e["error"]["type"] == "api_error"),
        (GEMINI, lambda e: e["error"]["status"] == "INTERNAL" and e["error"]["code"] == 500),
    ],
)
async def test_500_in_each_providers_shape(path: str, check) -> None:
    async with running(faults="500=1") as sim, aiohttp.ClientSession() as session:
        status, _, raw = await post(session, sim, path)
    assert status == 500 and check(orjson.loads(raw))


async def test_injected_429_carries_the_configured_retry_hint() -> None:
    async with running(faults="429=1", fault_retry_after_s=2.5) as sim:
        async with aiohttp.ClientSession() as session:
            status, headers, raw = await post(session, sim, OPENAI)
            g_status, _, g_raw = await post(session, sim, GEMINI)
            a_status, a_headers, _ = await post(session, sim, ANTHROPIC)
    assert status == 429 and headers["retry-after"] == "3" and headers["retry-after-ms"] == "2500"
    assert orjson.loads(raw)["error"]["code"] == "rate_limit_exceeded"
    assert g_status == 429
    retry = orjson.loads(g_raw)["error"]["details"][-1]
    assert retry["retryDelay"] == "3s"
    assert a_status == 429 and a_headers["retry-after"] == "3"


@pytest.mark.parametrize("path", ALL_PATHS)
async def test_malformed_plain_body_does_not_parse(path: str) -> None:
    async with running(faults="malformed=1") as sim, aiohttp.ClientSession() as session:
        status, headers, raw = await post(session, sim, path)
    assert status == 200 and headers["Content-Type"] == "application/json"
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)


@pytest.mark.parametrize("path", [OPENAI, ANTHROPIC, GEMINI_STREAM])
async def test_malformed_stream_has_an_event_that_does_not_parse(path: str) -> None:
    async with running(faults="malformed=1") as sim, aiohttp.ClientSession() as session:
        status, _, raw = await post(session, sim, path, body_for(path, stream=True))
    assert status == 200
    payloads = sse_data(raw)
    orjson.loads(payloads[0])  # the stream starts well
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(payloads[-1])


@pytest.mark.parametrize("path", ALL_PATHS)
async def test_cut_plain_body_is_shorter_than_its_content_length(path: str) -> None:
    async with running(faults="cut=1") as sim, aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientPayloadError):
            await post(session, sim, path)


async def test_cut_streams_end_cleanly_without_their_terminal_event() -> None:
    async with running(faults="cut=1") as sim, aiohttp.ClientSession() as session:
        _, _, openai_raw = await post(session, sim, OPENAI, body_for(OPENAI, stream=True))
        _, _, claude_raw = await post(session, sim, ANTHROPIC, body_for(ANTHROPIC, stream=True))
        _, _, gemini_raw = await post(session, sim, GEMINI_STREAM, body_for(GEMINI_STREAM))
    openai_events = sse_data(openai_raw)
    assert openai_events and "[DONE]" not in openai_events
    assert all(orjson.loads(e)["choices"][0]["finish_reason"] is None for e in openai_events)
    assert any(orjson.loads(e)["choices"][0]["delta"].get("content") for e in openai_events)
    claude_types = [orjson.loads(e)["type"] for e in sse_data(claude_raw)]
    assert "content_block_delta" in claude_types
    assert "message_stop" not in claude_types and "message_delta" not in claude_types
    gemini_events = [orjson.loads(e) for e in sse_data(gemini_raw)]
    assert gemini_events
    assert all("finishReason" not in e["candidates"][0] for e in gemini_events)


async def test_done_early_streams_end_with_their_end_event_but_no_finish() -> None:
    # As llama-cpp-python's server ends an interrupted stream: `data: [DONE]` and no
    # finish_reason (Anthropic: message_stop with no message_delta; Gemini, which has no
    # end event, as cut). A plain answer is left whole.
    async with running(faults="done_early=1") as sim, aiohttp.ClientSession() as session:
        _, _, openai_raw = await post(session, sim, OPENAI, body_for(OPENAI, stream=True))
        _, _, claude_raw = await post(session, sim, ANTHROPIC, body_for(ANTHROPIC, stream=True))
        _, _, gemini_raw = await post(session, sim, GEMINI_STREAM, body_for(GEMINI_STREAM))
        status, _, plain = await post(session, sim, OPENAI)
        stats = await get_json(session, sim, "/_sim/stats")
    *chunks, done = sse_data(openai_raw)
    assert done == "[DONE]"
    assert any(orjson.loads(e)["choices"][0]["delta"].get("content") for e in chunks)
    assert all(orjson.loads(e)["choices"][0]["finish_reason"] is None for e in chunks)
    claude_types = [orjson.loads(e)["type"] for e in sse_data(claude_raw)]
    assert claude_types[-1] == "message_stop" and "content_block_delta" in claude_types
    assert "message_delta" not in claude_types
    gemini_events = [orjson.loads(e) for e in sse_data(gemini_raw)]
    assert gemini_events
    assert all("finishReason" not in e["candidates"][0] for e in gemini_events)
    assert status == 200 and orjson.loads(plain)["choices"][0]["finish_reason"] == "stop"
    assert stats["faults"] == {"done_early": 4}


def test_the_sim_help_names_done_early() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "llmgather", "sim", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert "done_early" in shown and "[DONE]" in shown


async def test_stall_outlasts_a_short_client_timeout() -> None:
    async with running(faults="stall=1", stall_s=5) as sim, aiohttp.ClientSession() as session:
        with pytest.raises(asyncio.TimeoutError):
            await post(session, sim, OPENAI, timeout=aiohttp.ClientTimeout(total=0.2))
        await asyncio.sleep(0.05)  # the hang-up reaches the server and frees the handler
        stats = await get_json(session, sim, "/_sim/stats")
    assert stats["faults"] == {"stall": 1} and stats["in_flight"] == 0


async def test_a_short_stall_then_answers_normally() -> None:
    loop = asyncio.get_running_loop()
    async with running(faults="stall=1", stall_s=0.15) as sim, aiohttp.ClientSession() as session:
        started = loop.time()
        status, _, raw = await post(session, sim, ANTHROPIC)
        elapsed = loop.time() - started
    assert status == 200 and orjson.loads(raw)["type"] == "message"
    assert elapsed >= 0.15


async def test_close_does_not_wait_for_a_stall() -> None:
    loop = asyncio.get_running_loop()
    async with running(faults="stall=1", stall_s=30) as sim, aiohttp.ClientSession() as session:
        pending = asyncio.ensure_future(post(session, sim, OPENAI))
        await asyncio.sleep(0.1)
        started = loop.time()
        await sim.close()
        assert loop.time() - started < 1.5
        status, _, _ = await pending  # the stall ends at shutdown and the answer goes out
    assert status == 200


def test_preempt_is_drawn_apart_from_the_exclusive_faults() -> None:
    # It combines with a full share of other faults, and leaves their draws unchanged.
    plan = FaultPlan.parse("500=1,preempt=1")
    assert dict(plan.rates) == {"500": 1.0, "preempt": 1.0}
    with_preempt, without = (
        FaultPicker(FaultPlan.parse("500=0.3,preempt=0.5"), 4),
        FaultPicker(FaultPlan.parse("500=0.3"), 4),
    )
    draws = [(with_preempt.pick(), with_preempt.preempts()) for _ in range(2000)]
    assert [fault for fault, _ in draws] == [without.pick() for _ in range(2000)]
    assert 850 < sum(preempts for _, preempts in draws) < 1150
    assert not without.preempts()
    with pytest.raises(ValueError, match=r"preempt=1\.5"):
        FaultPlan.parse("preempt=1.5")


async def _open_stream(
    session: aiohttp.ClientSession, sim: RunningSimulator, path: str
) -> aiohttp.ClientResponse:
    return await session.post(
        sim.base_url + path,
        data=orjson.dumps(body_for(path, stream=True)),
        headers={"Content-Type": "application/json", **HEADERS[path]},
    )


@pytest.mark.parametrize(
    ("path", "ended"),
    [
        (OPENAI, lambda events: "[DONE]" in events),
        (ANTHROPIC, lambda events: any('"message_stop"' in e for e in events)),
        (GEMINI_STREAM, lambda events: any("finishReason" in e for e in events)),
    ],
)
async def test_preempt_cuts_the_running_stream_when_a_request_arrives(path: str, ended) -> None:
    # llama-cpp-python's server: a new request ends the stream in progress, which then
    # closes cleanly without its terminal event, as a `cut` stream does.
    async with (
        running(faults="preempt=1", latency_ms=300, latency_jitter=0) as sim,
        aiohttp.ClientSession() as session,
    ):
        first = await _open_stream(session, sim, path)
        async with first:
            assert first.status == 200
            received = await first.content.readany()  # the stream is under way
            status, _, raw = await post(session, sim, OPENAI)  # the next request arrives
            received += await first.read()
        stats = await get_json(session, sim, "/_sim/stats")
    assert status == 200 and orjson.loads(raw)["choices"][0]["finish_reason"] == "stop"
    events = sse_data(received)
    assert not ended(events)
    for event in events:
        if event != "[DONE]":
            orjson.loads(event)  # what was sent is whole: only the end is missing
    assert stats["faults"] == {"preempt": 2, "preempted": 1}


async def test_without_preempt_a_stream_outlives_a_new_request() -> None:
    async with (
        running(latency_ms=300, latency_jitter=0) as sim,
        aiohttp.ClientSession() as session,
    ):
        first = await _open_stream(session, sim, OPENAI)
        async with first:
            received = await first.content.readany()
            await post(session, sim, OPENAI)
            received += await first.read()
    assert sse_data(received)[-1] == "[DONE]"


async def test_preempt_leaves_plain_answers_alone() -> None:
    async with (
        running(faults="preempt=1", latency_ms=300, latency_jitter=0) as sim,
        aiohttp.ClientSession() as session,
    ):
        pending = asyncio.ensure_future(post(session, sim, ANTHROPIC))
        await asyncio.sleep(0.05)
        await post(session, sim, OPENAI)
        status, _, raw = await pending
    assert status == 200 and orjson.loads(raw)["stop_reason"] == "end_turn"
