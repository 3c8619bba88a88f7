"""The library against the simulator over loopback HTTP: the whole real path."""

from __future__ import annotations

import aiohttp
import pytest

import llmgather
from llmgather import AuthenticationError, Client, RetryPolicy, Timeouts
from llmgather.sim import FaultPlan, SimConfig, answer_text, start_simulator
from llmgather.sim.server import RunningSimulator
from tests.simfixtures import sim_stats

FAST_RETRY = RetryPolicy(max_attempts=12, base_delay=0.01, max_delay=0.05)


def client_for(sim: RunningSimulator, **kwargs: object) -> Client:
    return Client("openai:gpt-4o-mini", base_url=sim.base_url + "/v1", api_key="k", **kwargs)  # type: ignore[arg-type]


async def log(sim: RunningSimulator) -> list[dict]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(sim.base_url + "/_sim/log") as response,
    ):
        return await response.json()


def expected(prompt: str, seed: int = 1) -> str:
    return answer_text(prompt, seed=seed)[0]


async def test_complete_returns_the_simulators_answer(sim: RunningSimulator) -> None:
    async with client_for(sim) as client:
        text = await client.complete("Why do some birds migrate?")
    assert text == expected("Why do some birds migrate?")


async def test_stream_yields_pieces_that_join_to_the_answer(sim: RunningSimulator) -> None:
    async with client_for(sim) as client:
        pieces = [piece async for piece in client.stream("Write a haiku about asyncio")]
    assert len(pieces) > 1
    assert "".join(pieces) == expected("Write a haiku about asyncio")


async def test_gather_keeps_input_order_and_ids(sim: RunningSimulator) -> None:
    prompts = [f"prompt {i}" for i in range(30)]
    async with client_for(sim, concurrency=8) as client:
        results = await client.gather(prompts)
    assert [r.text for r in results] == [expected(p) for p in prompts]
    assert [r.id for r in results] == [str(i) for i in range(30)]
    assert all(r.usage and r.usage.output_tokens > 0 and r.attempts == 1 for r in results)


async def test_client_limits_keep_the_simulator_from_answering_429() -> None:
    async with await start_simulator(SimConfig(rpm=1200, seed=1)) as sim:  # 20/s, burst 20
        async with client_for(sim, rpm=1200) as client:
            results = await client.gather([f"p{i}" for i in range(50)])
        counts = await sim_stats(sim)
    assert all(r.ok for r in results)
    assert counts["by_status"].get("429", 0) == 0
    assert counts["received"] == 50


async def test_without_limits_429s_are_retried_after_the_servers_hint() -> None:
    # No limit announced either: only the 429s can teach the client (a rate found by AIMD).
    async with await start_simulator(SimConfig(rpm=1200, seed=1, limit_headers=False)) as sim:
        async with client_for(sim, retry=RetryPolicy(max_attempts=20)) as client:
            results = await client.gather([f"p{i}" for i in range(40)])
            assert client.statistics().http_429 > 0
            assert "rpm" in client.statistics().learned
        counts = await sim_stats(sim)
    assert all(r.ok for r in results)
    assert counts["by_status"]["429"] > 0


async def test_retry_after_is_honoured_before_the_same_request_is_sent_again() -> None:
    config = SimConfig(seed=3, faults=FaultPlan.parse("429=0.5"), fault_retry_after_s=0.6)
    async with await start_simulator(config) as sim:
        async with client_for(sim, retry=FAST_RETRY) as client:
            results = await client.gather([f"retry me {i}" for i in range(6)])
        entries = await log(sim)
    assert all(r.ok for r in results)
    by_prompt: dict[str, list[dict]] = {}
    for entry in entries:
        by_prompt.setdefault(entry["prompt_sha"], []).append(entry)
    retried = [e for e in by_prompt.values() if e[0]["status"] == 429]
    assert retried, "the seed should have produced at least one 429"
    for attempts in retried:
        assert attempts[1]["t"] - attempts[0]["t"] >= 0.6


async def test_transient_faults_are_retried_until_every_item_is_ok() -> None:
    faults = FaultPlan.parse("500=0.06,503=0.05,429=0.03,reset=0.03,malformed=0.03")
    config = SimConfig(seed=5, faults=faults, fault_retry_after_s=0.01)
    async with await start_simulator(config) as sim:
        async with client_for(sim, retry=FAST_RETRY, concurrency=16) as client:
            prompts = [f"faulty {i}" for i in range(120)]
            results = await client.gather(prompts)
            # A connection closed unanswered (the reset fault) is resent once at once on a
            # fresh connection, without spending an attempt: it may have been a stale one.
            resent = client.transport.stale_retries  # type: ignore[attr-defined]
        counts = await sim_stats(sim)
    assert [r.text for r in results] == [expected(p, seed=5) for p in prompts]
    assert sum(r.attempts for r in results) + resent == counts["received"]
    assert counts["received"] > 120


async def test_cut_streams_are_detected_and_retried() -> None:
    config = SimConfig(seed=6, faults=FaultPlan.parse("cut=0.3"))
    async with await start_simulator(config) as sim:
        async with client_for(sim, retry=FAST_RETRY, stream=True) as client:
            prompts = [f"stream {i}" for i in range(40)]
            results = await client.gather(prompts)
    assert [r.text for r in results] == [expected(p, seed=6) for p in prompts]
    assert any(r.attempts > 1 for r in results)
    assert all(r.ttft_ms is not None for r in results)


async def test_a_stall_past_the_read_timeout_is_retried() -> None:
    config = SimConfig(seed=8, faults=FaultPlan.parse("stall=0.5"), stall_s=3.0)
    async with await start_simulator(config) as sim:
        async with client_for(sim, retry=FAST_RETRY, timeouts=Timeouts(read=0.3)) as client:
            results = await client.gather([f"stall {i}" for i in range(6)])
    assert all(r.ok for r in results)
    assert any(r.attempts > 1 for r in results)


async def test_a_wrong_key_fails_every_item_at_once_without_retries() -> None:
    async with await start_simulator(SimConfig(require_key="right-key")) as sim:
        async with Client(
            "openai:x", base_url=sim.base_url + "/v1", api_key="sk-wrong-secret-key"
        ) as client:
            results = await client.gather([f"p{i}" for i in range(10)])
            with pytest.raises(AuthenticationError) as raised:
                await client.complete("one more")
        counts = await sim_stats(sim)
    # The first wave of the slow start went out (told no limits, llmgather sends 8, then
    # more as answers come back); nothing was sent after the 401s.
    assert counts["received"] == 8
    assert all(r.status == "error" for r in results)
    assert sorted(r.attempts for r in results) == [0, 0] + [1] * 8  # the rest fail unsent
    assert {r.error.type for r in results if r.error} == {"AuthenticationError"}
    assert {r.error.status_code for r in results if r.error and r.attempts} == {401}
    assert "not sent" in str(raised.value)
    for result in results:
        assert "sk-wrong-secret-key" not in str(result.to_dict())
    assert "sk-wrong-secret-key" not in str(raised.value)


async def test_map_accepts_an_async_iterable_and_yields_as_results_arrive(
    sim: RunningSimulator,
) -> None:
    async def prompts():  # type: ignore[no-untyped-def]
        for i in range(20):
            yield {"id": f"x{i}", "prompt": f"async {i}", "metadata": {"n": i}}

    async with client_for(sim, concurrency=4) as client:
        seen = {r.id: r async for r in client.map(prompts())}
    assert sorted(seen) == sorted(f"x{i}" for i in range(20))
    assert seen["x7"].metadata == {"n": 7}


async def test_without_a_key_the_client_uses_the_embedded_simulator(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Client() as client:
        assert client.simulated
        assert client.base_url is not None and client.base_url.startswith("http://127.0.0.1:")
        text = await client.complete("hello")
    assert text
    assert "built-in simulator" in caplog.text


def test_public_api_is_explicit() -> None:
    assert len(llmgather.__all__) == len(set(llmgather.__all__))
    for name in llmgather.__all__:
        assert hasattr(llmgather, name), name
    public = {
        n
        for n, v in vars(llmgather).items()
        if not n.startswith("_") and not hasattr(v, "__path__") and type(v).__name__ != "module"
    }
    assert public <= set(llmgather.__all__)


async def test_a_client_told_nothing_learns_the_announced_limits() -> None:
    async with await start_simulator(SimConfig(rpm=1200, seed=1)) as sim:  # 20/s, burst 20
        async with client_for(sim, concurrency=10, retry=RetryPolicy(max_attempts=20)) as client:
            results = await client.gather([f"p{i}" for i in range(60)])
        counts = await sim_stats(sim)
    assert all(r.ok for r in results)
    # the first answers announce 1200 rpm; from then on the client paces itself
    assert counts["by_status"].get("429", 0) <= 2


async def test_gather_refuses_a_bad_prompt_before_sending_anything(sim: RunningSimulator) -> None:
    async with client_for(sim) as client:
        with pytest.raises(llmgather.InvalidInputError, match='"prompt" or "messages"'):
            await client.gather(["fine", {"id": "x"}, "also fine"])
        with pytest.raises(TypeError, match="not int"):
            await client.gather(["fine", 5])
    assert (await sim_stats(sim))["received"] == 0


async def test_a_client_used_after_its_block_says_so(sim: RunningSimulator) -> None:
    async with client_for(sim) as client:
        pass
    with pytest.raises(RuntimeError, match="inside `async with"):
        await client.gather(["hi"])


async def test_leaving_a_stream_early_frees_its_slot_at_once(sim: RunningSimulator) -> None:
    from contextlib import aclosing

    async with client_for(sim, concurrency=1) as client:
        async with aclosing(client.stream("Write a long story")) as pieces:
            async for _ in pieces:
                break
        assert client.statistics().in_flight == 0
        assert await client.complete("next") == expected("next")


@pytest.mark.parametrize(
    ("model", "suffix"),
    [("openai:gpt-4o-mini", "/v1"), ("gemini:gemini-2.0-flash", ""), ("anthropic:claude-x", "")],
)
async def test_an_exhausted_quota_is_reported_per_item_and_never_retried(
    model: str, suffix: str
) -> None:
    config = SimConfig(seed=1, latency_ms=0, faults=FaultPlan.parse("quota=1"))
    async with await start_simulator(config) as quota_sim:
        client = Client(model, base_url=quota_sim.base_url + suffix, api_key="k", retry=FAST_RETRY)
        async with client:
            results = await client.gather([f"p{i}" for i in range(5)])
        received = (await sim_stats(quota_sim))["received"]
    assert received == 5
    for result in results:
        assert result.error is not None and result.error.type == "QuotaExhaustedError"
        assert result.attempts == 1
