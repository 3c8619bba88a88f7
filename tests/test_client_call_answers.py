"""`Client.call` and `Client.map_calls` with the official SDKs: what a successful answer tells
the limiter, a stream that holds its permit until read, and the caller's own exception kept as
raised. The real SDKs against the simulator over loopback HTTP, as in `test_client_call`.
"""

from __future__ import annotations

import asyncio
import gc
import traceback
from collections.abc import AsyncIterator
from types import CodeType, TracebackType
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from llmgather import Limits, LocalLimiter
from llmgather.limits import Cost
from llmgather.sim import FaultPlan, SimConfig, start_simulator
from tests.fakeclock import settle
from tests.simfixtures import sim_stats
from tests.spylimiter import SpyLimiter
from tests.test_client_call import (
    RESPONSE_TYPES,
    SDKS,
    client_for,
    collect,
    official,
    wait_reason,
)

RPM, TPM = 600, 100_000


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as own:
        yield own


# -- a successful answer's headers reach the limiter ---------------------------------------------

ANNOUNCING = ("openai", "anthropic")  # Gemini announces no limits on its answers


@pytest.mark.parametrize("sdk", ANNOUNCING)
async def test_the_limits_an_sdks_successful_answers_announce_reach_the_limiter(
    sdk: str, session: aiohttp.ClientSession
) -> None:
    # The SDK's own method, as the README passes it: nothing to change for the headers to count.
    spy = SpyLimiter(LocalLimiter(Limits()))
    async with (
        await start_simulator(SimConfig(seed=1, rpm=RPM, tpm=TPM)) as sim,
        official(sdk, sim.base_url, session) as (ask, item_for),
        client_for(sim, limiter=spy) as client,
    ):
        results = await collect(client.map_calls(ask, [item_for(f"Q{i}?") for i in range(3)]))
        single = await client.call(ask, **item_for("One more?"))
        counts = await sim_stats(sim, session)
    assert counts["by_status"] == {"200": 4}  # learned from 200s, not from any 429
    assert [r.status for r in results] == ["ok"] * 3
    # What the caller gets is still what the SDK's method returns, not its raw answer.
    assert all(type(r.value) is RESPONSE_TYPES[sdk] for r in results)
    assert type(single) is RESPONSE_TYPES[sdk]
    assert len(spy.announced) == 4
    assert spy.statistics().learned["rpm"] == RPM


@pytest.mark.parametrize("sdk", ANNOUNCING)
async def test_a_callable_that_returns_the_sdks_raw_answer_gets_it_parsed_and_its_limits_learned(
    sdk: str, session: aiohttp.ClientSession
) -> None:
    # A lambda cannot be called in the raw form for the caller: they write it so.
    spy = SpyLimiter(LocalLimiter(Limits()))
    async with (
        await start_simulator(SimConfig(seed=1, rpm=RPM, tpm=TPM)) as sim,
        official(sdk, sim.base_url, session) as (ask, item_for),
        client_for(sim, limiter=spy) as client,
    ):
        raw = ask.__self__.with_raw_response  # type: ignore[attr-defined]
        item = item_for("Why?")
        answer = await client.call(lambda: raw.create(**item))
    assert type(answer) is RESPONSE_TYPES[sdk]
    assert spy.statistics().learned["rpm"] == RPM


# -- a stream holds its permit until it is read --------------------------------------------------


def stream_call(sdk: str, ask: Any, item: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The SDK's streaming call and its keyword arguments."""
    if sdk == "gemini":
        return ask.__self__.generate_content_stream, item
    if sdk == "openai":
        return ask, {**item, "stream": True, "stream_options": {"include_usage": True}}
    return ask, {**item, "stream": True}


@pytest.mark.parametrize("sdk", SDKS)
async def test_an_sdk_stream_holds_its_slot_until_it_is_read_to_its_end(
    sdk: str, session: aiohttp.ClientSession
) -> None:
    spy = SpyLimiter(LocalLimiter(Limits(concurrency=1)))
    async with (
        await start_simulator(SimConfig(seed=1)) as sim,
        official(sdk, sim.base_url, session) as (ask, item_for),
        client_for(sim, limiter=spy) as client,
    ):
        fn, kwargs = stream_call(sdk, ask, item_for("Why do birds migrate?"))
        stream = await client.call(fn, **kwargs)
        # Returned, but the answer is still on the wire: its one slot is still taken.
        assert spy.statistics().in_flight == 1
        assert await wait_reason(spy.inner, Cost(requests=0)) == "concurrency"
        assert spy.releases == []
        events = [event async for event in stream]
        assert events
        assert spy.statistics().in_flight == 0
        assert await wait_reason(spy.inner, Cost(requests=0)) is None
    [release] = spy.releases
    assert release.outcome == "ok"
    # Settled with what the stream's events reported, not with the estimate.
    assert release.usage is not None and 0 < release.usage.output_tokens < 400


@pytest.mark.parametrize("sdk", SDKS)
async def test_an_sdk_stream_closed_or_dropped_unread_gives_its_slot_back(
    sdk: str, session: aiohttp.ClientSession
) -> None:
    spy = SpyLimiter(LocalLimiter(Limits(concurrency=1)))
    async with (
        await start_simulator(SimConfig(seed=1)) as sim,
        official(sdk, sim.base_url, session) as (ask, item_for),
        client_for(sim, limiter=spy) as client,
    ):
        fn, kwargs = stream_call(sdk, ask, item_for("Why?"))
        stream = await client.call(fn, **kwargs)
        await anext(stream)
        await stream.aclose() if sdk == "gemini" else await stream.close()
        assert spy.statistics().in_flight == 0

        async with await client.call(fn, **kwargs) as stream:
            assert spy.statistics().in_flight == 1
        assert spy.statistics().in_flight == 0

        stream = await client.call(fn, **kwargs)
        assert spy.statistics().in_flight == 1
        del stream
        gc.collect()
        await settle()
        assert spy.statistics().in_flight == 0
        # The slot is free for the next call, which the limiter lets through at once.
        answer = await asyncio.wait_for(client.call(ask, **item_for("And now?")), 10)
    assert type(answer) is RESPONSE_TYPES[sdk]
    assert len(spy.releases) == 4


# -- the callable's own exception keeps its traceback --------------------------------------------


def frames(tb: TracebackType | None) -> list[CodeType]:
    return [frame.f_code for frame, _ in traceback.walk_tb(tb)]


def check_answer(answer: Any) -> None:
    raise ValueError(f"no use for {type(answer).__name__}")


async def test_the_callables_own_exception_keeps_its_traceback_and_its_chain(
    session: aiohttp.ClientSession,
) -> None:
    async with (
        await start_simulator(SimConfig(seed=1)) as sim,
        official("openai", sim.base_url, session) as (ask, item_for),
        client_for(sim) as client,
    ):

        async def ask_and_check(prompt: str) -> Any:
            answer = await ask(**item_for(prompt))
            try:
                check_answer(answer)
            except ValueError as error:
                raise RuntimeError(f"{prompt}: unusable") from error

        with pytest.raises(RuntimeError, match="Q0: unusable") as raised:
            await client.call(ask_and_check, "Q0")
        [result] = await collect(client.map_calls(ask_and_check, ["Q1"]))

    for error in (raised.value, result.exception):
        assert isinstance(error, RuntimeError)
        # Raised from the callable: its frame is in the traceback, as the chained one's are.
        assert ask_and_check.__code__ in frames(error.__traceback__)
        cause = error.__cause__
        assert isinstance(cause, ValueError) and str(cause) == "no use for ChatCompletion"
        assert check_answer.__code__ in frames(cause.__traceback__)
    # As though the caller had awaited the callable itself: llmgather's machinery is left out.
    assert frames(raised.value.__traceback__)[-1] is ask_and_check.__code__
    assert frames(result.exception.__traceback__) == [ask_and_check.__code__]


async def test_an_sdks_error_still_carries_no_frame_of_the_sdks(
    session: aiohttp.ClientSession,
) -> None:
    async with (
        await start_simulator(SimConfig(require_key="right")) as sim,
        official("anthropic", sim.base_url, session, key="wrong") as (ask, item_for),
        client_for(sim) as client,
    ):
        [result] = await collect(client.map_calls(ask, [item_for("Why?")]))
    assert result.exception is not None and not isinstance(result.exception, anthropic.APIError)
    assert result.exception.__traceback__ is None and result.exception.__context__ is None
    assert not isinstance(result.exception, openai.APIError)


@pytest.mark.parametrize("sdk", SDKS)
async def test_an_sdk_stream_cut_off_mid_answer_is_given_back_as_truncated(
    sdk: str, session: aiohttp.ClientSession
) -> None:
    # Every stream the simulator sends stops halfway, without its terminal event (the SDKs end
    # such a stream quietly): the limiter hears a cut stream, which lowers its concurrency cap
    # while they keep coming, not a clean answer.
    spy = SpyLimiter(LocalLimiter(Limits(concurrency=1)))
    async with (
        await start_simulator(SimConfig(seed=1, faults=FaultPlan.parse("cut=1"))) as sim,
        official(sdk, sim.base_url, session) as (ask, item_for),
        client_for(sim, limiter=spy) as client,
    ):
        fn, kwargs = stream_call(sdk, ask, item_for("Why do birds migrate?"))
        stream = await client.call(fn, **kwargs)
        assert [event async for event in stream]
    [release] = spy.releases
    assert release.outcome == "truncated"
