"""The service's upstream key, the way users give it: `llmgather serve` started as a subprocess
with only the provider's variable set (`OPENAI_API_KEY=… llmgather serve --model openai:…`),
in front of a simulator that demands that key; and its recovery, on its own, once an upstream
that refused the key accepts it again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI

from llmgather import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    Limits,
    LocalLimiter,
    RateLimitError,
    Request,
    ServerError,
)
from llmgather._engine import Engine
from llmgather._types import Completion, Outcome
from llmgather.service import ServiceSettings
from tests.servicefixtures import served_by_cli as serve
from tests.simfixtures import running

KEY = "sk-serve-env-KEY-0123456789abcdef"
MESSAGES = [{"role": "user", "content": "Why do some birds migrate?"}]
WAIT_S = 30.0  # a bound on waiting for the service, never an assertion on time


async def readiness(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url + "/readyz") as response:
        return response.status, await response.text()


async def until_ready(http: aiohttp.ClientSession, url: str, status: int) -> str:
    """Wait (bounded) until /readyz answers `status`; an HTTP client can only ask again."""
    async with asyncio.timeout(WAIT_S):
        while True:
            answered, text = await readiness(http, url)
            if answered == status:
                return text
            await asyncio.sleep(0.05)


async def ask(url: str) -> str:
    async with AsyncOpenAI(base_url=url + "/v1", api_key="client-key", max_retries=0) as client:
        answer = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    return answer.choices[0].message.content or ""


async def test_serve_sends_the_provider_key_from_the_environment(tmp_path: Path) -> None:
    async with (
        running(seed=1, require_key=KEY) as sim,
        serve(
            tmp_path,
            "--model",
            "openai:gpt-4o-mini",
            "--base-url",
            sim.base_url + "/v1",
            OPENAI_API_KEY=KEY,
        ) as served,
        aiohttp.ClientSession() as http,
    ):
        assert await ask(served.url)  # through the relay
        async with http.post(served.url + "/generate", json={"prompt": "Why?"}) as response:
            generated = await response.read()  # through the translating path
            assert response.status == 200, generated
        status, ready = await readiness(http, served.url)
        assert status == 200
        async with http.get(served.url + "/metrics") as response:
            metrics = await response.text()
    assert sim.handler.stats.snapshot()["by_status"] == {"200": 2}  # each sent with the key
    for shown in (generated.decode(), ready, metrics, served.stderr.decode()):
        assert KEY not in shown


async def test_serve_on_the_providers_own_url_starts_with_the_key_from_the_environment(
    tmp_path: Path,
) -> None:
    # The README's own command. Nothing is asked of it, so nothing leaves this machine.
    async with (
        serve(tmp_path, "--model", "openai:gpt-4o-mini", OPENAI_API_KEY=KEY) as served,
        aiohttp.ClientSession() as http,
    ):
        assert b"openai:gpt-4o-mini via the provider's API" in served.stderr
        await until_ready(http, served.url, 200)
    assert KEY not in served.stderr.decode()
    assert b"Traceback" not in served.stderr


async def test_serve_recovers_by_itself_once_the_upstream_takes_the_key_again(
    tmp_path: Path,
) -> None:
    async with (
        running(seed=1, require_key=KEY) as sim,
        serve(
            tmp_path,
            "--model",
            "openai:gpt-4o-mini",
            "--base-url",
            sim.base_url + "/v1",
            OPENAI_API_KEY=KEY,
        ) as served,
        aiohttp.ClientSession() as http,
    ):
        assert await ask(served.url)
        async with http.post(sim.base_url + "/_sim/key", json={"require_key": 5}) as r:
            assert r.status == 400  # the simulator's control names what it takes
            assert "require_key" in await r.text()
        # The provider revokes the key: the service refuses, and says it is not ready.
        async with http.post(sim.base_url + "/_sim/key", json={"require_key": "rotated"}) as r:
            assert r.status == 200
        with pytest.raises(openai.InternalServerError) as refused:
            await ask(served.url)
        reason = await until_ready(http, served.url, 503)
        assert "refused" in reason
        async with http.get(served.url + "/healthz") as response:
            assert response.status == 200  # the process is fine: only its key is not
        # The key is restored upstream: no restart, and no request of a client, is needed.
        async with http.post(sim.base_url + "/_sim/key", json={"require_key": KEY}) as r:
            assert r.status == 200
        await until_ready(http, served.url, 200)
        assert await ask(served.url)
    message = refused.value.message
    assert refused.value.status_code == 502
    assert "refused the API key" in message and "(HTTP 401)" in message
    assert "no status" not in message
    assert KEY not in refused.value.response.text
    assert KEY not in served.stderr.decode()


# -- the engine's side, on an in-memory send ---------------------------------------------------


class Answers:
    """A send that raises each queued error in turn, then answers."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self, request: Request) -> Outcome:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return Outcome(Completion(text="OK"))


@pytest.mark.parametrize(
    ("answer", "accepted"),
    [
        (None, True),
        (BadRequestError("max_tokens is too small", status_code=400), True),
        (AuthenticationError("still refused", status_code=401), False),
        (RateLimitError("slow down", status_code=429), False),
        (ServerError("internal error", status_code=500), False),
        (APIConnectionError("connection refused"), False),
    ],
    ids=["answered", "400", "401", "429", "500", "no-answer"],
)
async def test_a_recheck_clears_a_refused_key_only_on_an_answer_that_accepts_it(
    answer: Exception | None, accepted: bool
) -> None:
    send = Answers(AuthenticationError("bad key", status_code=401))
    engine = Engine(send, limiter=LocalLimiter(Limits(concurrency=1)))
    first = await engine.run_one(Request.from_prompt("a"))
    assert first.error is not None and engine.key_refused
    await asyncio.wait_for(engine.key_refusal(), 1)  # what the service's recheck waits for
    unsent = await engine.run_one(Request.from_prompt("b"))
    assert send.calls == 1 and unsent.error is not None
    assert unsent.error.status_code == 401 and unsent.error.message.startswith("not sent")

    if answer is not None:
        send.errors.append(answer)
    assert await engine.recheck_key(Request.from_prompt("check")) is accepted
    assert engine.key_refused is not accepted
    after = await engine.run_one(Request.from_prompt("c"))
    assert after.ok is accepted
    assert send.calls == (3 if accepted else 2)


def test_a_recheck_interval_that_would_ask_without_pause_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="key_recheck_s"):
        ServiceSettings(key_recheck_s=0)
