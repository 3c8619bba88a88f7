"""Server-side RPM and TPM limits: 429s as the providers send them, and settled reservations."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from llmgather._errors import BadRequestError
from llmgather.providers.anthropic import AnthropicProvider
from llmgather.providers.base import Provider
from llmgather.providers.gemini import GeminiProvider
from llmgather.providers.openai import OpenAIProvider
from llmgather.sim.limits import ServerLimits
from tests.simfixtures import ANTHROPIC, GEMINI, OPENAI, body_for, get_json, post, running

PROVIDERS: dict[str, Provider] = {
    OPENAI: OpenAIProvider(api_key="k"),
    GEMINI: GeminiProvider(api_key="k"),
    ANTHROPIC: AnthropicProvider(api_key="k"),
}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rpm_admits_a_burst_then_refuses_with_the_wait() -> None:
    clock = Clock()
    limits = ServerLimits(rpm=120, tpm=None, burst_seconds=1.0, clock=clock)
    assert limits.admit(10, 0) is None and limits.admit(10, 0) is None
    refusal = limits.admit(10, 0)
    assert refusal is not None and refusal.budget.name == "rpm"
    assert abs(refusal.retry_after_s - 0.5) < 1e-9
    # Both requests of the 2-request bucket are used: 118 of the minute's 120 remain.
    assert refusal.budget.remaining == 118
    clock.now = 0.5
    assert limits.admit(10, 0) is None


def test_tpm_refusal_takes_nothing_and_settling_refunds() -> None:
    clock = Clock()
    limits = ServerLimits(rpm=600, tpm=60_000, burst_seconds=1.0, clock=clock)  # 1000 tokens
    assert limits.admit(0, 900) is None
    refusal = limits.admit(0, 900)
    assert refusal is not None and refusal.budget.name == "tpm" and not refusal.too_large
    assert abs(refusal.retry_after_s - 0.8) < 1e-9
    requests = limits.state().get("rpm")
    assert requests is not None and requests.remaining == 599  # nothing was taken
    limits.settle(estimated_output=900, actual_output=50)
    assert limits.admit(0, 900) is None


def test_a_request_larger_than_the_minute_is_permanent() -> None:
    limits = ServerLimits(rpm=None, tpm=1000, clock=Clock())
    refusal = limits.admit(1, 1000)
    assert refusal is not None and refusal.too_large and refusal.requested == 1001


async def test_a_burst_gets_429s_counted_by_status_then_recovers() -> None:
    # rpm=600 with a 0.1 s burst: one request at a time, refilled every 0.1 s.
    async with running(rpm=600, burst_seconds=0.1) as sim, aiohttp.ClientSession() as session:
        results = await asyncio.gather(*(post(session, sim, OPENAI) for _ in range(5)))
        statuses = sorted(status for status, _, _ in results)
        assert statuses == [200, 429, 429, 429, 429]
        limited = next(headers for status, headers, _ in results if status == 429)
        assert limited["x-ratelimit-limit-requests"] == "600"
        assert limited["x-ratelimit-remaining-requests"] == "599"
        wait_ms = int(limited["retry-after-ms"])
        assert 0 < wait_ms <= 100
        assert limited["retry-after"] == "1"
        stats = await get_json(session, sim, "/_sim/stats")
        assert stats["by_status"] == {"200": 1, "429": 4}
        assert stats["received"] == 5 and stats["answered"] == 5
        await asyncio.sleep(wait_ms / 1000 + 0.01)
        status, _, _ = await post(session, sim, OPENAI)
        assert status == 200


async def test_tokens_429_while_reservations_are_in_flight() -> None:
    # 60k TPM with a 1 s burst holds 1000 tokens; two in-flight requests reserving ~906 each
    # cannot both fit, and the refusal names the token limit.
    async with running(tpm=60_000, latency_ms=200) as sim, aiohttp.ClientSession() as session:
        body = body_for(OPENAI, max_tokens=900)
        results = await asyncio.gather(
            post(session, sim, OPENAI, body), post(session, sim, OPENAI, body)
        )
    by_status = {status: raw for status, _, raw in results}
    assert set(by_status) == {200, 429}
    error = orjson.loads(by_status[429])["error"]
    assert error["type"] == "tokens" and error["code"] == "rate_limit_exceeded"
    assert "tokens per min (TPM): Limit 60000" in error["message"]


async def test_tpm_is_settled_after_completion() -> None:
    # Without the refund, the second request (906 more tokens into a 1000-token bucket drained
    # to ~94) would wait ~0.8 s; with it, only the real usage (~40 tokens) stays charged.
    async with running(tpm=60_000) as sim, aiohttp.ClientSession() as session:
        body = body_for(OPENAI, max_tokens=900)
        first = await post(session, sim, OPENAI, body)
        second = await post(session, sim, OPENAI, body)
    assert first[0] == 200 and second[0] == 200
    reserved = 60_000 - int(first[1]["x-ratelimit-remaining-tokens"])
    assert reserved > 900  # the headers show the reservation while the answer is sent
    remaining = int(second[1]["x-ratelimit-remaining-tokens"])
    # The second's reservation shows; of the first, only its real usage (or nothing, refilled).
    assert 60_000 - 2 * reserved < remaining <= 60_000 - reserved


async def test_openai_request_too_large_for_the_minute_is_its_permanent_429() -> None:
    async with running(tpm=1000) as sim, aiohttp.ClientSession() as session:
        status, headers, raw = await post(session, sim, OPENAI, body_for(OPENAI, max_tokens=5000))
        stats = await get_json(session, sim, "/_sim/stats")
    assert status == 429
    assert "retry-after" not in headers and "retry-after-ms" not in headers
    error = orjson.loads(raw)["error"]
    assert error["type"] == "tokens" and error["code"] == "rate_limit_exceeded"
    assert error["param"] is None
    assert error["message"].startswith(
        "Request too large for gpt-4o-mini in organization org-simulator on tokens per min "
        "(TPM): Limit 1000, Requested 5"
    )
    assert error["message"].endswith("must be reduced in order to run successfully.")
    assert stats["by_status"] == {"429": 1}
    # llmgather's adapter tells it from a 429 that waiting would cure.
    assert type(PROVIDERS[OPENAI].parse_error(status, headers, raw)) is BadRequestError


@pytest.mark.parametrize(
    ("path", "body", "kind"),
    [
        (GEMINI, body_for(GEMINI, generationConfig={"maxOutputTokens": 5000}), "INVALID_ARGUMENT"),
        (ANTHROPIC, body_for(ANTHROPIC, max_tokens=5000), "invalid_request_error"),
    ],
)
async def test_other_request_too_large_for_the_minute_is_a_400(
    path: str, body: dict, kind: str
) -> None:
    # Neither API has a distinct answer for it; a 429 would be retried until the retries run
    # out, so these dialects keep a 400 in their own shape, which no client retries.
    async with running(tpm=1000) as sim, aiohttp.ClientSession() as session:
        status, headers, raw = await post(session, sim, path, body)
    assert status == 400
    error = orjson.loads(raw)["error"]
    assert (error.get("status") or error.get("type")) == kind
    assert "5011" in error["message"]  # the request's estimate: 11 prompt + 5000 output tokens
    assert type(PROVIDERS[path].parse_error(status, headers, raw)) is BadRequestError


def test_remaining_is_the_minutes_limit_less_what_is_used() -> None:
    clock = Clock()
    limits = ServerLimits(rpm=600, tpm=60_000, burst_seconds=1.0, clock=clock)
    idle = limits.state()
    assert [(b.name, b.remaining) for b in idle.budgets] == [("rpm", 600), ("tpm", 60_000)]
    assert limits.admit(100, 800) is None
    busy = limits.state()
    assert [(b.name, b.remaining) for b in busy.budgets] == [("rpm", 599), ("tpm", 59_100)]
    clock.now = 0.5  # half the 1000-token bucket refilled: 400 of the 900 still count
    half = limits.state().get("tpm")
    assert half is not None and half.remaining == 59_600
    clock.now = 1.0
    assert limits.state() == idle


def test_remaining_never_goes_negative() -> None:
    clock = Clock()
    limits = ServerLimits(rpm=None, tpm=1200, burst_seconds=1.0, clock=clock)  # 20 tokens
    assert limits.admit(0, 10) is None
    limits.settle(estimated_output=10, actual_output=5000)  # far over its estimate: in debt
    tokens = limits.state().get("tpm")
    assert tokens is not None and tokens.remaining == 0 and tokens.limit == 1200


async def test_anthropic_headers_report_the_minutes_remaining() -> None:
    async with running(rpm=600, tpm=60_000) as sim, aiohttp.ClientSession() as session:
        status, headers, _ = await post(session, sim, ANTHROPIC)
    assert status == 200
    assert headers["anthropic-ratelimit-requests-limit"] == "600"
    assert headers["anthropic-ratelimit-requests-remaining"] == "599"
    reserved = 60_000 - int(headers["anthropic-ratelimit-tokens-remaining"])
    assert 256 < reserved < 300  # max_tokens 256 and the short prompt


# -- limits changed while serving, and limits not announced ---------------------------------------


def test_a_limit_changed_while_serving_keeps_what_was_used() -> None:
    clock = Clock()
    limits = ServerLimits(rpm=1200, burst_seconds=1.0, clock=clock)  # 20 at once
    for _ in range(10):
        assert limits.admit(10, 0) is None
    limits.change({"rpm": 600})  # halved: 10 at once, and 10 are used
    refusal = limits.admit(10, 0)
    assert refusal is not None and refusal.budget.limit == 600
    assert abs(refusal.retry_after_s - 0.1) < 1e-9  # one request's worth at 10 per second
    limits.change({"tpm": 60_000, "rpm": None})  # a new limit, and one removed
    assert [b.name for b in limits.state().budgets] == ["tpm"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"rpx": 5}, "unknown limit 'rpx'"), ({"rpm": 0}, "rpm must be a positive number")],
)
def test_a_limit_change_names_what_is_wrong(changes: dict, message: str) -> None:
    limits = ServerLimits(rpm=600)
    with pytest.raises(ValueError, match=message):
        limits.change(changes)
    assert [b.limit for b in limits.state().budgets] == [600]  # nothing half-changed


async def test_post_sim_limits_changes_the_limits_of_a_running_simulator() -> None:
    async with running(rpm=600) as sim, aiohttp.ClientSession() as session:
        async with session.post(sim.base_url + "/_sim/limits", json={"rpm": 60}) as response:
            assert response.status == 200 and await response.json() == {"rpm": 60}
        status, headers, _ = await post(session, sim, OPENAI)
        assert status == 200 and headers["x-ratelimit-limit-requests"] == "60"
        async with session.post(sim.base_url + "/_sim/limits", json={"rpm": -1}) as response:
            assert response.status == 400
            assert "rpm must be a positive number" in (await response.json())["error"]
        assert await get_json(session, sim, "/_sim/limits") == {"rpm": 60}


@pytest.mark.parametrize("path", [OPENAI, ANTHROPIC])
async def test_no_limit_headers_announces_no_limit_on_answers_or_429s(path: str) -> None:
    async with running(rpm=60, limit_headers=False) as sim, aiohttp.ClientSession() as session:
        ok_status, ok_headers, _ = await post(session, sim, path)
        limited_status, limited_headers, _ = await post(session, sim, path)
    assert (ok_status, limited_status) == (200, 429)
    for headers in (ok_headers, limited_headers):
        assert not [name for name in headers if "ratelimit" in name.lower()]
    assert "retry-after" in limited_headers  # the wait is still said, only the limits are not
