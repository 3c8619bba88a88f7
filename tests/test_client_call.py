"""`Client.call` and `Client.map_calls` with the official SDKs, against the simulator.

The real `openai`, `anthropic` and `google-genai` async clients, their own retries off as the
README tells users, run under llmgather's limiter and retries over loopback HTTP: the SDK's
response comes back as `Result.value`, its usage settles the token estimate, a 429 pauses the
shared limiter for the server's Retry-After, a refused key is not retried, and what the caller
sees is llmgather's error, never the SDK's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from anthropic import AsyncAnthropic
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from openai import AsyncOpenAI

import llmgather
from llmgather import Client, Limits, LocalLimiter, RetryPolicy
from llmgather._types import Usage
from llmgather.limits import Cost, Limiter
from llmgather.sim import FaultPlan, RunningSimulator, SimConfig, start_simulator
from tests.fakeclock import FakeClock, settle
from tests.simfixtures import sim_stats
from tests.spylimiter import SpyLimiter

SDKS = ("openai", "anthropic", "gemini")
MAX_TOKENS = 400
KEY = "sk-wrong-KEY-0123456789abcdef"
SDK_ERRORS = (openai.APIError, anthropic.APIError, genai_errors.APIError)

Ask = Callable[..., Awaitable[Any]]
ItemFor = Callable[[str], dict[str, Any]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # google-genai's own session subclasses aiohttp.ClientSession, which aiohttp deprecates
    # (a warning, so an error here); handing it a plain session avoids that.
    async with aiohttp.ClientSession() as own:
        yield own


@contextlib.asynccontextmanager
async def official(
    sdk: str, base_url: str, session: aiohttp.ClientSession, *, key: str = "k"
) -> AsyncIterator[tuple[Ask, ItemFor]]:
    """The SDK's generate method, its own retries off, and the keyword arguments of one call."""
    if sdk == "openai":
        async with AsyncOpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0) as oai:
            yield (
                oai.chat.completions.create,
                lambda prompt: {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": MAX_TOKENS,
                },
            )
    elif sdk == "anthropic":
        async with AsyncAnthropic(base_url=base_url, api_key=key, max_retries=0) as ant:
            yield (
                ant.messages.create,
                lambda prompt: {
                    "model": "claude-3-5-haiku-latest",
                    "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": MAX_TOKENS,
                },
            )
    else:
        options = types.HttpOptions(
            base_url=base_url,
            aiohttp_client=session,
            retry_options=types.HttpRetryOptions(attempts=1),  # no retries of its own
        )
        gemini = genai.Client(api_key=key, http_options=options)
        try:
            yield (
                gemini.aio.models.generate_content,
                lambda prompt: {
                    "model": "gemini-2.0-flash",
                    "contents": prompt,
                    "config": types.GenerateContentConfig(max_output_tokens=MAX_TOKENS),
                },
            )
        finally:
            await gemini.aio.aclose()


RESPONSE_TYPES: dict[str, type] = {
    "openai": openai.types.chat.ChatCompletion,
    "anthropic": anthropic.types.Message,
    "gemini": types.GenerateContentResponse,
}


def usage_in(sdk: str, response: Any) -> Usage:
    """The usage the response reports, read the SDK's own way."""
    if sdk == "openai":
        return Usage(response.usage.prompt_tokens, response.usage.completion_tokens)
    if sdk == "anthropic":
        return Usage(response.usage.input_tokens, response.usage.output_tokens)
    metadata = response.usage_metadata
    return Usage(metadata.prompt_token_count, metadata.candidates_token_count)


def text_in(sdk: str, response: Any) -> str:
    if sdk == "openai":
        return str(response.choices[0].message.content)
    if sdk == "anthropic":
        return "".join(block.text for block in response.content)
    return str(response.text)


def client_for(sim: RunningSimulator, **kwargs: Any) -> Client:
    """A client for running calls: its own provider is never used, so any target will do."""
    return Client("openai:gpt-4o-mini", base_url=sim.base_url + "/v1", api_key="k", **kwargs)


async def collect(results: AsyncIterator[llmgather.Result]) -> list[llmgather.Result]:
    collected = [result async for result in results]
    return sorted(collected, key=lambda result: result.index)


# -- answers: the SDK's response, its usage, and the estimate settled with it -------------------


@pytest.mark.parametrize("sdk", SDKS)
async def test_map_calls_returns_the_sdks_responses_and_settles_with_their_usage(
    sdk: str, session: aiohttp.ClientSession
) -> None:
    spy = SpyLimiter(LocalLimiter(Limits(tpm=1_000_000)))
    assert isinstance(spy, Limiter)
    prompts = [f"Question {i}?" for i in range(4)]
    async with (
        await start_simulator(SimConfig(seed=3)) as sim,
        official(sdk, sim.base_url, session) as (ask, item_for),
        client_for(sim, limiter=spy) as client,
    ):
        results = await collect(client.map_calls(ask, [item_for(p) for p in prompts]))
        single = await client.call(ask, **item_for("One more question?"))

    assert [r.status for r in results] == ["ok"] * len(prompts)
    for result in results:
        assert type(result.value) is RESPONSE_TYPES[sdk]
        assert result.usage == usage_in(sdk, result.value)
        assert result.usage.output_tokens > 0
        assert result.text == text_in(sdk, result.value)
        assert result.attempts == 1
    assert type(single) is RESPONSE_TYPES[sdk]

    # Each permit reserved the default estimate (the prompt, and the call's max_tokens) and
    # was released with the usage the SDK's response reported, not with the estimate.
    assert len(spy.releases) == len(prompts) + 1
    assert all(r.outcome == "ok" for r in spy.releases)
    assert all(r.estimate.output_tokens == MAX_TOKENS for r in spy.releases)
    settled = sorted(repr(r.usage) for r in spy.releases)
    expected = [*(r.usage for r in results), usage_in(sdk, single)]
    assert settled == sorted(repr(usage) for usage in expected)


async def wait_reason(limiter: LocalLimiter, cost: Cost) -> str | None:
    """What holds an acquire of `cost` now: None if it is granted at once (and then given
    back in full), else the budget the limiter names."""
    task = asyncio.ensure_future(limiter.acquire(cost))
    await settle()
    if task.done():
        await limiter.release(task.result(), Usage(0, 0))
        return None
    reason = limiter.statistics().waiting_on
    task.cancel()
    await asyncio.wait((task,))
    return reason


@pytest.mark.parametrize("sdk", SDKS)
async def test_the_tpm_budget_is_left_at_what_the_call_really_used(
    sdk: str, session: aiohttp.ClientSession
) -> None:
    # A limiter whose clock never moves: nothing refills, so what is left of the budget after
    # the call is exactly its capacity less what the call was charged in the end.
    capacity = 1000
    limiter = LocalLimiter(Limits(tpm=60 * capacity, burst_seconds=1.0), clock=FakeClock())
    async with (
        await start_simulator(SimConfig(seed=3)) as sim,
        official(sdk, sim.base_url, session) as (ask, item_for),
        client_for(sim, limiter=limiter) as client,
    ):
        response = await client.call(ask, **item_for("Why do some birds migrate?"))
    used = usage_in(sdk, response).total_tokens
    assert 0 < used < MAX_TOKENS  # the estimate (max_tokens and more) was far above it
    left = capacity - used
    assert await wait_reason(limiter, Cost(requests=0, input_tokens=left)) is None
    assert await wait_reason(limiter, Cost(requests=0, input_tokens=left + 1)) == "tpm"


# -- a 429 with Retry-After pauses the shared limiter -------------------------------------------


@pytest.mark.parametrize("sdk", SDKS)
async def test_a_429_from_an_sdk_call_pauses_the_shared_limiter_for_the_servers_retry_after(
    sdk: str, session: aiohttp.ClientSession
) -> None:
    # Seed 2 draws a 429 for the first request (and for about 3 in 10 after it).
    config = SimConfig(seed=2, faults=FaultPlan.parse("429=0.3"), fault_retry_after_s=1.0)
    spy = SpyLimiter(LocalLimiter(Limits(concurrency=8)))
    async with (
        await start_simulator(config) as sim,
        official(sdk, sim.base_url, session) as (ask, item_for),
        client_for(sim, limiter=spy, retry=RetryPolicy(max_attempts=10)) as client,
    ):
        results = await collect(client.map_calls(ask, [item_for(f"Q{i}?") for i in range(6)]))
        counts = await sim_stats(sim, session)
        http_429 = client.statistics().http_429
        held = client.statistics().http_429_holds
    rate_limited = counts["by_status"].get("429", 0)
    assert rate_limited >= 1
    assert all(r.ok for r in results)
    assert sum(r.attempts for r in results) == counts["received"] == 6 + rate_limited
    # The first answer of all, a 429, paused every sender for exactly the wait the server
    # asked for; later 429s among answers that succeed hold only their own retry (a 429 holds
    # the key only while most of the latest answers are 429s: `limits.refusals`).
    assert spy.penalties[:1] == [1.0] and set(spy.penalties) == {1.0}
    assert spy.statistics().penalties == len(spy.penalties) == held
    assert http_429 == rate_limited


async def test_the_limits_an_sdks_429_announces_reach_the_shared_limiter(
    session: aiohttp.ClientSession,
) -> None:
    # An SDK's answer hides its headers, but its 429 does not: Anthropic's announce the limits.
    config = SimConfig(seed=1, itpm=6000, otpm=12000, latency_ms=50)
    spy = SpyLimiter(LocalLimiter(Limits()))
    prompts = [f"Tell me about topic number {i} " * 3 for i in range(8)]
    async with (
        await start_simulator(config) as sim,
        official("anthropic", sim.base_url, session) as (ask, item_for),
        client_for(sim, limiter=spy) as client,
    ):
        items = [{**item_for(prompt), "max_tokens": 60} for prompt in prompts]
        results = await collect(client.map_calls(ask, items))
        counts = await sim_stats(sim, session)
    assert all(r.ok for r in results)
    assert counts["by_status"].get("429", 0) == len(spy.penalties) > 0
    assert any(a.items() >= {"itpm": 6000, "otpm": 12000}.items() for a in spy.announced)
    assert dict(spy.statistics().learned) == {"itpm": 6000, "otpm": 12000}


# -- a refused key is not retried ----------------------------------------------------------------


@pytest.mark.parametrize("sdk", SDKS)
async def test_a_refused_key_is_sent_once_and_the_other_items_fail_unsent(
    sdk: str, session: aiohttp.ClientSession
) -> None:
    async with (
        await start_simulator(SimConfig(require_key="right")) as sim,
        official(sdk, sim.base_url, session, key=KEY) as (ask, item_for),
        client_for(sim, concurrency=1) as client,
    ):
        results = await collect(client.map_calls(ask, [item_for(f"Q{i}?") for i in range(4)]))
        counts = await sim_stats(sim, session)
    assert counts["received"] == 1
    assert [r.status for r in results] == ["error"] * 4
    assert [r.attempts for r in results] == [1, 0, 0, 0]
    for result in results:
        assert isinstance(result.exception, llmgather.AuthenticationError)
        assert result.error is not None and result.error.type == "AuthenticationError"
        assert KEY not in result.error.message
    # Gemini answers a wrong key with 400 API_KEY_INVALID.
    assert results[0].error is not None
    assert results[0].error.status_code == (400 if sdk == "gemini" else 401)
    assert all("not sent" in r.error.message for r in results[1:] if r.error)
    assert client.limiter.statistics().penalties == 0


# -- the caller's own exceptions ----------------------------------------------------------------


async def test_an_exception_of_the_callers_own_code_is_the_items_error_and_not_retried(
    session: aiohttp.ClientSession,
) -> None:
    calls: Counter[str] = Counter()

    async with (
        await start_simulator(SimConfig(seed=1)) as sim,
        official("openai", sim.base_url, session) as (ask, item_for),
        client_for(sim) as client,
    ):

        async def ask_and_check(prompt: str) -> Any:
            calls[prompt] += 1
            response = await ask(**item_for(prompt))
            if prompt.startswith("bad"):
                raise ValueError(f"no use for the answer to {prompt!r}")
            return response

        prompts = ["good 0", "bad 1", "good 2", "bad 3"]
        results = await collect(client.map_calls(ask_and_check, prompts))
        with pytest.raises(ValueError, match="no use for the answer to 'bad 4'"):
            await client.call(ask_and_check, "bad 4")
        counts = await sim_stats(sim, session)

    assert [r.status for r in results] == ["ok", "error", "ok", "error"]
    for result in (results[1], results[3]):
        assert isinstance(result.exception, ValueError)
        assert result.error is not None and result.error.type == "ValueError"
        assert result.error.message == f"no use for the answer to {prompts[result.index]!r}"
        assert result.attempts == 1
    assert calls == dict.fromkeys([*prompts, "bad 4"], 1)
    assert counts["received"] == 5


# -- what the caller sees is llmgather's error --------------------------------------------------

RAISED = [
    ("429", llmgather.RateLimitError),
    ("500", llmgather.ServerError),
    ("quota", llmgather.QuotaExhaustedError),
]


@pytest.mark.parametrize("sdk", SDKS)
@pytest.mark.parametrize(("fault", "expected"), RAISED, ids=[fault for fault, _ in RAISED])
async def test_call_raises_llmgathers_error_with_nothing_of_the_sdks_attached(
    sdk: str, fault: str, expected: type[llmgather.APIError], session: aiohttp.ClientSession
) -> None:
    config = SimConfig(faults=FaultPlan.parse(f"{fault}=1"), fault_retry_after_s=0.1)
    async with (
        await start_simulator(config) as sim,
        official(sdk, sim.base_url, session) as (ask, item_for),
        client_for(sim, retry=RetryPolicy(max_attempts=1)) as client,
    ):
        with pytest.raises(llmgather.APIError) as raised:
            await client.call(ask, **item_for("Why?"))
    error = raised.value
    assert type(error) is expected
    assert not isinstance(error, SDK_ERRORS)
    assert error.__cause__ is None and error.__context__ is None


@pytest.mark.parametrize("sdk", SDKS)
async def test_call_raises_an_authentication_error_for_a_refused_key(
    sdk: str, session: aiohttp.ClientSession
) -> None:
    async with (
        await start_simulator(SimConfig(require_key="right")) as sim,
        official(sdk, sim.base_url, session, key=KEY) as (ask, item_for),
        client_for(sim) as client,
    ):
        with pytest.raises(llmgather.AuthenticationError) as raised:
            await client.call(ask, **item_for("Why?"))
        counts = await sim_stats(sim, session)
    error = raised.value
    assert not isinstance(error, SDK_ERRORS)
    assert error.__cause__ is None and error.__context__ is None
    assert KEY not in str(error)
    assert counts["received"] == 1


async def test_map_calls_can_pass_a_dict_item_whole() -> None:
    seen: list[object] = []

    async def invoke(value: object) -> str:  # as a LangChain runnable's ainvoke takes its input
        seen.append(value)
        return "done"

    async with Client("sim:gpt-4o-mini") as client:
        results = [r async for r in client.map_calls(invoke, [{"topic": "birds"}], unpack=False)]
    assert [r.value for r in results] == ["done"]
    assert seen == [{"topic": "birds"}]
