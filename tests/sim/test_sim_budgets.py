"""The simulator's newer budgets: requests per day, and input and output tokens per minute.

The arithmetic is checked on a fake clock; the 429s over loopback HTTP, judged by the official
SDKs (which must raise their RateLimitError with the server's retry hint) and by llmgather's own
adapters (which must tell a per-day quota from a wait).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import AsyncIterator

import aiohttp
import anthropic
import openai
import orjson
import pytest
from anthropic import AsyncAnthropic
from google import genai
from google.genai import errors, types
from openai import AsyncOpenAI

from llmgather._errors import BadRequestError, QuotaExhaustedError, RateLimitError
from llmgather.providers.anthropic import AnthropicProvider
from llmgather.providers.gemini import GeminiProvider
from llmgather.providers.openai import OpenAIProvider
from llmgather.sim import SimConfig
from llmgather.sim.limits import ServerLimits
from tests.simfixtures import ANTHROPIC, GEMINI, OPENAI, PROMPT, body_for, post, running

MESSAGES = [{"role": "user", "content": PROMPT}]
DAY = 86_400.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as own:
        yield own


def openai_client(base_url: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=base_url + "/v1", api_key="k", max_retries=0)


def anthropic_client(base_url: str) -> AsyncAnthropic:
    return AsyncAnthropic(base_url=base_url, api_key="k", max_retries=0)


def gemini_client(base_url: str, session: aiohttp.ClientSession) -> genai.Client:
    options = types.HttpOptions(
        base_url=base_url,
        aiohttp_client=session,
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    return genai.Client(api_key="k", http_options=options)


# --- the arithmetic, on a fake clock ------------------------------------------------------


def test_a_days_budget_can_be_spent_at_once_then_refills_evenly() -> None:
    clock = Clock()
    limits = ServerLimits(rpd=4, clock=clock)
    assert all(limits.admit(10, 10) is None for _ in range(4))
    refusal = limits.admit(10, 10)
    assert refusal is not None and refusal.budget.name == "rpd" and not refusal.too_large
    assert refusal.retry_after_s == pytest.approx(DAY / 4)  # one request's share of the day
    assert (refusal.budget.limit, refusal.budget.used, refusal.budget.remaining) == (4, 4, 0)
    assert refusal.budget.reset_s == pytest.approx(DAY)
    clock.now = DAY / 4 - 1
    assert limits.admit(10, 10) is not None
    clock.now = DAY / 4 + 0.001  # (a hair past: the refill's float round-off)
    assert limits.admit(10, 10) is None


def test_the_day_can_be_shortened_for_tests() -> None:
    clock = Clock()
    limits = ServerLimits(rpd=2, day_seconds=10.0, clock=clock)
    assert limits.admit(1, 1) is None and limits.admit(1, 1) is None
    refusal = limits.admit(1, 1)
    assert refusal is not None and refusal.retry_after_s == pytest.approx(5.0)
    clock.now = 5.0
    assert limits.admit(1, 1) is None


def test_the_longest_wait_names_the_binding_limit() -> None:
    # Both request budgets are empty: the day's wait is the one that lets the request in.
    clock = Clock()
    limits = ServerLimits(rpm=60, rpd=1, clock=clock)
    assert limits.admit(1, 1) is None
    refusal = limits.admit(1, 1)
    assert refusal is not None and refusal.budget.name == "rpd"
    assert refusal.retry_after_s == pytest.approx(DAY)
    # The minute's budget took nothing for the refused request.
    rpm = refusal.state.get("rpm")
    assert rpm is not None and rpm.remaining == 59


def test_input_tokens_are_counted_at_admission_and_never_settled() -> None:
    clock = Clock()
    limits = ServerLimits(itpm=100, burst_seconds=60, clock=clock)  # the whole minute at once
    assert limits.admit(60, 5000) is None  # output tokens do not count against ITPM
    refusal = limits.admit(50, 0)
    assert refusal is not None and refusal.budget.name == "itpm" and refusal.requested == 50
    assert refusal.retry_after_s == pytest.approx(6.0)  # 10 short, at 100 tokens a minute
    limits.settle(estimated_output=5000, actual_output=0)
    assert limits.admit(50, 0) is not None  # settling output gives no input back


def test_output_tokens_are_reserved_from_max_tokens_and_settled_to_the_real_output() -> None:
    clock = Clock()
    limits = ServerLimits(otpm=1000, burst_seconds=60, clock=clock)
    assert limits.admit(5000, 900) is None  # input tokens do not count against OTPM
    refusal = limits.admit(10, 900)
    assert refusal is not None and refusal.budget.name == "otpm"
    state = refusal.state.get("otpm")
    assert state is not None and state.remaining == 100
    limits.settle(estimated_output=900, actual_output=50)
    assert limits.admit(10, 900) is None
    state = limits.state().get("otpm")
    assert state is not None and state.remaining == 50  # 1000 less the real 50 and 900 more


def test_a_request_over_a_whole_minutes_input_or_output_limit_is_too_large() -> None:
    limits = ServerLimits(itpm=100, otpm=100, clock=Clock())
    over_input = limits.admit(101, 1)
    over_output = limits.admit(1, 101)
    assert over_input is not None and over_input.too_large and over_input.budget.name == "itpm"
    assert over_output is not None and over_output.too_large
    assert over_output.budget.name == "otpm" and over_output.requested == 101


def test_most_restrictive_is_the_budget_with_the_least_remaining() -> None:
    limits = ServerLimits(tpm=10_000, itpm=8_000, otpm=1_000, burst_seconds=60, clock=Clock())
    state = limits.state()
    tightest = state.most_restrictive("tpm", "itpm", "otpm")
    assert tightest is not None and tightest.name == "otpm"
    assert limits.admit(7_900, 10) is None
    tightest = limits.state().most_restrictive("tpm", "itpm", "otpm")
    assert tightest is not None and (tightest.name, tightest.remaining) == ("itpm", 100)
    assert state.most_restrictive("rpm") is None


@pytest.mark.parametrize("name", ["rpd", "itpm", "otpm"])
def test_config_refuses_a_limit_that_is_not_positive(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        SimConfig(**{name: 0})
    with pytest.raises(ValueError, match="day_seconds"):
        SimConfig(day_seconds=0)


# --- requests per day over HTTP, in each provider's shape ---------------------------------


async def test_openai_rpd_429_is_its_own_body_and_headers() -> None:
    async with running(rpd=1) as sim, openai_client(sim.base_url) as oai:
        ok = await oai.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
        with pytest.raises(openai.RateLimitError) as caught:
            await oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    # As the real API reports an account's per-day limit: in the requests headers.
    assert ok.headers["x-ratelimit-limit-requests"] == "1"
    assert ok.headers["x-ratelimit-remaining-requests"] == "0"
    error = caught.value
    headers = error.response.headers
    assert error.status_code == 429
    assert headers["retry-after"] == "86400"
    assert 86_399_000 < int(headers["retry-after-ms"]) <= 86_400_000
    assert headers["x-ratelimit-limit-requests"] == "1"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert re.fullmatch(r"23h59m[\d.]+s|24h0m0s", headers["x-ratelimit-reset-requests"])
    assert error.body == {
        "message": error.body["message"],
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert re.fullmatch(
        r"Rate limit reached for gpt-4o-mini in organization org-\S+ on requests per day "
        r"\(RPD\): Limit 1, Used 1, Requested 1\. Please try again in (23h59m[\d.]+|24h0m0)s\. "
        r"Visit "
        r"https://platform\.openai\.com/account/rate-limits to learn more\.",
        error.body["message"],
    )


async def test_openai_rpd_refills_within_a_shortened_day(session: aiohttp.ClientSession) -> None:
    # 2 a "day" of 0.4 s: the day's two at once, then one more every 0.2 s.
    async with running(rpd=2, day_seconds=0.4) as sim:
        first = [await post(session, sim, OPENAI) for _ in range(3)]
        assert [status for status, _, _ in first] == [200, 200, 429]
        wait_ms = int(first[2][1]["retry-after-ms"])
        assert 0 < wait_ms <= 200 and first[2][1]["retry-after"] == "1"
        await asyncio.sleep(wait_ms / 1000 + 0.01)
        status, headers, _ = await post(session, sim, OPENAI)
    assert status == 200
    assert headers["x-ratelimit-limit-requests"] == "2"


async def test_gemini_rpd_429_is_a_per_day_quota_failure(
    session: aiohttp.ClientSession,
) -> None:
    async with running(rpd=1) as sim:
        gemini = gemini_client(sim.base_url, session)
        await gemini.aio.models.generate_content(model="gemini-2.0-flash", contents=PROMPT)
        with pytest.raises(errors.ClientError) as caught:
            await gemini.aio.models.generate_content(model="gemini-2.0-flash", contents=PROMPT)
        await gemini.aio.aclose()
        status, headers, raw = await post(session, sim, GEMINI)
    error = caught.value
    assert error.code == 429 and error.status == "RESOURCE_EXHAUSTED"
    details = error.details["error"]["details"]
    failure = next(d for d in details if d["@type"].endswith("google.rpc.QuotaFailure"))
    assert failure["violations"] == [
        {
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
            "quotaDimensions": {"location": "global", "model": "gemini-2.0-flash"},
            "quotaValue": "1",
        }
    ]
    retry = next(d for d in details if d["@type"].endswith("google.rpc.RetryInfo"))
    assert retry["retryDelay"] == "86400s"
    assert (
        "generate_content_free_tier_requests, limit: 1, model: gemini-2.0-flash"
        in (error.details["error"]["message"])
    )
    # llmgather's adapter reads it as a daily quota: not retried within the job.
    assert status == 429
    assert type(GeminiProvider(api_key="k").parse_error(status, headers, raw)) is (
        QuotaExhaustedError
    )


async def test_anthropic_rpd_429_is_its_rate_limit_error() -> None:
    async with running(rpd=1) as sim, anthropic_client(sim.base_url) as claude:
        ok = await claude.messages.with_raw_response.create(
            model="claude-sim", max_tokens=64, messages=MESSAGES
        )
        with pytest.raises(anthropic.RateLimitError) as caught:
            await claude.messages.create(model="claude-sim", max_tokens=64, messages=MESSAGES)
    assert ok.headers["anthropic-ratelimit-requests-limit"] == "1"
    assert ok.headers["anthropic-ratelimit-requests-remaining"] == "0"
    error = caught.value
    assert error.status_code == 429 and error.response.headers["retry-after"] == "86400"
    assert isinstance(error.body, dict)
    assert error.body["type"] == "error" and error.body["error"]["type"] == "rate_limit_error"
    assert "of 1 requests per day" in error.body["error"]["message"]


# --- Anthropic's input and output tokens per minute ---------------------------------------


def _reset_in(value: str) -> float:
    moment = dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return (moment - dt.datetime.now(dt.UTC)).total_seconds()


async def test_anthropic_answers_announce_input_and_output_limits() -> None:
    # Whole-minute buckets, so the numbers are the minute's: 6,000 in, 600 out.
    async with (
        running(itpm=6000, otpm=600, burst_seconds=60) as sim,
        anthropic_client(sim.base_url) as claude,
    ):
        raw = await claude.messages.with_raw_response.create(
            model="claude-sim", max_tokens=500, messages=MESSAGES
        )
    message = await raw.parse()
    headers = raw.headers
    input_tokens = message.usage.input_tokens
    assert headers["anthropic-ratelimit-input-tokens-limit"] == "6000"
    assert int(headers["anthropic-ratelimit-input-tokens-remaining"]) == 6000 - input_tokens
    assert headers["anthropic-ratelimit-output-tokens-limit"] == "600"
    # max_tokens is reserved while the answer is sent.
    assert headers["anthropic-ratelimit-output-tokens-remaining"] == "100"
    # The combined headers are the most restrictive of the two: the output limit here.
    assert headers["anthropic-ratelimit-tokens-limit"] == "600"
    assert headers["anthropic-ratelimit-tokens-remaining"] == "100"
    for name in ("input-tokens", "output-tokens", "tokens"):
        assert -1 < _reset_in(headers[f"anthropic-ratelimit-{name}-reset"]) <= 61
    assert "anthropic-ratelimit-requests-limit" not in headers


async def test_anthropic_otpm_reserves_max_tokens_then_settles_to_the_real_output() -> None:
    # 600 output tokens a minute, max_tokens 500: a second request in flight beside the first
    # does not fit; once the first has ended (with far fewer than 500), one does.
    async with (
        running(otpm=600, burst_seconds=60, latency_ms=300, latency_jitter=0) as sim,
        anthropic_client(sim.base_url) as claude,
    ):
        first = asyncio.ensure_future(
            claude.messages.create(model="claude-sim", max_tokens=500, messages=MESSAGES)
        )
        await asyncio.sleep(0.05)
        with pytest.raises(anthropic.RateLimitError) as caught:
            await claude.messages.create(model="claude-sim", max_tokens=500, messages=MESSAGES)
        message = await first
        raw = await claude.messages.with_raw_response.create(
            model="claude-sim", max_tokens=500, messages=MESSAGES
        )
    error = caught.value
    assert error.status_code == 429
    assert isinstance(error.body, dict) and error.body["error"]["type"] == "rate_limit_error"
    assert "of 600 output tokens per minute" in error.body["error"]["message"]
    # 400 short at 10 tokens a second, less the moment that passed: 40 s, rounded up.
    assert 39 <= int(error.response.headers["retry-after"]) <= 40
    used = message.usage.output_tokens
    assert used < 100
    remaining = int(raw.headers["anthropic-ratelimit-output-tokens-remaining"])
    assert 100 - used <= remaining <= 100 - used + 10  # only the first's real output stays


async def test_anthropic_itpm_429_names_the_input_limit(session: aiohttp.ClientSession) -> None:
    long_prompt = "abcd" * 46  # 50 input tokens with the message overhead
    body = body_for(ANTHROPIC, long_prompt)
    async with running(itpm=60, burst_seconds=60) as sim:
        first = await post(session, sim, ANTHROPIC, body)
        status, headers, raw = await post(session, sim, ANTHROPIC, body)
    assert first[0] == 200 and status == 429
    error = orjson.loads(raw)
    assert error["type"] == "error" and error["error"]["type"] == "rate_limit_error"
    assert "of 60 input tokens per minute" in error["error"]["message"]
    assert headers["retry-after"] == "40"  # 40 short at a token a second
    assert headers["anthropic-ratelimit-input-tokens-remaining"] == "10"
    parsed = AnthropicProvider(api_key="k").parse_error(status, headers, raw)
    assert type(parsed) is RateLimitError and parsed.retry_after == 40


async def test_anthropic_request_over_the_output_limit_is_a_400(
    session: aiohttp.ClientSession,
) -> None:
    async with running(otpm=100) as sim:
        status, headers, raw = await post(session, sim, ANTHROPIC, body_for(ANTHROPIC))
    assert status == 400  # max_tokens 256 can never fit 100 output tokens a minute
    error = orjson.loads(raw)["error"]
    assert error["type"] == "invalid_request_error"
    assert (
        "256 output tokens" in error["message"]
        and "100 output tokens per minute" in (error["message"])
    )
    assert type(AnthropicProvider(api_key="k").parse_error(status, headers, raw)) is (
        BadRequestError
    )


# --- the same budgets in the other dialects -----------------------------------------------


async def test_openai_otpm_429_is_a_token_rate_limit() -> None:
    async with (
        running(otpm=600, burst_seconds=60, latency_ms=300, latency_jitter=0) as sim,
        openai_client(sim.base_url) as oai,
    ):
        first = asyncio.ensure_future(
            oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=500)
        )
        await asyncio.sleep(0.05)
        with pytest.raises(openai.RateLimitError) as caught:
            await oai.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, max_tokens=500
            )
        await first
    error = caught.value
    headers = error.response.headers
    assert isinstance(error.body, dict)
    assert error.body["type"] == "tokens" and error.body["code"] == "rate_limit_exceeded"
    assert (
        "on output tokens per min (OTPM): Limit 600, Used 500, Requested 500."
        in (error.body["message"])
    )
    assert 39 <= int(headers["retry-after"]) <= 40
    assert headers["x-ratelimit-limit-tokens"] == "600"
    assert headers["x-ratelimit-remaining-tokens"] == "100"


async def test_openai_request_over_the_input_limit_is_its_request_too_large(
    session: aiohttp.ClientSession,
) -> None:
    async with running(itpm=5) as sim:
        status, headers, raw = await post(session, sim, OPENAI)
    error = orjson.loads(raw)["error"]
    assert status == 429 and "retry-after" not in headers
    assert error["message"].startswith(
        "Request too large for gpt-4o-mini in organization org-simulator on input tokens per "
        "min (ITPM): Limit 5, Requested 11."
    )
    assert type(OpenAIProvider(api_key="k").parse_error(status, headers, raw)) is (BadRequestError)


@pytest.mark.parametrize(
    ("setting", "quota_id"),
    [
        ("itpm", "GenerateContentInputTokensPerModelPerMinute"),
        ("otpm", "GenerateContentOutputTokensPerModelPerMinute"),
    ],
)
async def test_gemini_token_limits_are_per_minute_quota_failures(
    session: aiohttp.ClientSession, setting: str, quota_id: str
) -> None:
    # One request's cost leaves the whole-minute bucket 10 tokens short for the next.
    first_body = body_for(GEMINI, generationConfig={"maxOutputTokens": 50})
    cost = 11 if setting == "itpm" else 50  # the prompt's tokens, or max output
    settings = {setting: cost * 2 - 10, "burst_seconds": 60, "latency_ms": 200}
    async with running(latency_jitter=0, **settings) as sim:
        pending = asyncio.ensure_future(post(session, sim, GEMINI, first_body))
        await asyncio.sleep(0.05)
        status, headers, raw = await post(session, sim, GEMINI, first_body)
        assert (await pending)[0] == 200
    assert status == 429
    error = orjson.loads(raw)["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    violation = error["details"][0]["violations"][0]
    assert violation["quotaId"] == quota_id and violation["quotaValue"] == str(cost * 2 - 10)
    parsed = GeminiProvider(api_key="k").parse_error(status, headers, raw)
    assert type(parsed) is RateLimitError and parsed.retry_after is not None
